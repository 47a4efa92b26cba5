"""mini-runc: the runtime alone, driven like runc, on bundles the tests write.

The lifecycle as the runtime spec states it, and the config.json keys the
runtime honours, each judged by what the kernel shows inside the container.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, Engine, read_until_closed

from mini_engine.labkit import wait_until
from mini_engine.runtime import cgroups

MINI_RUNC = [sys.executable, "-m", "mini_engine.runtime.cli"]


class Runc:
    def __init__(self, root: Path, bundle: Path) -> None:
        self.root, self.bundle = root, bundle

    def __call__(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*MINI_RUNC, "--root", str(self.root), *args], cwd=self.bundle,
                              capture_output=True, text=True, timeout=60, **kw)

    def create(self, *args: str) -> int:
        """``create`` hands our stdio to the container, which keeps it: no pipes here."""
        return subprocess.run([*MINI_RUNC, "--root", str(self.root), "create", *args], cwd=self.bundle,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=60).returncode

    def config(self, **process: object) -> dict:
        config = json.loads((self.bundle / "config.json").read_text())
        config["process"].update({"terminal": False, **process})
        return config

    def write(self, config: dict) -> None:
        (self.bundle / "config.json").write_text(json.dumps(config))

    def run(self, config: dict) -> subprocess.CompletedProcess[str]:
        self.write(config)
        return self("run", f"t-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def runc(engine: Engine, tmp_path: Path) -> Iterator[Runc]:
    engine("--stage", "1", "run", "--rm", "busybox", "true")  # builds the bundled image
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copytree(engine.root / "bundled" / "busybox" / "rootfs", bundle / "rootfs", symlinks=True)
    r = Runc(tmp_path / "state", bundle)
    assert r("spec").returncode == 0
    config = r.config()
    config["root"]["readonly"] = False
    r.write(config)
    yield r
    for container_id in os.listdir(r.root) if r.root.exists() else []:
        r("delete", "--force", container_id)


def test_the_lifecycle(runc: Runc) -> None:
    runc.write(runc.config(args=["sleep", "300"]))
    assert runc.create("--pid-file", "pidfile", "c1") == 0
    state = json.loads(runc("state", "c1").stdout)
    pid = (runc.bundle / "pidfile").read_text()
    assert pid.isdigit() and int(pid) == state["pid"]  # bare digits, no newline
    assert (state["status"], state["id"], state["bundle"]) == ("created", "c1", str(runc.bundle))
    # The container's process waits, fully set up, in its own namespaces.
    assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    assert runc("delete", "c1").returncode == 1  # not stopped: refused, no effect
    assert json.loads(runc("state", "c1").stdout)["status"] == "created"
    assert runc("start", "c1").returncode == 0
    assert json.loads(runc("state", "c1").stdout)["status"] == "running"
    assert runc("start", "c1").returncode == 1  # only a created container starts
    assert runc("kill", "c1", "KILL").returncode == 0
    wait_until_stopped(runc, "c1")
    assert json.loads(runc("state", "c1").stdout)["status"] == "stopped"
    assert runc("delete", "c1").returncode == 0
    assert runc("state", "c1").returncode == 1
    assert runc("delete", "--force", "c1").returncode == 0  # missing, forced: fine


def test_list_keeps_long_ids_in_their_column(runc: Runc) -> None:
    """runc pads the table with tabwriter: every column as wide as its widest
    cell and three spaces. An id of 20 characters or more ran into the PID."""
    cid = "a-container-whose-id-is-long"  # 28 characters
    runc.write(runc.config(args=["sleep", "300"]))
    assert runc.create(cid) == 0
    try:
        state = json.loads(runc("state", cid).stdout)
        header, row = runc("list").stdout.splitlines()
    finally:
        runc("delete", "--force", cid)
    cells = [cid, str(state["pid"]), "created", str(runc.bundle), state["created"], "root"]
    assert row.split() == cells
    names = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert header.split() == names

    def starts(line: str, words: list[str]) -> list[int]:
        at = []
        for word in words:
            at.append(line.index(word, at[-1] + len(words[len(at) - 1]) if at else 0))
        return at

    # Each cell starts where its column's name does, three spaces after the widest cell before it.
    assert starts(row, cells) == starts(header, names)
    assert header.index("PID") == len(cid) + 3
    assert header.index("STATUS") - header.index("PID") == 12  # a narrow column: 12, padding included


def test_the_terminal_arrives_over_the_console_socket(runc: Runc) -> None:
    runc.write(runc.config(terminal=True, args=["sh", "-c", "tty; echo hello > /dev/console"]))
    path = str(runc.bundle / "console.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        assert runc.create("--console-socket", path, "t1") == 0
        conn, _ = listener.accept()
        name, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        conn.close()
    assert runc("start", "t1").returncode == 0
    out = read_until_closed(fds[0])
    # The pty came from the container's own devpts: it is number 0 there.
    assert name == b"/dev/pts/0"
    assert out.split("\n")[:2] == ["/dev/pts/0", "hello"]


def test_a_terminal_needs_a_console_socket(runc: Runc) -> None:
    runc.write(runc.config(terminal=True))
    result = runc("create", "t2")
    assert result.returncode == 1
    assert "--console-socket is needed" in result.stderr


def test_exec_joins_every_namespace_of_the_container(runc: Runc) -> None:
    caps = ["CAP_CHOWN", "CAP_KILL"]
    config = runc.config(args=["sleep", "300"], noNewPrivileges=True,
                         capabilities={"bounding": caps, "effective": caps, "permitted": caps})
    config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
    runc.write(config)
    assert runc.create("e1") == 0 and runc("start", "e1").returncode == 0
    init = json.loads(runc("state", "e1").stdout)["pid"]
    probe = ("for n in cgroup ipc mnt net pid uts; do readlink /proc/self/ns/$n; done; "
             "echo $$; hostname; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; "
             "mkdir /tmp/x; echo mkdir=$?; exit 4")
    result = runc("exec", "e1", "sh", "-c", probe)
    lines = result.stdout.splitlines()
    theirs = [os.readlink(f"/proc/{init}/ns/{n}") for n in ("cgroup", "ipc", "mnt", "net", "pid", "uts")]
    runc("kill", "e1", "KILL")
    assert result.returncode == 4
    assert lines[:6] == theirs                      # the container's namespaces, not ours
    assert int(lines[6]) > 1                        # a PID in the container's PID namespace
    assert lines[7] == "mini-runc"                  # its hostname
    assert [line.split()[1] for line in lines[8:11]] == ["0000000000000021", "1", "2"]
    assert lines[11] == "mkdir=1"                   # and its seccomp filter


def test_ps_lists_the_container_processes(runc: Runc) -> None:
    config = runc.config(args=["sh", "-c", "sleep 300 & sleep 300 & wait"])
    config["linux"]["cgroupsPath"] = f"/mini-engine/ps-{uuid.uuid4().hex[:8]}"
    runc.write(config)
    assert runc.create("p1") == 0 and runc("start", "p1").returncode == 0
    init = json.loads(runc("state", "p1").stdout)["pid"]
    for _ in range(100):
        pids = json.loads(runc("ps", "--format", "json", "p1").stdout)
        if len(pids) == 3:
            break
    table = runc("ps", "p1").stdout.splitlines()
    runc("delete", "--force", "p1")
    assert init in pids and len(pids) == 3  # sh and its two sleeps, host pids
    assert table[0].split() == ["PID", "CMD"] and len(table) == 4


def test_exec_into_a_stopped_container_is_refused(runc: Runc) -> None:
    runc.write(runc.config(args=["true"]))
    assert runc.create("e2") == 0 and runc("start", "e2").returncode == 0
    wait_until_stopped(runc, "e2")
    result = runc("exec", "e2", "true")
    assert (result.returncode, result.stderr) == (
        1, 'mini-runc: container "e2" is stopped: nothing to exec into\n')


def test_kill_of_a_stopped_container_says_what_containerd_reads(runc: Runc) -> None:
    # containerd's shim takes "container not running" for "already exited";
    # other words fail the kubelet's StopContainer (tests/test_cri.py).
    runc.write(runc.config(args=["true"]))
    assert runc.create("k1") == 0 and runc("start", "k1").returncode == 0
    wait_until_stopped(runc, "k1")
    result = runc("kill", "k1", "KILL")
    assert (result.returncode, result.stderr) == (
        1, 'mini-runc: container "k1" has stopped: container not running\n')


def test_run_passes_the_exit_code(runc: Runc) -> None:
    result = runc.run(runc.config(args=["sh", "-c", "echo out; exit 7"]))
    assert (result.returncode, result.stdout) == (7, "out\n")


def test_errors_go_to_the_json_log(runc: Runc) -> None:
    result = runc("--log", "log.json", "--log-format=json", "start", "nope")
    assert result.returncode == 1
    assert result.stderr == 'mini-runc: container "nope" does not exist\n'
    (line,) = (runc.bundle / "log.json").read_text().splitlines()
    entry = json.loads(line)
    assert (entry["level"], entry["msg"]) == ("error", 'container "nope" does not exist')
    datetime.datetime.fromisoformat(entry["time"])  # RFC 3339


def test_features(runc: Runc) -> None:
    features = json.loads(runc("features").stdout)
    assert features["ociVersionMax"] == "1.0.2"
    assert "time" in features["linux"]["namespaces"] and "rbind" in features["mountOptions"]


@pytest.mark.stage(6)
def test_capabilities_are_what_config_says(runc: Runc) -> None:
    caps = ["CAP_CHOWN", "CAP_KILL"]  # numbers 0 and 5
    config = runc.config(args=["grep", "^Cap", "/proc/self/status"],
                         capabilities={"bounding": caps, "effective": caps, "permitted": caps})
    status = dict(line.split(":\t") for line in runc.run(config).stdout.splitlines())
    assert {k: int(v, 16) for k, v in status.items()} == {
        "CapInh": 0, "CapPrm": 0x21, "CapEff": 0x21, "CapBnd": 0x21, "CapAmb": 0}


@pytest.mark.stage(6)
def test_an_unknown_capability_is_refused(runc: Runc) -> None:
    config = runc.config(capabilities={"bounding": ["CAP_TEST"]})
    result = runc.run(config)
    assert result.returncode == 1
    assert result.stderr == ("mini-runc: config.json: process.capabilities.bounding[0] "
                             "'CAP_TEST' is not a capability\n")


@pytest.mark.stage(6)
def test_no_new_privs(runc: Runc) -> None:
    result = runc.run(runc.config(args=["grep", "NoNewPrivs", "/proc/self/status"],
                                  noNewPrivileges=True))
    assert result.stdout.split() == ["NoNewPrivs:", "1"]


@pytest.mark.stage(6)
def test_seccomp_errno_and_argument_rules(runc: Runc) -> None:
    config = runc.config(args=["sh", "-c", "mkdir /tmp/x; chmod 777 /tmp; chmod 1777 /tmp && echo fine"],
                         noNewPrivileges=True)
    config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 1, "value": 0o777, "op": "SCMP_CMP_EQ"}]},
    ]}
    result = runc.run(config)
    assert result.stdout == "fine\n"
    assert result.stderr.splitlines() == [
        "mkdir: can't create directory '/tmp/x': Permission denied",  # errnoRet 13: EACCES
        "chmod: /tmp: Operation not permitted",                       # 0777 only: EPERM
    ]


@pytest.mark.stage(6)
def test_seccomp_ordered_comparison(runc: Runc) -> None:
    # Refuse kill(2) with a signal number above 10: SIGTERM (15) fails, SIGUSR1 (10) works.
    config = runc.config(args=["sh", "-c", "sleep 30 & kill -15 $! || echo refused; kill -10 $! && echo sent"],
                         noNewPrivileges=True)
    config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_GT"}]}]}
    assert runc.run(config).stdout == "refused\nsent\n"


@pytest.mark.stage(6)
def test_masked_and_read_only_paths(runc: Runc) -> None:
    # /proc/cmdline stands in for /proc/kcore, which not every kernel has.
    config = runc.config(args=["sh", "-c", "wc -c < /proc/cmdline; ls /sys/fs | wc -l; "
                                           "echo 1 > /proc/sys/kernel/domainname"])
    config["linux"]["maskedPaths"] = ["/proc/cmdline", "/sys/fs", "/no/such/path"]
    config["linux"]["readonlyPaths"] = ["/proc/sys"]
    result = runc.run(config)
    assert result.stdout.split() == ["0", "0"]
    assert "Read-only file system" in result.stderr


def test_rlimits(runc: Runc) -> None:
    config = runc.config(args=["sh", "-c", "ulimit -n; ulimit -Hn"],
                         rlimits=[{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}])
    assert runc.run(config).stdout == "100\n200\n"


@pytest.mark.parametrize("section, key, value", [
    ("process", "apparmorProfile", "docker-default"),
    ("linux", "mountLabel", "system_u:object_r:container_file_t:s0"),
])
def test_what_it_cannot_honour_is_refused(runc: Runc, section: str, key: str, value: str) -> None:
    config = runc.config()
    config[section][key] = value
    result = runc.run(config)
    assert result.returncode == 1 and result.stderr.startswith(f"mini-runc: config.json: {section}.{key}: ")


def test_mini_engine_runtime_is_the_same_command(engine: Engine) -> None:
    result = engine("runtime", "--version")
    assert result.stdout.startswith("mini-runc 0.1.0")


# From a review of the runtime: each of these was a bug.

def test_unlimited_rlimits(runc: Runc) -> None:
    config = runc.config(args=["sh", "-c", "ulimit -c"],
                         rlimits=[{"type": "RLIMIT_CORE", "soft": 2**64 - 1, "hard": 2**64 - 1}])
    assert runc.run(config).stdout == "unlimited\n"


def test_a_reused_pid_is_not_the_container(runc: Runc) -> None:
    # A recorded pid that now names another process (our sleep), started
    # at another time: the container is stopped, and kill must not touch it.
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (runc.root / "ghost").mkdir(parents=True)
        (runc.root / "ghost" / "pid").write_text(f"{sleeper.pid} 1\n")
        (runc.root / "ghost" / "state.json").write_text(json.dumps({
            "ociVersion": "1.0.2", "id": "ghost", "bundle": str(runc.bundle),
            "created": "2026-01-01T00:00:00+00:00"}))
        assert json.loads(runc("state", "ghost").stdout)["status"] == "stopped"
        assert runc("kill", "ghost", "KILL").returncode == 1
        assert sleeper.poll() is None  # still alive
    finally:
        sleeper.kill()
        sleeper.wait()


def test_delete_force_of_a_half_made_container(runc: Runc) -> None:
    (runc.root / "half").mkdir(parents=True)  # create was killed before it wrote a file
    assert runc("delete", "--force", "half").returncode == 0
    assert not (runc.root / "half").exists()


def test_delete_force_after_a_delete_killed_half_way(runc: Runc) -> None:
    # state.json is left, the pid file is gone: nothing can say which
    # process it was, and delete --force must still clear it.
    (runc.root / "halfgone").mkdir(parents=True)
    (runc.root / "halfgone" / "state.json").write_text('{"ociVersion": "1.0.2", "id": "halfgone"}')
    assert runc("delete", "halfgone").stderr == 'mini-runc: container "halfgone" does not exist\n'
    assert runc("delete", "--force", "halfgone").returncode == 0
    assert not (runc.root / "halfgone").exists()


def test_a_failed_run_leaves_nothing(runc: Runc) -> None:
    runc.write(runc.config(args=["no-such-command"]))
    first = runc("run", "r1")
    assert (first.returncode, first.stderr) == (
        127, 'mini-runc: exec "no-such-command": executable file not found in $PATH\n')
    assert not (runc.root / "r1").exists()
    assert runc("run", "r1").returncode == 127  # the id is free again


def test_log_is_a_global_option_only(runc: Runc, tmp_path: Path) -> None:
    target = tmp_path / "not-a-log"
    runc("exec", "nope", "tool", "--log", str(target))
    assert not target.exists()


@pytest.mark.parametrize("change, message", [
    (lambda c: c["linux"].setdefault("resources", {}).update(unified={"../../x": "1"}),
     "linux.resources.unified['../../x'] must be a file name of the cgroup"),
    (lambda c: c["linux"].update(sysctl={"kernel.panic": "1"}),
     "linux.sysctl['kernel.panic'] is not a namespaced sysctl"),
    (lambda c: (c["linux"].update(sysctl={"net.ipv4.ip_forward": "1"}),
                c["linux"].update(namespaces=[{"type": "mount"}])),
     "linux.sysctl['net.ipv4.ip_forward'] needs a network namespace (it would change the host's)"),
    (lambda c: (c["linux"].update(maskedPaths=["/proc/kcore"]), c["linux"].update(namespaces=[])),
     "linux.maskedPaths needs a mount namespace (it would change the host's)"),
    (lambda c: c["linux"].update(seccomp={"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                                        "args": [{"index": 6, "value": 0,
                                                                  "op": "SCMP_CMP_EQ"}]}]}),
     "linux.seccomp.syscalls[0]: argument index 6 is not 0-5 (a syscall has six)"),
])
def test_config_that_would_reach_the_host_is_refused(runc: Runc, change, message: str) -> None:
    config = runc.config()
    change(config)
    result = runc.run(config)
    assert (result.returncode, result.stderr) == (1, f"mini-runc: config.json: {message}\n")


def test_mountinfo_escapes() -> None:
    from mini_engine.base.mountinfo import unescape

    assert unescape("/tmp/caf\u00e9\\040x\\134y") == "/tmp/caf\u00e9 x\\y"


def _recorder(path: Path) -> dict:
    """A hook that saves the state it reads on stdin to ``path``."""
    return {"path": "/bin/sh", "args": ["sh", "-c", f"cat > {path}"]}


def test_hooks_run_in_order_with_the_state(runc: Runc, tmp_path: Path) -> None:
    out = tmp_path / "hooks"
    out.mkdir()
    config = runc.config(args=["true"])
    config["hooks"] = {kind: [_recorder(out / f"{kind}.json")]
                       for kind in ("prestart", "createRuntime", "createContainer", "poststart", "poststop")}
    # startContainer runs inside the container, after pivot_root: its path
    # and its output are the container's.
    config["hooks"]["startContainer"] = [_recorder(Path("/tmp/startContainer.json"))]
    runc.write(config)
    assert runc.create("h1") == 0
    created = {p.stem for p in out.iterdir()}
    assert runc("start", "h1").returncode == 0
    started = {p.stem for p in out.iterdir()}
    wait_until_stopped(runc, "h1")
    assert runc("delete", "h1").returncode == 0
    assert created == {"createRuntime", "createContainer"}
    assert started == created | {"prestart", "poststart"}  # prestart: where config.md puts it
    states = {p.stem: json.loads(p.read_text()) for p in out.iterdir()}
    inside = json.loads((runc.bundle / "rootfs" / "tmp" / "startContainer.json").read_text())
    assert {k: s["status"] for k, s in states.items()} == {
        "prestart": "created", "createRuntime": "creating", "createContainer": "creating",
        "poststart": "running", "poststop": "stopped"}
    assert inside["status"] == "created" and inside["id"] == "h1"
    assert states["createRuntime"]["pid"] == states["prestart"]["pid"] == states["poststart"]["pid"] > 0
    assert states["poststop"]["bundle"] == str(runc.bundle)


def test_a_failing_create_hook_fails_create_and_leaves_nothing(runc: Runc) -> None:
    config = runc.config(args=["true"])
    config["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo no >&2; exit 3"]}]}
    runc.write(config)
    result = runc("create", "h2", stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert result.stderr == "mini-runc: createRuntime hook 0 (/bin/sh) exited with 3: no\n"
    assert not (runc.root / "h2").exists()


def test_a_failing_prestart_hook_fails_start_and_stops_the_container(runc: Runc) -> None:
    config = runc.config(args=["sh", "-c", "echo ran > /ran"])
    config["hooks"] = {"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo no >&2; exit 5"]}]}
    runc.write(config)
    assert runc.create("h3") == 0
    result = runc("start", "h3")
    assert (result.returncode, result.stderr) == (1, "mini-runc: prestart hook 0 (/bin/sh) exited with 5: no\n")
    assert json.loads(runc("state", "h3").stdout)["status"] == "stopped"
    assert not (runc.bundle / "rootfs" / "ran").exists()  # the command never ran
    assert runc("delete", "h3").returncode == 0


def test_a_failing_poststop_hook_only_warns(runc: Runc) -> None:
    config = runc.config(args=["true"])
    config["hooks"] = {"poststop": [{"path": "/bin/false"}]}
    result = runc.run(config)
    assert result.returncode == 0
    assert result.stderr == "mini-runc: warning: poststop hook 0 (/bin/false) exited with 1\n"


def test_preserve_fds_passes_descriptors_on(runc: Runc, tmp_path: Path) -> None:
    secret = tmp_path / "passed"
    secret.write_text("through fd 3\n")
    config = runc.config(args=["sh", "-c", "cat <&3; ls /proc/self/fd"])
    runc.write(config)
    with open(secret) as f:
        fd = f.fileno()  # bash below moves it to 3, where --preserve-fds 1 looks
        result = subprocess.run(
            ["bash", "-c", f"exec 3<&{fd} {fd}<&-; exec {' '.join(MINI_RUNC)} --root {runc.root} "
                           "run --preserve-fds 1 pf"],
            cwd=runc.bundle, capture_output=True, text=True, timeout=60, pass_fds=(fd,))
    lines = result.stdout.split()
    assert lines[:3] == ["through", "fd", "3"], result.stderr
    assert lines[3:] == ["0", "1", "2", "3", "4"]  # 4: the directory ls reads


def test_preserve_fds_needs_them_open(runc: Runc) -> None:
    result = runc("run", "--preserve-fds", "2", "nope")
    assert (result.returncode, result.stderr) == (
        1, "mini-runc: --preserve-fds 2: descriptor 3 is not open\n")


# The launcher engines call, bin/mini-runc: Python without site-packages,
# and no more imported per command than the command needs.

def test_the_launcher_needs_nothing_but_the_standard_library(runc: Runc) -> None:
    launcher = [str(REPO / "bin" / "mini-runc"), "--root", str(runc.root)]
    runc.write(runc.config(args=["sh", "-c", "echo $$ > /ran"]))
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    assert subprocess.run([*launcher, "create", "l1"], cwd=runc.bundle, timeout=60, **quiet).returncode == 0
    assert subprocess.run([*launcher, "start", "l1"], timeout=60).returncode == 0
    wait_until_stopped(runc, "l1")
    assert subprocess.run([*launcher, "delete", "l1"], timeout=60).returncode == 0
    assert (runc.bundle / "rootfs" / "ran").read_text() == "1\n"  # it ran, as PID 1
    assert not (runc.root / "l1").exists()


def test_start_and_delete_import_no_json_parser(runc: Runc) -> None:
    runc.write(runc.config(args=["true"]))
    assert runc.create("l2") == 0
    probe = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from mini_engine.runtime import cli; "
             "code = cli.main(sys.argv[1:]); "
             "print(code, sorted({'argparse', 'json', 're', 'typing'} & set(sys.modules)))")

    def imports(*args: str) -> str:
        return subprocess.run([sys.executable, "-I", "-S", "-c", probe, "--root", str(runc.root), *args],
                              capture_output=True, text=True, timeout=60).stdout

    assert imports("start", "l2") == "0 []\n"
    wait_until_stopped(runc, "l2")
    state = imports("state", "l2")
    assert state.startswith("{")  # state prints JSON, so it may import json...
    assert state.endswith("0 ['json', 're']\n")  # ...and the probe sees it
    assert imports("delete", "l2") == "0 []\n"


def wait_until_stopped(runc: Runc, container_id: str) -> None:
    assert wait_until(lambda: json.loads(runc("state", container_id).stdout)["status"] == "stopped"), \
        f"{container_id} never stopped"


@pytest.mark.parametrize("argv, expected", [
    # runc's command line as engines write it: options before or after the id,
    # --name=value, Go's -name, and flags with =true or =false.
    (["--root=/r", "create", "-b", "/b", "--pid-file", "/p", "c1"],
     {"root": "/r", "command": "create", "bundle": "/b", "pid_file": "/p", "id": "c1", "preserve_fds": 0}),
    (["-root", "/r", "delete", "c1", "--force=false"], {"root": "/r", "id": "c1", "force": False}),
    (["delete", "--force", "c1"], {"force": True}),
    (["kill", "--all", "c1", "9"], {"all": True, "id": "c1", "signal": "9"}),
    (["kill", "c1"], {"signal": "SIGTERM"}),
    # exec: the container's command keeps its own options, after the id or a --.
    (["exec", "-d", "-e", "A=1", "-e", "B=2", "c1", "sh", "-c", "ls -l"],
     {"detach": True, "env": ["A=1", "B=2"], "id": "c1", "cmd": ["sh", "-c", "ls -l"]}),
    (["exec", "c1", "--", "ls", "--all"], {"cmd": ["ls", "--all"]}),
    (["--debug", "--debug", "state", "c1"], {"debug": True, "id": "c1"}),
])
def test_the_command_line(argv: list[str], expected: dict) -> None:
    from mini_engine.runtime import cli

    args = vars(cli.parse(argv))
    assert {name: args[name] for name in expected} == expected


@pytest.mark.parametrize("argv, message", [
    (["state"], "state takes ID, not none (see 'mini-runc state --help')"),
    (["frobnicate", "c1"], "unknown command 'frobnicate' (see 'mini-runc --help')"),
    (["delete", "--forse", "c1"], "unknown option --forse (see 'mini-runc --help')"),
    (["delete", "--force=yes", "c1"], "--force takes no value, or =true or =false"),
    (["--log-format", "xml", "state", "c1"], "--log-format takes text or json, not 'xml'"),
    (["create", "--preserve-fds", "two", "c1"], "--preserve-fds takes a number"),
    (["--root"], "--root needs a value"),
])
def test_a_wrong_command_line_is_one_line(argv: list[str], message: str) -> None:
    result = subprocess.run([str(REPO / "bin" / "mini-runc"), *argv], capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", f"mini-runc: {message}\n")


@pytest.mark.stage(3)
@pytest.mark.skipif(not cgroups.on_v2("memory", "pids", "cpu"),
                    reason="needs cgroup v2's memory, pids and cpu: runs in the test VM")
def test_update_changes_a_running_containers_limits(runc: Runc) -> None:
    """runc update: flags and -r land in the container's cgroup at once; a later update
    of one key keeps the others, so the swap still counts from the memory limit."""
    cid = f"u-{uuid.uuid4().hex[:8]}"
    config = runc.config(args=["sleep", "300"])
    config["linux"]["cgroupsPath"] = f"/mini-engine/{cid}"
    config["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 50}}
    runc.write(config)
    assert runc.create(cid) == 0 and runc("start", cid).returncode == 0
    cgroup = Path(cgroups.mount_point()) / "mini-engine" / cid

    def limits() -> list[str]:
        return [(cgroup / name).read_text().strip() for name in ("memory.max", "pids.max", "cpu.max")]

    try:
        assert limits() == [str(64 << 20), "50", "max 100000"]
        assert runc("update", "--memory", "32m", "--pids-limit", "20", cid).returncode == 0
        assert limits() == [str(32 << 20), "20", "max 100000"]
        result = runc("update", "-r", "-", cid, input='{"cpu": {"quota": 50000, "period": 100000}}')
        assert result.returncode == 0, result.stderr
        assert limits() == [str(32 << 20), "20", "50000 100000"]
        if (cgroup / "memory.swap.max").exists():  # swap accounting is on
            assert runc("update", "--memory-swap", "48m", cid).returncode == 0
            assert (cgroup / "memory.swap.max").read_text().strip() == str(16 << 20)
        bad = runc("update", "--memory", "lots", cid)
        assert (bad.returncode, bad.stderr) == (
            1, "mini-runc: --memory lots: a size such as 512m, or -1 for no limit\n")
        assert limits() == [str(32 << 20), "20", "50000 100000"]
    finally:
        runc("delete", "--force", cid)


def test_update_reads_sizes_as_runc_does(runc: Runc) -> None:
    """No cgroup needed to be refused: a bad size, bad JSON, an unknown container."""
    result = runc("update", "--pids-limit", "many", "nope")
    assert result.stderr == "mini-runc: --pids-limit many: a whole number\n"
    assert runc("update", "-r", "-", "nope", input="{").stderr.startswith("mini-runc: -r -: not JSON (")
    assert runc("update", "--memory", "1g", "nope").stderr == 'mini-runc: container "nope" does not exist\n'


def test_exec_by_user_name_is_refused_in_one_line(runc: Runc) -> None:
    """runc takes -u uid[:gid] only: the runtime reads no /etc/passwd (the engine does)."""
    runc.write(runc.config(args=["sleep", "300"]))
    assert runc.create("n1") == 0 and runc("start", "n1").returncode == 0
    result = runc("exec", "-u", "nobody", "n1", "id")
    assert (result.returncode, result.stderr) == (
        1, "mini-runc: -u nobody: a uid[:gid] in numbers; the runtime does not look names up "
           "in the container's /etc/passwd\n")
    assert runc("exec", "-u", "65534:65534", "n1", "id", "-u").stdout == "65534\n"


@pytest.mark.stage(2)
@pytest.mark.parametrize("missing", ["uidMappings", "gidMappings"])
def test_a_user_namespace_without_a_map_is_refused_by_name(runc: Runc, missing: str) -> None:
    config = runc.config(args=["true"])
    config["linux"]["namespaces"].append({"type": "user"})
    config["linux"]["uidMappings"] = config["linux"]["gidMappings"] = [
        {"containerID": 0, "hostID": 100000, "size": 65536}]
    del config["linux"][missing]
    result = runc.run(config)
    assert (result.returncode, result.stderr.splitlines()[-1:]) == (
        1, [f"mini-runc: config.json: a user namespace needs linux.{missing}"])
    assert os.listdir(runc.root) == []


# exec's flags, as runc takes them (runc exec --help).

def detached(runc: Runc, *args: str) -> int:
    """A runc call whose process outlives it: no pipes to wait on, stdio to /dev/null."""
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    return subprocess.run([*MINI_RUNC, "--root", str(runc.root), *args], cwd=runc.bundle, timeout=60,
                          **quiet).returncode


def started(runc: Runc, cid: str, cgroup: bool = False, **process: object) -> int:
    """Create and start ``cid`` (in a cgroup of its own if ``cgroup``); its host pid."""
    config = runc.config(**{"args": ["sleep", "300"], **process})
    if cgroup:
        config["linux"]["cgroupsPath"] = f"/mini-engine/{cid}"
    runc.write(config)
    assert runc.create(cid) == 0 and runc("start", cid).returncode == 0
    return json.loads(runc("state", cid).stdout)["pid"]


def status_lines(text: str, *keys: str) -> dict[str, str]:
    return {k: v.strip() for k, v in (line.split(":", 1) for line in text.splitlines()) if k in keys}


def test_exec_adds_capabilities_and_groups(runc: Runc) -> None:
    """--cap goes into the bounding, effective and permitted sets; -g adds supplementary
    groups; the container's own process keeps what it had."""
    caps = ["CAP_CHOWN"]
    init = started(runc, "x1", capabilities={"bounding": caps, "effective": caps, "permitted": caps})
    result = runc("exec", "-c", "CAP_KILL", "--additional-gids", "10", "-g", "20", "x1",
                  "cat", "/proc/self/status")
    assert result.returncode == 0, result.stderr
    assert status_lines(result.stdout, "CapEff", "CapBnd", "CapPrm", "Groups") == {
        "CapEff": "0000000000000021", "CapBnd": "0000000000000021", "CapPrm": "0000000000000021",
        "Groups": "10 20"}
    with open(f"/proc/{init}/status") as f:
        assert status_lines(f.read(), "CapEff", "Groups") == {"CapEff": "0000000000000001", "Groups": ""}
    unknown = runc("exec", "-c", "CAP_NOPE", "x1", "true")
    assert (unknown.returncode, unknown.stderr.count("\n"), "CAP_NOPE" in unknown.stderr) == (1, 1, True)
    bad = runc("exec", "-g", "staff", "x1", "true")
    assert (bad.returncode, bad.stderr) == (1, "mini-runc: --additional-gids staff: a group is a number, "
                                                "0 or more\n")


def test_exec_preserve_fds_passes_descriptors_on(runc: Runc, tmp_path: Path) -> None:
    started(runc, "x2")
    passed = tmp_path / "passed"
    passed.write_text("through fd 3\n")
    with open(passed) as f:
        fd = f.fileno()  # bash moves it to 3, where --preserve-fds 1 looks
        result = subprocess.run(
            ["bash", "-c", f"exec 3<&{fd} {fd}<&-; exec {' '.join(MINI_RUNC)} --root {runc.root} "
                           "exec --preserve-fds 1 x2 sh -c 'cat <&3; ls /proc/self/fd'"],
            cwd=runc.bundle, capture_output=True, text=True, timeout=60, pass_fds=(fd,))
    assert result.stdout.split() == ["through", "fd", "3", "0", "1", "2", "3", "4"], result.stderr
    # Without the flag, descriptor 3 does not reach the process.
    result = subprocess.run(
        ["bash", "-c", f"exec 3</etc/hostname; exec {' '.join(MINI_RUNC)} --root {runc.root} "
                       "exec x2 ls /proc/self/fd"], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["0", "1", "2", "3"]  # 3: the directory ls reads


def test_exec_into_a_sub_cgroup(runc: Runc) -> None:
    """--cgroup PATH: an existing cgroup below the container's; nothing outside it."""
    cid = f"x3-{uuid.uuid4().hex[:8]}"
    started(runc, cid, cgroup=True)
    cgroup = Path(cgroups.mount_point()) / "mini-engine" / cid
    (cgroup / "tools").mkdir()
    assert detached(runc, "exec", "-d", "--pid-file", "exec.pid", "--cgroup", "tools", cid,
                    "sleep", "300") == 0
    pid = int((runc.bundle / "exec.pid").read_text())
    assert (cgroup / "tools" / "cgroup.procs").read_text().split() == [str(pid)]
    # Inside, the container's cgroup namespace shows the sub-cgroup from its own root.
    inside = runc("exec", "--cgroup", "tools", cid, "cat", "/proc/self/cgroup").stdout
    assert inside.splitlines()[-1] == "0::/tools"
    for given, message in [
            (["../.."], "--cgroup ../..: not a cgroup below the container's"),
            (["nope"], "--cgroup nope: no such cgroup below the container's (make it first)"),
            (["cpu:a", "--cgroup", "memory:b"], "--cgroup cpu:a memory:b: cgroup v2 is one tree; a process "
                                               "is in one cgroup, not one per controller")]:
        result = runc("exec", "--cgroup", *given, cid, "true")
        assert (result.returncode, result.stderr) == (1, f"mini-runc: {message}\n")


def test_exec_into_a_paused_container(runc: Runc) -> None:
    """Refused, as runc does; with --ignore-paused the process joins the frozen
    cgroup, freezes with it, and runs once the container is resumed."""
    cid = f"x4-{uuid.uuid4().hex[:8]}"
    started(runc, cid, cgroup=True)
    cgroup = Path(cgroups.mount_point()) / "mini-engine" / cid
    assert runc("pause", cid).returncode == 0
    refused = runc("exec", cid, "echo", "ran")
    assert (refused.returncode, refused.stderr) == (
        1, "mini-runc: cannot exec in a paused container (use --ignore-paused to override)\n")
    waiting = subprocess.Popen([*MINI_RUNC, "--root", str(runc.root), "exec", "--ignore-paused", cid,
                                "echo", "ran"], stdout=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: len((cgroup / "cgroup.procs").read_text().split()) == 2)
        assert cgroups.read_events(str(cgroup))["frozen"] == 1 and waiting.poll() is None
        assert runc("resume", cid).returncode == 0
        assert waiting.communicate(timeout=60) == ("ran\n", None) and waiting.returncode == 0
    finally:
        waiting.kill()
        waiting.wait()


# --no-pivot: the rootfs moved over "/" and entered with chroot (runc's msMoveRoot).

def below_the_root(pid: int) -> tuple[int, list[Any]]:
    """Take the root mount off process ``pid``'s mount namespace (umount2 "/", MNT_DETACH)
    and look again: the errno of the umount (0 if it worked), and the mounts a
    process that joins the namespace now finds, as the kernel's mountinfo lists them."""
    import errno

    from mini_engine.base import mountinfo, syscalls

    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(ready_r)
            os.close(done_w)
            namespace = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
            syscalls.setns(namespace, syscalls.CLONE_NEWNS)  # our root: the mount on top of "/"
            failed = 0
            try:
                syscalls.umount2("/", syscalls.MNT_DETACH)
            except OSError as exc:
                failed = exc.errno or errno.EIO
            syscalls.setns(namespace, syscalls.CLONE_NEWNS)  # again: what is on top now
            os.write(ready_w, bytes([failed]))
            os.read(done_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        failed = os.read(ready_r, 1)[0]
        return failed, mountinfo.mounts(f"/proc/{child}/mountinfo")
    finally:
        os.close(done_w)
        os.close(ready_r)
        os.waitpid(child, 0)


@pytest.mark.parametrize("no_pivot", [False, True])
def test_no_pivot_leaves_the_host_below_the_root(runc: Runc, no_pivot: bool) -> None:
    """pivot_root swaps the rootfs for the host's "/", which it lets go; --no-pivot
    moves the rootfs over the host's "/", which stays below it (less its /proc
    and /sys), for whoever can unmount "/" to see."""

    from mini_engine.base import mountinfo

    (runc.bundle / "rootfs" / "marker").write_text("the rootfs\n")
    runc.write(runc.config(args=["sleep", "300"]))
    assert runc.create(*(["--no-pivot"] if no_pivot else []), "np") == 0
    assert runc("start", "np").returncode == 0
    pid = json.loads(runc("state", "np").stdout)["pid"]
    own = mountinfo.mounts(f"/proc/{pid}/mountinfo")
    # Either way the container's "/" is its rootfs, and exec lands there.
    assert own[0].mount_point == "/" and own[0].root.endswith("/bundle/rootfs")
    assert runc("exec", "np", "cat", "/marker").stdout == "the rootfs\n"
    failed, found = below_the_root(pid)
    if not no_pivot:
        # Below the rootfs, only the kernel's initial ramfs, on which every tree
        # of mounts is built: the host's "/" is gone from the namespace.
        assert failed == 0 and [(m.mount_id, m.fstype) for m in found] == [(own[0].parent_id, "rootfs")]
        return
    assert failed == 0
    # Below the rootfs: the mount it was moved onto, the host's "/", with the host's mounts.
    assert found[0].mount_id == own[0].parent_id and found[0].mount_point == "/"
    assert not {m.mount_id for m in own} & {m.mount_id for m in found}
    # Among them the host's mount that holds the bundle, whichever that is on this machine.
    assert mountinfo.mount_of(str(runc.bundle)).mount_point in {m.mount_point for m in found}
    # The host's /proc and /sys were detached before the move.
    assert [m.mount_point for m in found if m.fstype in ("proc", "sysfs")] == []


# events: runc's stats object, and its stream.

RUNC_STATS_KEYS = {"cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt", "network_interfaces"}


def test_events_stats_reads_the_cgroup(runc: Runc) -> None:
    cid = f"ev-{uuid.uuid4().hex[:8]}"
    started(runc, cid, cgroup=True, args=["sh", "-c", "sleep 300 & sleep 300 & wait"])
    cgroup = Path(cgroups.mount_point()) / "mini-engine" / cid
    assert wait_until(lambda: len((cgroup / "cgroup.procs").read_text().split()) == 3)
    result = runc("events", "--stats", cid)
    after = dict(line.split() for line in (cgroup / "cpu.stat").read_text().splitlines())
    (line,) = result.stdout.splitlines()  # one object, one line, as Go's json.Encoder writes it
    event = json.loads(line)
    assert (event["type"], event["id"], set(event["data"])) == ("stats", cid, RUNC_STATS_KEYS)
    data = event["data"]
    assert data["pids"]["current"] == 3  # sh and its two sleeps
    usage = data["cpu"]["usage"]  # nanoseconds, as runc counts them; the kernel says microseconds
    assert 0 < usage["total"] <= int(after["usage_usec"]) * 1000
    assert usage["user"] + usage["kernel"] <= int(after["user_usec"]) * 1000 + int(after["system_usec"]) * 1000


def test_events_streams_until_the_container_stops(runc: Runc) -> None:
    cid = f"ev-{uuid.uuid4().hex[:8]}"
    started(runc, cid, cgroup=True)
    watcher = subprocess.Popen([*MINI_RUNC, "--root", str(runc.root), "events", "--interval", "50ms", cid],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout is not None
        first, second = (json.loads(watcher.stdout.readline()) for _ in range(2))
        assert [first["type"], second["type"]] == ["stats", "stats"]
        assert set(second["data"]) == RUNC_STATS_KEYS and second["data"]["pids"] == {"current": 1}
        assert runc("kill", cid, "KILL").returncode == 0
        watcher.communicate(timeout=60)  # the cgroup emptied: the stream ends by itself
        assert watcher.returncode == 0
    finally:
        watcher.kill()
        watcher.wait()


def test_events_refuses_in_one_line(runc: Runc) -> None:
    runc.write(runc.config(args=["true"]))
    assert runc.create("ev0") == 0 and runc("start", "ev0").returncode == 0
    wait_until_stopped(runc, "ev0")
    for args, message in [
            (["ev0"], 'container "ev0" is stopped: no events to show'),
            (["--interval", "0s", "ev0"], "--interval: the interval must be greater than 0"),
            (["--interval", "5", "ev0"], "--interval 5: a duration such as 5s, 500ms or 1m30s")]:
        result = runc("events", *args)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", f"mini-runc: {message}\n")


@pytest.mark.stage(3)
@pytest.mark.skipif(not cgroups.on_v2("memory"), reason="needs cgroup v2's memory controller: "
                    "runs in the test VM")
def test_events_reports_an_oom_kill(runc: Runc) -> None:
    """An OOM kill in the container is an {"type": "oom"} line, between the stats."""
    cid = f"oom-{uuid.uuid4().hex[:8]}"
    config = runc.config(args=["sleep", "300"])
    config["linux"]["cgroupsPath"] = f"/mini-engine/{cid}"
    config["linux"]["resources"] = {"memory": {"limit": 32 << 20, "swap": 32 << 20}}
    runc.write(config)
    assert runc.create(cid) == 0 and runc("start", cid).returncode == 0
    watcher = subprocess.Popen([*MINI_RUNC, "--root", str(runc.root), "events", "--interval", "200ms", cid],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout is not None
        stats = json.loads(watcher.stdout.readline())["data"]  # it watches now
        assert stats["memory"]["usage"]["limit"] == 32 << 20 and "anon" in stats["memory"]["raw"]
        hog = runc("exec", cid, "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
        assert hog.returncode == 137  # SIGKILL, from the OOM killer
        kinds = []
        while "oom" not in kinds:
            kinds.append(json.loads(watcher.stdout.readline())["type"])
        assert set(kinds) <= {"stats", "oom"} and kinds.count("oom") == 1
        memory_events = dict(line.split() for line in
                             (Path(cgroups.mount_point()) / "mini-engine" / cid / "memory.events").read_text()
                             .splitlines())
        assert memory_events["oom_kill"] == "1"
    finally:
        runc("delete", "--force", cid)
        watcher.kill()
        watcher.wait()


# --help and features: every option said, every feature honoured.

def test_help_describes_every_option() -> None:
    from mini_engine.runtime import cli

    def runc_help(*args: str) -> str:
        return subprocess.run([str(REPO / "bin" / "mini-runc"), *args, "--help"], capture_output=True,
                              text=True, timeout=60).stdout

    assert runc_help().split("global options:\n")[1].split("\n\n")[0].splitlines() == [
        "  --root VALUE            the directory of the containers' state (best on a tmpfs) "
        "(default: /run/mini-runc)",
        "  --log VALUE             append errors to this file too (default: stderr only)",
        "  --log-format VALUE      the --log file's format: text or json (default: text)",
        "  --debug                 accepted for runc's sake; changes nothing",
        "  --cgroup-manager VALUE  cgroupfs (cgroup v2 files), or systemd (as --systemd-cgroup); "
        "disabled is ignored (default: cgroupfs)",
        '  --systemd-cgroup        a scope from systemd for each container; cgroupsPath reads '
        '"slice:prefix:name"',
        "  -v, --version           print the version and exit",
        "  -h, --help              print this help and exit"]
    for command, (_, _, options, _) in cli.COMMANDS.items():
        lines = runc_help(command).splitlines()
        for name in options:
            (line,) = [line for line in lines if re.match(rf"  (-\w, )?--{name}( VALUE)?  ", line)]
            text = line.strip().partition("  ")[2]
            assert len(text.strip().split()) >= 2, f"mini-runc {command} --help: --{name} says nothing"


def test_features_lists_what_the_code_honours(runc: Runc) -> None:
    """Each feature listed is one the code acts on, and what is not listed is refused."""
    from mini_engine.base.capabilities import CAPABILITY_NAMES
    from mini_engine.base.errors import ContainerError
    from mini_engine.base.syscall_table import SCMP_ARCH
    from mini_engine.runtime import mounts, seccomp, security
    from mini_engine.runtime.config import HOOK_KINDS, NAMESPACE_FILES

    features = json.loads(runc("features").stdout)
    linux = features["linux"]
    numbers = seccomp.syscall_numbers()
    for action in linux["seccomp"]["actions"]:
        seccomp.compile_filter({"defaultAction": action}, numbers)
    for op in linux["seccomp"]["operators"]:
        seccomp.compile_filter({"syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                                              "args": [{"index": 1, "value": 9, "op": op}]}]}, numbers)
    for unlisted in ({"defaultAction": "SCMP_ACT_NOTIFY"},
                     {"syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                                    "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_XOR"}]}]}):
        with pytest.raises(ContainerError, match="is not supported"):
            seccomp.compile_filter(unlisted, numbers)
    assert SCMP_ARCH[os.uname().machine] in linux["seccomp"]["archs"]
    for option in features["mountOptions"]:  # an MS_ flag or a propagation, not filesystem data
        flags, propagation, data = mounts.parse_options([option])
        assert (flags or propagation or option in ("rw", "suid", "dev", "exec", "async", "atime",
                                                   "diratime", "norelatime", "nostrictatime")) and not data
    assert set(linux["namespaces"]) == set(NAMESPACE_FILES)
    assert set(linux["namespaces"]) <= {name.replace("net", "network").replace("mnt", "mount")
                                        for name in os.listdir("/proc/self/ns") if "_for_" not in name}
    assert features["hooks"] == list(HOOK_KINDS)
    # Every capability listed, the runtime knows by number (capabilities(7)'s order).
    assert [security.NUMBER[name] for name in linux["capabilities"]] == list(range(len(CAPABILITY_NAMES)))
    # What is listed as off is refused in one line.
    # systemd as root (the VM's tests below); a user's systemd, not.
    assert linux["cgroup"] == {"v1": False, "v2": True, "systemd": True, "systemdUser": False}
    assert (linux["apparmor"], linux["selinux"]) == ({"enabled": False}, {"enabled": False})
    refused = runc.run(runc.config(args=["true"], apparmorProfile="unconfined"))
    assert refused.stderr.splitlines()[-1].endswith("AppArmor profiles are not supported by this runtime")


# --systemd-cgroup: the container's cgroup is a scope that systemd makes (chapter 03).

SYSTEMD = pytest.mark.skipif(not os.path.isdir("/run/systemd/system"),
                             reason="systemd is not PID 1 here: runs in the test VM booted with --systemd")


def systemctl_show(unit: str, *names: str) -> dict[str, str]:
    out = subprocess.run(["systemctl", "show", unit, *(f"--property={n}" for n in names)],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def test_systemd_cgroup_without_systemd(runc: Runc) -> None:
    """Where systemd is not PID 1, one line says so, before anything is forked or left."""
    if os.path.exists("/run/systemd/private"):
        pytest.skip("systemd runs here")
    config = runc.config(args=["true"])
    config["linux"]["cgroupsPath"] = "system.slice:mini:nosd"
    runc.write(config)
    result = runc("--systemd-cgroup", "run", "nosd")
    assert (result.returncode, result.stderr) == (1, (
        "mini-runc: --systemd-cgroup: cannot reach systemd at /run/systemd/private (No such file or "
        "directory): is systemd PID 1 here? else use the cgroupfs manager\n"))
    assert os.listdir(runc.root) == []
    assert not os.path.exists(os.path.join(cgroups.mount_point(), "system.slice", "mini-nosd.scope"))


def created_by_systemd(runc: Runc, cid: str, *manager: str) -> int:
    """``create`` with the global options that choose systemd (no pipes: the container keeps its stdio)."""
    return subprocess.run([*MINI_RUNC, "--root", str(runc.root), *manager, "create", cid], cwd=runc.bundle,
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=60).returncode


@pytest.mark.systemd
@SYSTEMD
@pytest.mark.parametrize("manager", [["--systemd-cgroup"], ["--cgroup-manager", "systemd"]])
def test_systemd_cgroup_is_a_delegated_scope(runc: Runc, manager: list[str]) -> None:
    """The scope holds the container, systemd knows its limits (a daemon-reload
    keeps them), exec joins it, update reaches both, delete ends the unit."""
    cid = f"sd-{uuid.uuid4().hex[:8]}"
    unit, scope = f"mini-{cid}.scope", f"/system.slice/mini-{cid}.scope"
    host = cgroups.mount_point() + scope
    config = runc.config(args=["sleep", "300"])
    config["linux"]["cgroupsPath"] = f"system.slice:mini:{cid}"
    config["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 50},
                                    "cpu": {"quota": 50000, "period": 100000}}
    runc.write(config)
    assert created_by_systemd(runc, cid, *manager) == 0
    assert runc("start", cid).returncode == 0
    pid = json.loads(runc("state", cid).stdout)["pid"]
    assert Path(f"/proc/{pid}/cgroup").read_text() == f"0::{scope}\n"
    assert systemctl_show(unit, "Transient", "Delegate", "ControlGroup", "MemoryMax", "TasksMax") == {
        "Transient": "yes", "Delegate": "yes", "ControlGroup": scope, "MemoryMax": str(64 << 20),
        "TasksMax": "50"}
    assert [Path(host, f).read_text() for f in ("memory.max", "pids.max")] == [f"{64 << 20}\n", "50\n"]
    subprocess.run(["systemctl", "daemon-reload"], check=True)  # systemd rewrites its units' files
    assert [Path(host, f).read_text() for f in ("memory.max", "pids.max", "cpu.max")] == [
        f"{64 << 20}\n", "50\n", "50000 100000\n"]
    # Below the scope is the container's to shape (Delegate=yes).
    assert runc("exec", cid, "sh", "-c", "mount -t cgroup2 none /sys/fs/cgroup && mkdir /sys/fs/cgroup/own"
                ).returncode == 0
    assert Path(host, "own", "cgroup.procs").exists()
    # exec joins the scope (inside, its cgroup namespace shows it as "/").
    pid_file = runc.bundle / "exec.pid"
    assert subprocess.run([*MINI_RUNC, "--root", str(runc.root), "exec", "-d", "--pid-file", str(pid_file),
                           cid, "sleep", "300"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          timeout=60).returncode == 0  # no pipes: the process keeps its stdio
    assert Path(f"/proc/{pid_file.read_text()}/cgroup").read_text() == f"0::{scope}\n"
    assert runc("exec", cid, "cat", "/proc/self/cgroup").stdout == "0::/\n"
    assert runc("update", "--memory", "32M", cid).returncode == 0
    assert Path(host, "memory.max").read_text() == f"{32 << 20}\n"
    assert systemctl_show(unit, "MemoryMax") == {"MemoryMax": str(32 << 20)}
    assert runc("delete", "--force", cid).returncode == 0
    assert systemctl_show(unit, "LoadState") == {"LoadState": "not-found"}
    assert not os.path.exists(host)


@pytest.mark.systemd
@SYSTEMD
def test_systemd_cgroup_nests_slices_and_refuses_a_taken_scope(runc: Runc) -> None:
    """A dash nests a slice in its parent's; a scope that exists is refused in
    one line, leaving no state, and the container that has it runs on."""
    cid = f"sd-{uuid.uuid4().hex[:8]}"
    config = runc.config(args=["sleep", "300"])
    config["linux"]["cgroupsPath"] = f"mini-test.slice:mini:{cid}"
    runc.write(config)
    assert created_by_systemd(runc, cid, "--systemd-cgroup") == 0
    pid = json.loads(runc("state", cid).stdout)["pid"]
    assert Path(f"/proc/{pid}/cgroup").read_text() == f"0::/mini.slice/mini-test.slice/mini-{cid}.scope\n"
    taken = runc("--systemd-cgroup", "run", "again")
    assert (taken.returncode, taken.stderr) == (1, (
        f"mini-runc: systemd: StartTransientUnit: Unit mini-{cid}.scope was already loaded or has a "
        "fragment file. (org.freedesktop.systemd1.UnitExists)\n"))
    assert os.listdir(runc.root) == [cid]
    assert Path(f"/proc/{pid}/cgroup").read_text() == f"0::/mini.slice/mini-test.slice/mini-{cid}.scope\n"
    assert runc("delete", "--force", cid).returncode == 0
    assert systemctl_show(f"mini-{cid}.scope", "LoadState") == {"LoadState": "not-found"}
