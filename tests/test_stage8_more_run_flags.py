"""The run flags a docker user brings along (issue 21): --ulimit, --sysctl, --device, --shm-size,
--group-add, --mount, anonymous volumes (-v /data, an image's VOLUME), --stop-signal and
--stop-timeout (and an image's STOPSIGNAL), --restart unless-stopped.

Each is judged by what the kernel shows inside the container (ulimit, /proc/sys, the node in
/dev, id -G, df), or by what ``stop`` makes of it (the signal the container got, its exit code).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Engine, inspect, ok
from fixtures.netlab import NetLab

pytestmark = [pytest.mark.stage(8), pytest.mark.root]


def volumes(engine: Engine) -> list[str]:
    return sorted(os.listdir(engine.root / "volumes")) if (engine.root / "volumes").exists() else []


def wait_for_log(engine: Engine, name: str, text: str) -> None:
    for _ in range(200):
        if text in engine("logs", name).stdout:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} never printed {text!r}: {engine('logs', name).stdout!r}")


def test_ulimit_is_the_limit_the_process_runs_with(engine: Engine) -> None:
    # Limits under the engine's own: raising a hard limit takes CAP_SYS_RESOURCE, which a sandbox may lack.
    out = ok(engine("run", "--rm", "--ulimit", "nofile=100:200", "--ulimit", "nproc=500", "--ulimit", "core=-1",
                    "busybox", "sh", "-c", "ulimit -n; ulimit -Hn; grep -e 'Max processes' -e 'Max core' "
                    "/proc/self/limits"))
    lines = out.splitlines()
    assert lines[:2] == ["100", "200"]
    assert [line.split() for line in lines[2:]] == [
        ["Max", "core", "file", "size", "unlimited", "unlimited", "bytes"],
        ["Max", "processes", "500", "500", "processes"]]


def test_sysctl_writes_the_containers_own_proc_sys(engine: Engine) -> None:
    with open("/proc/sys/kernel/shmmax") as f:
        host = f.read()
    out = ok(engine("run", "--rm", "--sysctl", "kernel.shmmax=1234567", "--sysctl", "fs.mqueue.msg_max=20",
                    "--sysctl", "net.ipv4.ip_unprivileged_port_start=99", "busybox", "cat",
                    "/proc/sys/kernel/shmmax", "/proc/sys/fs/mqueue/msg_max",
                    "/proc/sys/net/ipv4/ip_unprivileged_port_start"))
    assert out.split() == ["1234567", "20", "99"]
    with open("/proc/sys/kernel/shmmax") as f:
        assert f.read() == host  # the container's IPC namespace, not the host's


def test_device_is_the_hosts_node_and_opens_through_the_filter(engine: Engine) -> None:
    st = os.stat("/dev/fuse")
    out = ok(engine("run", "--rm", "--device", "/dev/fuse:/dev/myfuse", "busybox", "sh", "-c",
                    "stat -c '%F %t %T' /dev/myfuse; head -c0 /dev/myfuse && echo opened"))
    assert out.splitlines() == [f"character special file {os.major(st.st_rdev):x} {os.minor(st.st_rdev):x}",
                                "opened"]
    # Without --device the same node, made by hand (CAP_MKNOD), does not open: the filter says no.
    denied = engine("run", "--rm", "busybox", "sh", "-c",
                    f"mknod /tmp/f c {os.major(st.st_rdev)} {os.minor(st.st_rdev)}; head -c0 /tmp/f 2>&1")
    assert (denied.returncode, denied.stdout) == (1, "head: /tmp/f: Operation not permitted\n")


def test_group_add_by_number_and_by_the_images_name(engine: Engine) -> None:
    out = ok(engine("run", "--rm", "-u", "65534", "--group-add", "1234", "--group-add", "tty", "busybox",
                    "sh", "-c", "id -G; grep Groups: /proc/self/status"))
    assert out.splitlines()[0].split() == ["65534", "5", "1234"]
    assert out.splitlines()[1].split() == ["Groups:", "5", "1234"]


def test_shm_size_is_the_size_of_dev_shm(engine: Engine) -> None:
    for args, blocks in ([], "65536"), (["--shm-size", "8m"], "8192"):
        out = ok(engine("run", "--rm", *args, "busybox", "df", "-k", "/dev/shm"))
        assert out.splitlines()[1].split()[:2] == ["shm", blocks]


def test_mount_in_dockers_spelling(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "site.txt").write_text("from the host\n")
    out = ok(engine(
        "run", "--rm", "--mount", f"type=bind,source={tmp_path},target=/www,readonly",
        "--mount", "type=volume,src=mountvol,dst=/v", "--mount", "type=tmpfs,target=/scratch,tmpfs-size=2m,"
        "tmpfs-mode=1770", "busybox", "sh", "-c",
        "cat /www/site.txt; touch /www/x 2>&1; echo kept > /v/file; df -k /scratch | tail -1; "
        "stat -c %a /scratch"))
    lines = out.splitlines()
    assert lines[:2] == ["from the host", "touch: /www/x: Read-only file system"]
    assert lines[2].split()[:2] == ["tmpfs", "2048"] and lines[3] == "1770"
    try:
        assert ok(engine("run", "--rm", "--mount", "type=volume,source=mountvol,target=/v", "busybox",
                         "cat", "/v/file")) == "kept\n"
    finally:
        ok(engine("volume", "rm", "mountvol"))


def test_an_anonymous_volume_lives_with_its_container(engine: Engine) -> None:
    ok(engine("run", "-d", "--name", "anon", "-v", "/data", "busybox", "sh", "-c", "echo $$ >> /data/runs"))
    try:
        ok(engine("wait", "anon"))
        [mount] = inspect(engine, "anon")["Mounts"]
        assert (mount["Type"], mount["Destination"]) == ("volume", "/data")
        assert re.fullmatch(r"[0-9a-f]{64}", mount["Name"]) and volumes(engine) == [mount["Name"]]
        ok(engine("start", "anon"))  # the same volume again: two runs in one file
        ok(engine("wait", "anon"))
        assert len((engine.root / "volumes" / mount["Name"] / "_data" / "runs").read_text().split()) == 2
    finally:
        ok(engine("rm", "anon"))
    assert volumes(engine) == [mount["Name"]]  # docker's rm keeps it (rm -v would not)
    ok(engine("volume", "rm", mount["Name"]))
    # With --rm it goes with the container.
    assert ok(engine("run", "--rm", "-v", "/data", "--mount", "type=volume,target=/more", "busybox", "sh",
                     "-c", "grep -c ' /data \\| /more ' /proc/self/mountinfo")) == "2\n"
    assert volumes(engine) == []


@pytest.fixture(scope="module")
def stopping_image(engine_roots: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An image with a VOLUME and a STOPSIGNAL, built from the bundled busybox."""
    engine = Engine(*engine_roots)
    context = tmp_path_factory.mktemp("ctx")
    (context / "Containerfile").write_text(
        "FROM busybox\nRUN mkdir /cache && echo from-the-image > /cache/seed\nVOLUME /cache\n"
        "STOPSIGNAL SIGUSR2\n")
    ok(engine("build", "-q", "-t", "localhost/stopping:1", str(context), timeout=180))
    yield "localhost/stopping:1"
    ok(engine("rmi", "localhost/stopping:1"))


def test_the_images_volume_is_an_anonymous_volume(engine: Engine, stopping_image: str) -> None:
    out = ok(engine("run", "--rm", stopping_image, "sh", "-c",
                    "grep -c ' /cache ' /proc/self/mountinfo; cat /cache/seed; echo more > /cache/x"))
    assert out == "1\nfrom-the-image\n" and volumes(engine) == []  # copied up, as docker's; gone with --rm
    # -v on the same path takes its place.
    out = ok(engine("run", "--rm", "--tmpfs", "/cache", stopping_image, "sh", "-c",
                    "grep ' /cache ' /proc/self/mountinfo | awk '{print $9}'"))
    assert out == "tmpfs\n"


TRAPS = ("trap 'echo got USR1; exit 7' USR1; trap 'echo got USR2; exit 8' USR2; "
         "trap 'echo got TERM; exit 9' TERM; echo ready; while :; do sleep 0.1; done")


@pytest.mark.parametrize(("image_of", "args", "signal", "code"), [
    (None, [], "TERM", 9),
    (None, ["--stop-signal", "USR1"], "USR1", 7),
    ("stopping", [], "USR2", 8),  # the image's STOPSIGNAL
    ("stopping", ["--stop-signal", "SIGUSR1"], "USR1", 7),  # --stop-signal wins
], ids=["default", "stop-signal", "image", "flag-over-image"])
def test_stop_sends_the_containers_stop_signal(engine: Engine, request: pytest.FixtureRequest,
                                               image_of: str | None, args: list[str], signal: str,
                                               code: int) -> None:
    image = request.getfixturevalue("stopping_image") if image_of else "busybox"
    ok(engine("run", "-d", "--name", "stopme", *args, image, "sh", "-c", TRAPS))
    try:
        wait_for_log(engine, "stopme", "ready")
        ok(engine("stop", "stopme"))
        assert engine("logs", "stopme").stdout == f"ready\ngot {signal}\n"
        record = inspect(engine, "stopme")
        assert record["State"]["ExitCode"] == code
        assert record["Config"].get("StopSignal") == (None if signal == "TERM" else f"SIG{signal}")
    finally:
        ok(engine("rm", "-f", "stopme"))
    for name in volumes(engine):  # the image's anonymous /cache
        ok(engine("volume", "rm", name))


SLOW_TO_STOP = "trap 'sleep 3; exit 0' TERM; echo ready; while :; do sleep 0.1; done"


def test_stop_timeout_is_stops_default_wait(engine: Engine) -> None:
    ok(engine("run", "-d", "--name", "slow", "--stop-timeout", "1", "busybox", "sh", "-c", SLOW_TO_STOP))
    try:
        assert inspect(engine, "slow")["Config"]["StopTimeout"] == 1
        wait_for_log(engine, "slow", "ready")
        ok(engine("stop", "slow"))  # its own 1 s: killed before its handler is done
        assert inspect(engine, "slow")["State"]["ExitCode"] == 137
        ok(engine("start", "slow"))
        wait_for_log(engine, "slow", "ready\nready")
        ok(engine("stop", "-t", "10", "slow"))  # -t wins: the handler ends it
        assert inspect(engine, "slow")["State"]["ExitCode"] == 0
    finally:
        engine("rm", "-f", "slow")


@pytest.mark.parametrize("policy", ["always", "unless-stopped"])
def test_stop_ends_a_container_its_policy_would_restart(engine: Engine, policy: str) -> None:
    """docker's rule: a container stopped by hand is not restarted, whatever its policy; a crash is."""
    ok(engine("run", "-d", "--name", "keeper", "--restart", policy, "busybox", "sleep", "100"))
    try:
        ok(engine("kill", "keeper"))  # not stop: the policy restarts it
        for _ in range(200):
            if inspect(engine, "keeper")["RestartCount"] == 1 and inspect(engine, "keeper")["State"]["Running"]:
                break
            time.sleep(0.05)
        assert inspect(engine, "keeper")["RestartCount"] == 1
        ok(engine("stop", "-t", "1", "keeper"))
        record = inspect(engine, "keeper")
        assert (record["State"]["Status"], record["RestartCount"]) == ("exited", 1)
        assert record["Config"]["RestartPolicy"] == policy
        ok(engine("start", "keeper"))  # started again, its policy holds again
        assert inspect(engine, "keeper")["State"]["Running"]
    finally:
        assert engine("rm", "-f", "keeper").returncode == 0
    assert engine.containers() == [] and engine.runtime_states() == []


@pytest.mark.parametrize(("args", "message"), [
    (["--ulimit", "nofile=2:1"], "--ulimit nofile=2:1: the soft limit 2 is above the hard limit 1"),
    (["--ulimit", "files=1"], "--ulimit files=1: expected NAME=SOFT[:HARD], NAME one of as, core, cpu, data, "
                              "fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, "
                              "sigpending, stack"),
    (["--sysctl", "kernel.pid_max=100"],
     "--sysctl kernel.pid_max: not a namespaced kernel parameter; it would change the host's (net.*, "
     "kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.* are the container's own)"),
    (["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"],
     "--sysctl net.ipv4.ip_forward: not allowed with --network host: it would change the host's network "
     "namespace"),
    (["--device", "/etc/passwd"], "--device /etc/passwd: /etc/passwd is not a character or block device"),
    (["--device", "/dev/nosuch"], "--device /dev/nosuch: /dev/nosuch: No such file or directory"),
    (["--device", "/dev/fuse:r"], "--device /dev/fuse:r: the runtime lets a device it makes be read, "
                                  "written and made (as runc does); fewer permissions than rwm are refused, "
                                  "not ignored"),
    (["--group-add", "audio"], "--group-add audio: unable to find group audio: no matching entries in the "
                               "image's group file"),
    (["--shm-size", "lots"], "--shm-size 'lots': not a size (use a number with k, m or g, e.g. 64m)"),
    (["--mount", "type=bind,source=/no/such,target=/x"],
     "--mount type=bind,source=/no/such,target=/x: bind source path does not exist: /no/such"),
    (["--mount", "type=tmpfs,target=/t,bind-propagation=rshared"],
     "--mount type=tmpfs,target=/t,bind-propagation=rshared: bind-propagation is not an option of type=tmpfs"),
    (["--mount", "type=volume,source=v"],
     "--mount type=volume,source=v: target is required (the path in the container)"),
    (["--mount", "type=nfs,target=/x"],
     "--mount type=nfs,target=/x: type 'nfs': expected bind, volume or tmpfs"),
    (["-v", "/data", "--tmpfs", "/data"], "duplicate mount point: /data"),
    (["--stop-signal", "SIGNOPE"], "--stop-signal SIGNOPE: not a signal (TERM, SIGUSR1, 15...)"),
    (["--restart", "sometimes"], "--restart sometimes: expected no, always, unless-stopped or on-failure[:N]"),
], ids=lambda v: v[0] if isinstance(v, list) else None)
def test_a_bad_flag_is_one_line_and_leaves_nothing(engine: Engine, args: list[str], message: str) -> None:
    result = engine("run", "--rm", *args, "busybox", "true")
    assert (result.returncode, result.stdout, result.stderr) == (125, "", f"mini-engine: {message}\n")
    assert engine.containers() == [] and volumes(engine) == [] and engine.runtime_states() == []


def test_the_flags_on_the_default_bridge_and_confinement(net: NetLab) -> None:
    """What a learner's engine does: the bridge's network namespace (made by the engine, joined by the
    container), docker's capabilities, seccomp and device filter."""
    fuse = os.stat("/dev/fuse").st_rdev
    result = net.run("run", "--rm", "--sysctl", "net.ipv4.ip_unprivileged_port_start=80",
                     "--ulimit", "nofile=64", "--device", "/dev/fuse", "--group-add", "1234",
                     "--shm-size", "1m",
                     "busybox", "sh", "-c",
                     "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; ulimit -n; stat -c '%t %T' /dev/fuse; "
                     "head -c0 /dev/fuse && echo opened; id -G; df -k /dev/shm | tail -1; "
                     "ip -o -4 addr show eth0 | awk '{print $4}'")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:6] == ["80", "64", f"{os.major(fuse):x} {os.minor(fuse):x}", "opened", "0 1234",
                         lines[5]] and lines[5].split()[:2] == ["shm", "1024"]
    assert lines[6].startswith("10.88.0.")
    # The bridge's namespace is the container's own: the host's value is untouched.
    assert net.host("cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start").stdout.strip() != "80"
