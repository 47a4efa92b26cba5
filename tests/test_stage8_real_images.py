"""Stage 8: detached containers and their monitor, logs, stop, wait, volumes, restart.

The capstone at the end pulls a web server image, built by umoci and pushed
by skopeo to a real docker-registry, and runs it as a learner would, in the
networking tests' namespaces (tests/fixtures/netlab.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import PODMAN_NEEDS_V2, Engine
from fixtures.netlab import CLEAN, HOST_IP, NetLab

from mini_engine.labkit import wait_until

pytestmark = [pytest.mark.stage(8), pytest.mark.root]


def ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def inspect(engine: Engine, name: str) -> dict:
    return json.loads(ok(engine("inspect", name)))[0]


def gone(engine: Engine, name: str) -> bool:
    return engine("inspect", name).returncode != 0


def test_run_d_returns_at_once_and_the_monitor_keeps_the_log(engine: Engine) -> None:
    script = "echo out one; echo err one >&2; sleep 0.2; echo out two; exec sleep 60"
    cid = ok(engine("run", "-d", "--name", "d1", "busybox", "sh", "-c", script)).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    try:
        # Back at once: the container still runs (it ends in a minute).
        table = ok(engine("ps"))
        assert re.search(rf"^{cid[:12]} .* running .* d1$", table, re.M), table
        assert wait_until(lambda: engine("logs", "d1").stdout == "out one\nout two\n")
        assert engine("logs", "d1").stderr == "err one\n"
        assert engine("logs", "--tail", "1", "d1").stdout == "out two\n"
        stamped = engine("logs", "-t", "d1").stdout.splitlines()
        stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"
        assert all(re.fullmatch(rf"{stamp} out (one|two)", line) for line in stamped)
        state = inspect(engine, "d1")["State"]
        assert state["Status"] == "running" and state["Running"] and state["Pid"] > 0
        # exec joins it (once sh has become sleep 60); top lists its processes from its cgroup.
        assert wait_until(lambda: ok(engine("exec", "d1", "cat", "/proc/1/cmdline")) == "sleep\x0060\x00")
        assert "sleep 60" in ok(engine("top", "d1"))
        # stop: SIGTERM, which sleep as PID 1 ignores, then SIGKILL after -t.
        assert ok(engine("stop", "-t", "1", "d1")) == "d1\n"
        state = inspect(engine, cid[:12])["State"]
        assert (state["Status"], state["ExitCode"], state["Running"]) == ("exited", 137, False)
        assert state["FinishedAt"] > state["StartedAt"]
        assert ok(engine("wait", "d1")) == "137\n"
        assert cid[:12] not in ok(engine("ps"))
        assert cid[:12] in ok(engine("ps", "-a"))
    finally:
        engine("rm", "-f", cid)
    assert gone(engine, cid)


def test_logs_follow_ends_with_the_container(engine: Engine) -> None:
    ok(engine("run", "-d", "--name", "counter", "busybox", "sh", "-c",
              "for i in 1 2 3; do echo $i; sleep 0.3; done"))
    try:
        assert ok(engine("logs", "-f", "counter", timeout=60)) == "1\n2\n3\n"
        assert ok(engine("wait", "counter")) == "0\n"
    finally:
        engine("rm", "-f", "counter")


def alive(pid: int) -> bool:
    """Does ``pid`` run (and is not a zombie)?"""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except FileNotFoundError:
        return False


def test_a_killed_monitor_leaves_an_orphan_that_runs_until_rm_f(engine: Engine) -> None:
    ok(engine("run", "-d", "--name", "lost", "busybox", "sleep", "300"))
    monitor = json.loads(engine("ps", "--format", "json").stdout)[0]["State"]["EnginePid"]
    os.kill(monitor, signal.SIGKILL)
    assert wait_until(lambda: not alive(monitor))
    # The kernel's truth: its sleep runs on, with nobody to watch it.
    assert re.search(r" running \(orphan\) .* lost$", ok(engine("ps")), re.M)
    state = inspect(engine, "lost")["State"]
    assert (state["Status"], state["Running"], state["MonitorPid"], state["Error"]) == (
        "running", True, 0, f"its engine (pid {monitor}) is gone")
    assert alive(state["Pid"]) and Path(f"/proc/{state['Pid']}/cmdline").read_bytes() == b"sleep\x00300\x00"
    # docker's rule and words: a running container goes only with -f.
    refused = engine("rm", "lost")
    assert (refused.returncode, refused.stderr) == (1, 'mini-engine: cannot remove container "lost": container '
                                                       "is running: stop the container before removing or "
                                                       "force remove\n")
    assert alive(state["Pid"]) and not gone(engine, "lost")
    ok(engine("rm", "-f", "lost"))
    assert gone(engine, "lost") and not alive(state["Pid"])
    assert engine.runtime_states() == [] and engine.containers() == []


def test_a_killed_engines_orphan_keeps_its_network_and_rm_f_takes_it_all(engine: Engine) -> None:
    """The foreground engine of a container on the bridge, kill -9ed: the container runs on,
    on its network, which another container's start must not reclaim; rm -f kills it and
    removes its process, overlay, network namespace, lease, veth, runtime state and name."""
    net = NetLab(engine)
    try:
        fg = net.popen("run", "--name", "orphan", "busybox", "sleep", "300",
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_until(lambda: net.run("exec", "orphan", "true").returncode == 0)
        fg.kill()  # nsenter has become the engine: same pid
        fg.wait(timeout=10)
        state = inspect(net.run, "orphan")["State"]
        assert (state["Status"], state["Running"]) == ("running", True) and alive(state["Pid"])
        ok(net.run("run", "--rm", "busybox", "true"))  # its connect reclaims dead engines' leases
        assert net.run("exec", "orphan", "ping", "-c1", "-W5", "10.88.0.1").returncode == 0
        cid = inspect(net.run, "orphan")["Id"]
        left = net.leftovers()
        assert left["netns"] == [cid] and f"me{cid[:12]}" in left["links"] and len(left["leases"]) == 1
        refused = net.run("rm", "orphan")
        assert refused.returncode == 1 and "container is running" in refused.stderr
        ok(net.run("rm", "-f", "orphan"))
        assert not alive(state["Pid"])
        assert net.pruned_leftovers() == CLEAN
        assert engine.containers() == [] and engine.runtime_states() == []
        assert not (engine.root / "names" / "orphan").exists()
        # The name is free again.
        ok(net.run("run", "--rm", "--name", "orphan", "busybox", "true"))
    finally:
        net.close()


def test_an_orphan_that_has_exited_is_removed_without_f_with_all_it_held(engine: Engine) -> None:
    net = NetLab(engine)
    try:
        fg = net.popen("run", "--name", "ended", "busybox", "sleep", "300",
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_until(lambda: net.run("exec", "ended", "true").returncode == 0)
        fg.kill()
        fg.wait(timeout=10)
        pid = inspect(net.run, "ended")["State"]["Pid"]
        assert pid > 0  # (kill(0) would be our own process group's)
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not alive(pid))
        assert re.search(r" exited \(orphan\) .* ended$", ok(net.run("ps", "-a")), re.M)
        assert inspect(net.run, "ended")["State"]["Running"] is False
        ok(net.run("rm", "ended"))
        assert net.pruned_leftovers() == CLEAN
        assert engine.containers() == [] and engine.runtime_states() == []
    finally:
        net.close()


def test_restart_on_failure_and_the_flags_it_refuses(engine: Engine) -> None:
    ok(engine("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c",
              "echo try; exit 3"))
    try:
        assert ok(engine("wait", "flaky")) == "3\n"
        assert engine("logs", "flaky").stdout == "try\ntry\ntry\n"  # the first run and two restarts
        assert inspect(engine, "flaky")["RestartCount"] == 2
    finally:
        engine("rm", "-f", "flaky")
    for args, message in [
        (["--restart", "sometimes"], "--restart sometimes: expected no, always, unless-stopped or "
                                    "on-failure[:N]"),
        (["--restart", "always", "--rm"], "--restart and --rm conflict: a container removed when it "
                                          "exits cannot be started again"),
        (["-d", "-a", "stdout"], "conflicting options: -a and -d (attach later: mini-engine attach)"),
    ]:
        result = engine("run", *args, "busybox", "true")
        assert (result.returncode, result.stderr) == (125, f"mini-engine: {message}\n")
    missing = engine("run", "-d", "--rm", "busybox", "no-such-command")
    assert (missing.returncode, missing.stderr) == (
        127, 'mini-engine: exec "no-such-command": executable file not found in $PATH\n')


def test_volumes_bind_named_tmpfs_and_a_read_only_root(engine: Engine, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("from the host\n")
    out = ok(engine("run", "--rm", "-v", f"{site}:/www:ro", "busybox", "sh", "-c",
                    "cat /www/index.html; touch /www/x; grep ' /www ' /proc/self/mountinfo"))
    lines = out.splitlines()
    assert lines[0] == "from the host"
    assert " ro," in lines[1] and "shared:" not in lines[1] and "master:" not in lines[1]  # ro, private
    assert not (site / "x").exists()
    ok(engine("run", "--rm", "-v", "kept:/data", "busybox", "sh", "-c", "echo 42 > /data/answer"))
    assert ok(engine("run", "--rm", "-v", "kept:/data:ro", "busybox", "cat", "/data/answer")) == "42\n"
    assert "kept" in ok(engine("volume", "ls")).split()
    out = engine("run", "--rm", "--read-only", "--tmpfs", "/scratch", "busybox", "sh", "-c",
                 "touch /x; touch /scratch/y && echo scratch")
    assert out.stdout == "scratch\n" and "touch: /x: Read-only file system" in out.stderr
    # A volume in use is kept, even by a container that has exited.
    ok(engine("run", "--name", "user", "-v", "kept:/data", "busybox", "true"))
    refused = engine("volume", "rm", "kept")
    assert refused.returncode == 1
    assert refused.stderr.startswith('mini-engine: volume "kept" is in use by container ')
    ok(engine("rm", "user"))
    assert ok(engine("volume", "rm", "kept")) == "kept\n"
    for spec, message in [
        ("/no/such/dir:/x", "-v /no/such/dir:/x: /no/such/dir does not exist on the host"),
        ("rel/dir:/x", "-v rel/dir:/x: rel/dir is neither an absolute path nor a volume name"),
        (f"{site}:relative", f"-v {site}:relative: the destination must be an absolute path other than /"),
        (f"{site}:/x:rx", f"-v {site}:/x:rx: rx is neither ro nor rw nor a propagation "
                          "(private, rprivate, shared, rshared, slave, rslave)"),
        (f"{site}:/x:ro,rw", f"-v {site}:/x:ro,rw: give ro or rw once, and one propagation at most"),
        ("kept:/x:rslave", "-v kept:/x:rslave: rslave is for a directory of the host's; "
                           "a named volume is the engine's own"),
    ]:
        result = engine("run", "--rm", "-v", spec, "busybox", "true")
        assert (result.returncode, result.stderr) == (125, f"mini-engine: {message}\n")


def test_volume_propagation_as_v_asks_rslave_lets_the_hosts_mounts_in_rshared_out_too(
        engine: Engine, tmp_path: Path) -> None:
    """A shared source of the test's own: a tmpfs, --make-shared. A mount the host makes under
    it after the containers started reaches the rslave and rshared ones, not the default
    (rprivate); a mount the rshared one makes reaches the host."""
    source = tmp_path / "source"
    source.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "source", str(source)], check=True)
    ids: dict[str, str] = {}
    try:
        subprocess.run(["mount", "--make-shared", str(source)], check=True)
        (source / "later").mkdir()
        (source / "inner").mkdir()
        for kind, extra in (("rslave", []), ("default", []), ("rshared", ["--cap-add", "SYS_ADMIN"])):
            option = f"{source}:/vol" + ("" if kind == "default" else f":{kind}")
            ids[kind] = ok(engine("run", "-d", *extra, "-v", option, "busybox", "sleep", "300")).strip()
        subprocess.run(["mount", "-t", "tmpfs", "later", str(source / "later")], check=True)
        (source / "later" / "file").write_text("mounted after\n")
        seen = {kind: engine("exec", cid, "cat", "/vol/later/file").stdout for kind, cid in ids.items()}
        assert seen == {"rslave": "mounted after\n", "default": "", "rshared": "mounted after\n"}
        # config.json asks the runtime for a root that lets them propagate, as docker's does.
        roots = {kind: json.loads((engine.root / "containers" / cid / "config.json").read_text())["linux"]
                 .get("rootfsPropagation") for kind, cid in ids.items()}
        assert roots == {"rslave": "rslave", "default": None, "rshared": "shared"}
        assert [m["Propagation"] for m in inspect(engine, ids["rslave"])["Mounts"]] == ["rslave"]
        ok(engine("exec", ids["rshared"], "mount", "-t", "tmpfs", "inner", "/vol/inner"))
        assert os.path.ismount(source / "inner")
        # A source on a mount that does not propagate at all: docker's refusal.
        private = engine("run", "--rm", "-v", f"{tmp_path}:/x:rslave", "busybox", "true")
        assert private.returncode == 125 and private.stderr.startswith(
            f"mini-engine: -v {tmp_path}:/x:rslave: {tmp_path} is mounted on ")
        assert "but it is not a shared or slave mount" in private.stderr
    finally:
        for cid in ids.values():
            engine("rm", "-f", cid)
        subprocess.run(["umount", "-R", str(source)], check=True)


def pid_namespace_members(pid: int) -> list[tuple[str, str]]:
    """(state letter, command line) of every process in the PID namespace of ``pid``, seen from the host."""
    namespace = os.readlink(f"/proc/{pid}/ns/pid")
    members = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(proc / "ns/pid") != namespace:
                continue
            state = re.search(r"^State:\s+(\S)", (proc / "status").read_text(), re.M)[1]
            members.append((state, (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()))
        except (OSError, TypeError):
            pass  # the process ended while we looked
    return members


def test_init_reaps_the_zombies_an_entrypoint_leaves(engine: Engine) -> None:
    # The subshell's child, sleep 0.1, is orphaned and ends a moment later.
    # Without --init PID 1 is sleep 30, which never waits: the orphan stays a
    # zombie (state Z, no command line). With --init PID 1 is catatonit, which
    # reaps it: only catatonit and sleep 30 are left.
    entrypoint = "(sleep 0.1 &); exec sleep 30"
    init = f"/run/mini-engine-init -- sh -c {entrypoint}"
    for flags, pid1, left in (([], "sleep 30", [("S", "sleep 30"), ("Z", "")]),
                              (["--init"], init, [("S", init), ("S", "sleep 30")])):
        ok(engine("run", "-d", "--name", "z", *flags, "busybox", "sh", "-c", entrypoint))
        try:
            pid = inspect(engine, "z")["State"]["Pid"]
            members = wait_until(lambda pid=pid, left=left: sorted(pid_namespace_members(pid)) == left)
            assert members, (flags, pid_namespace_members(pid))
            assert Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip() == pid1
        finally:
            ok(engine("rm", "-f", "z"))


def test_sixteen_clis_at_once_run_exec_and_remove(engine: Engine) -> None:
    def one(i: int) -> tuple[int, str]:
        name = f"par{i}"
        started = engine("run", "-d", "--name", name, "busybox", "sleep", "60", timeout=120)
        if started.returncode:
            return started.returncode, started.stderr
        said = engine("exec", name, "echo", name, timeout=120)
        removed = engine("rm", "-f", name, timeout=120)
        return said.returncode or removed.returncode, said.stdout + said.stderr + removed.stderr

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    assert [code for code, _ in results] == [0] * 16, results
    assert [out for _, out in results] == [f"par{i}\n" for i in range(16)]
    left = [json.loads((engine.root / "containers" / c / "container.json").read_text())
            for c in engine.containers()]
    assert left == []


def test_start_and_restart_run_an_exited_container_again(engine: Engine) -> None:
    ok(engine("run", "-d", "--name", "again", "-v", "runs:/data", "busybox", "sh", "-c",
              "echo started; echo x >> /data/runs; exec sleep 60"))
    try:
        ok(engine("stop", "-t", "0", "again"))
        assert "exited (137)" in ok(engine("ps", "-a"))
        cid = inspect(engine, "again")["Id"]
        assert ok(engine("start", "again")) == f"{cid}\n"
        assert inspect(engine, "again")["State"]["Running"]
        # Running already: nothing to do, and no error (docker's and podman's start).
        assert ok(engine("start", "again")) == f"{cid}\n"
        ok(engine("restart", "-t", "0", "again"))
        assert wait_until(lambda: engine("logs", "again").stdout == "started\n" * 3)
        assert ok(engine("exec", "again", "wc", "-l", "/data/runs")).split()[0] == "3"  # the volume kept them
        # Two starts at once: the first claims the container and starts it, the
        # second finds it running; both succeed, and it ran once more, not twice.
        ok(engine("stop", "-t", "0", "again"))
        with ThreadPoolExecutor(2) as pool:
            both = [(r.returncode, r.stdout, r.stderr) for r in pool.map(
                lambda _: engine("start", "again"), range(2))]
        assert both == [(0, f"{cid}\n", "")] * 2
        assert wait_until(lambda: engine("logs", "again").stdout == "started\n" * 4)
        assert ok(engine("exec", "again", "wc", "-l", "/data/runs")).split()[0] == "4"
    finally:
        engine("rm", "-f", "again")
        engine("volume", "rm", "runs")


def test_refusals_exit_as_dockers_do(engine: Engine) -> None:
    """docker's command line exits 1 when its daemon refuses a request (125
    is for run's own failures). Where podman differs, exec of a stopped
    container (125), this engine follows docker."""
    assert ok(engine("run", "--name", "fg", "busybox", "echo", "hello")) == "hello\n"
    try:
        cid = inspect(engine, "fg")["Id"]
        stopped = engine("exec", "fg", "true")
        assert (stopped.returncode, stopped.stderr) == (1, 'mini-engine: container "fg" is not running\n')
        top = engine("top", "fg")
        assert (top.returncode, top.stderr) == (1, 'mini-engine: container "fg" is not running\n')
        # A foreground container keeps a log too, as docker's (its -t case: test_attach_and_logs.py).
        logged = engine("logs", "fg")
        assert (logged.returncode, logged.stdout, logged.stderr) == (0, "hello\n", "")
        missing = engine("rmi", "example.test/no-such-image:1")
        assert missing.returncode == 1 and len(missing.stderr.splitlines()) == 1
        # start runs it detached, with a log from then on.
        assert ok(engine("start", "fg")) == f"{cid}\n"
        assert wait_until(lambda: engine("logs", "fg").stdout == "hello\n" * 2)
    finally:
        engine("rm", "-f", "fg")


def test_reliability_runs_and_removals_with_engines_killed_at_random(engine: Engine) -> None:
    """200 run -d / rm -f cycles on a bridge, 50 of them with the command line or the
    monitor SIGKILLed at a random moment; after prune, nothing is left."""
    import random

    rng = random.Random(8)
    net = NetLab(engine)
    try:
        def cycle(i: int) -> None:
            name = f"r{i}"
            if i % 4:  # 150 plain cycles
                net.run("run", "-d", "--name", name, "busybox", "sleep", "30")
            elif i % 8:  # 25: the command line killed while it starts the container
                proc = net.popen("run", "-d", "--name", name, "busybox", "sleep", "30",
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(rng.uniform(0, 0.5))
                proc.kill()
                proc.wait()
                # A monitor it forked goes on making the container: let it get that far,
                # or rm -f would find no container yet, and the monitor would run on.
                wait_until(lambda: net.run("inspect", name).returncode == 0 or not _monitors(name))
            else:  # 25: the monitor killed, at a random moment of its life
                proc = net.popen("run", "-d", "--name", name, "busybox", "sleep", "30",
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(rng.uniform(0, 0.5))
                for pid in _monitors(name):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass  # the command line, done since it was listed: it exits once the monitor runs
                proc.wait()
            net.run("rm", "-f", name)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(cycle, range(200)))
        ok(net.run("prune"))
        assert engine.containers() == []
        assert engine.runtime_states() == []
        assert net.pruned_leftovers() == CLEAN
        assert _monitors("") == []
    finally:
        net.close()


def _monitors(name: str) -> list[int]:
    """Engine processes (command lines and monitors) of ``run -d --name NAME...``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if b"mini_engine" in argv and b"-d" in argv and (not name or name.encode() in argv):
                found.append(int(entry))
    return found


def test_one_name_eight_engines_at_once_one_wins(engine: Engine) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: engine("run", "--name", "only", "busybox", "true", timeout=120),
                                range(8)))
    try:
        assert sorted(r.returncode for r in results) == [0] + [125] * 7, [r.stderr for r in results]
        assert all('the name "only" is in use by' in r.stderr for r in results if r.returncode)
        assert [r.get("Name") for r in json.loads(ok(engine("ps", "-a", "--format", "json")))] == ["only"]
    finally:
        ok(engine("rm", "only"))
    # Removed, the name is free again; paused and unpaused, a detached container says so.
    ok(engine("run", "-d", "--name", "only", "busybox", "sleep", "30"))
    try:
        ok(engine("pause", "only"))
        assert inspect(engine, "only")["State"]["Paused"] is True
        ok(engine("unpause", "only"))
        assert inspect(engine, "only")["State"]["Status"] == "running"
    finally:
        ok(engine("rm", "-f", "only"))


# The capstone: a web server image from a real registry, run as a learner would.

@pytest.fixture(scope="module")
def web_image(tmp_path_factory: pytest.TempPathFactory, test_images: Any) -> Iterator[str]:
    """A busybox httpd image (umoci builds it, skopeo pushes it to a docker-registry)."""
    from fixtures.images import umoci
    from fixtures.registry import Registry

    work = tmp_path_factory.mktemp("web")
    layout = work / "layout"
    shutil.copytree(test_images.layout, layout)
    umoci("config", "--image", f"{layout}:single", "--tag", "web", "--config.user", "0",
          "--config.entrypoint", "httpd", "--config.cmd", "-f", "--config.cmd", "-vv", "--config.cmd", "-p",
          "--config.cmd", "80", "--config.cmd", "-h", "--config.cmd", "/www", "--config.workingdir", "/",
          "--config.exposedports", "80/tcp")
    with Registry(work) as registry:
        registry.push(f"oci:{layout}:web", "capstone/web:1")
        yield f"{registry.host}/capstone/web:1"


def test_capstone_a_web_server_from_a_registry(engine: Engine, web_image: str, tmp_path: Path) -> None:
    ok(engine("pull", "-q", web_image))
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>capstone</h1>\n")
    net = NetLab(engine)
    try:
        cid = ok(net.run("run", "-d", "--name", "web", "-p", "8080:80", "-v", f"{site}:/www:ro",
                         web_image)).strip()
        fetch = ("import sys, urllib.request; "
                 "print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode(), end='')")
        page = wait_until(lambda: net.host(sys.executable, "-c", fetch, f"http://{HOST_IP}:8080/",
                                         check=False).stdout)
        assert page == "<h1>capstone</h1>\n"
        assert net.outside(sys.executable, "-c", fetch, f"http://{HOST_IP}:8080/").stdout == page
        # httpd -vv logs each request on stderr: the monitor kept it.
        assert wait_until(lambda: "url:/" in net.run("logs", "web").stderr)
        assert ok(net.run("exec", "web", "cat", "/www/index.html")) == page
        ok(net.run("stop", "-t", "2", "web"))
        assert inspect(net.run, "web")["State"]["ExitCode"] == 137  # httpd ignores SIGTERM as PID 1
        ok(net.run("rm", "web"))
        assert gone(net.run, cid)
        assert net.pruned_leftovers() == CLEAN
    finally:
        net.run("rm", "-f", "web")
        net.close()
        engine("rmi", web_image)


@pytest.fixture(scope="module")
def debian_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian 12 (debootstrap, cached), made an image by umoci, pushed to a docker-registry."""
    from fixtures.images import debian_layout
    from fixtures.registry import Registry

    if shutil.which("debootstrap") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have debootstrap: scripts/install-system-deps.sh --test installs it")
        pytest.skip("debootstrap is not installed (scripts/install-system-deps.sh --test)")
    work = tmp_path_factory.mktemp("debian")
    layout = debian_layout(work)
    with Registry(work) as registry:
        registry.push(f"oci:{layout}:debian", "capstone/debian:12")
        yield f"{registry.host}/capstone/debian:12"


DEBIAN_SCRIPT = "apt-get --version | head -1; echo $BASH_VERSION; cat /etc/debian_version; id"


def debian_answers(engine: Engine, image: str) -> tuple[str, str]:
    """What the Debian image says to DEBIAN_SCRIPT as root, and to ``id; echo $HOME`` as nobody."""
    ok(engine("pull", "-q", image))
    try:
        return (ok(engine("run", "--rm", image, "bash", "-c", DEBIAN_SCRIPT)),
                ok(engine("run", "--rm", "-u", "nobody", image, "bash", "-c", "id; echo $HOME")))
    finally:
        engine("rmi", image)


def test_capstone_a_debian_image_runs_apt_bash_and_another_user(engine: Engine, debian_image: str) -> None:
    ours, nobody = debian_answers(engine, debian_image)
    apt, bash, version, user = ours.splitlines()
    assert apt.startswith("apt 2.6") and bash.startswith("5.2.") and version.startswith("12.")
    assert user == "uid=0(root) gid=0(root) groups=0(root)"
    assert nobody == "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n/nonexistent\n"


@pytest.mark.vm
@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
@PODMAN_NEEDS_V2
def test_the_debian_image_answers_the_same_under_podman_and_runc(request: pytest.FixtureRequest,
                                                                tmp_path: Path) -> None:
    from fixtures.images import DEBIAN_CACHE

    if not DEBIAN_CACHE.exists():
        pytest.skip("the Debian rootfs is made (and cached) by the host's run; the VM has no network")
    image = request.getfixturevalue("debian_image")
    # The VM's /tmp is an overlay, where overlays cannot be mounted: roots on /run, a tmpfs.
    base = Path(tempfile.mkdtemp(prefix="me-", dir="/run"))
    podman = ["podman", "--root", str(base / "podman"), "--runroot", str(base / "prun"),
              "--cgroup-manager", "cgroupfs", "--storage-driver", "vfs", "--events-backend", "none",
              "--runtime", "runc"]
    # Lower rlimits than podman's default: raising them takes CAP_SYS_RESOURCE (bench/network.py).
    run = [*podman, "run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit",
           "nproc=1024:1024"]

    def podman_says(*args: str) -> str:
        return ok(subprocess.run([*run, *args], capture_output=True, text=True, timeout=300))

    try:
        ours, nobody = debian_answers(Engine(base / "lib", base / "run"), image)
        ok(subprocess.run([*podman, "pull", "-q", "--tls-verify=false", image], capture_output=True,
                          text=True, timeout=600))
        assert podman_says(image, "bash", "-c", DEBIAN_SCRIPT) == ours
        assert podman_says("-u", "nobody", image, "bash", "-c", "id; echo $HOME") == nobody
    finally:
        subprocess.run([*podman, "rmi", "-af"], capture_output=True)
        subprocess.run(["umount", "-R", str(base)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
