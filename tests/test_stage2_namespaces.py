"""Stage 2, namespaces: seen through the probe and compared with the host (chapter 02).

Every run is pinned to --stage 2, so these hold with nothing of later stages.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import termios

import pytest
from conftest import Engine, children, host_namespaces, read_until_closed, running_id

pytestmark = pytest.mark.stage(2)

IFF_UP = 0x1


def test_the_command_is_pid_1(engine: Engine) -> None:
    facts = engine.probe()
    assert (facts["pid"], facts["ppid"]) == (1, 0)


def test_namespaces_differ_from_the_hosts(engine: Engine) -> None:
    host = host_namespaces()
    inside = engine.probe()["namespaces"]
    for kind in ("pid", "mnt", "uts", "ipc", "net", "cgroup"):
        assert inside[kind] != host[kind], kind
    # Docker's defaults leave these two shared; flags ask for them.
    assert (inside["user"], inside["time"]) == (host["user"], host["time"])


def test_each_container_has_its_own(engine: Engine) -> None:
    # Both at once: the kernel reuses a namespace's inode number once it is gone.
    procs = [engine.popen("--stage", "2", "run", "--rm", "-i", "busybox", "sh", "-c", "echo ready; read x",
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(2)]
    for proc in procs:
        assert proc.stdout.readline() == "ready\n"
    one, two = (host_namespaces(children(proc.pid)[0]) for proc in procs)
    for proc in procs:
        proc.communicate("\n", timeout=30)
    assert one["net"] != two["net"] and one["mnt"] != two["mnt"] and one["pid"] != two["pid"]


def test_hostname(engine: Engine) -> None:
    assert engine.probe("--hostname", "box")["hostname"] == "box"
    assert re.fullmatch(r"[0-9a-f]{12}", engine.probe()["hostname"])
    assert os.uname().nodename != "box"


def test_only_lo_and_it_is_up(engine: Engine) -> None:
    links = engine.probe()["links"]
    assert list(links) == ["lo"] and links["lo"] & IFF_UP


def test_proc_shows_only_the_container(engine: Engine) -> None:
    pids = engine.probe()["pids"]
    # PID 1 and the probe's own subshell that globbed /proc.
    assert pids[0] == 1 and len(pids) <= 3


def test_the_mount_table(engine: Engine) -> None:
    facts = engine.probe()
    assert facts["mounts"] == ["/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"]


def test_sys_is_read_only_and_dev_works(engine: Engine) -> None:
    result = engine("--stage", "2", "run", "--rm", "busybox", "sh", "-c",
                    "echo x > /dev/null && ls -l /dev/null; touch /sys/x")
    assert re.match(r"crw-rw-rw- +1 root +root +1, +3 ", result.stdout)
    assert result.stderr == "touch: /sys/x: Read-only file system\n"


def test_the_host_is_out_of_reach(engine: Engine) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    result = engine("--stage", "2", "run", "--rm", "busybox", "sh", "-c",
                    f"ls {here} 2>&1; cat /proc/self/mountinfo | wc -l")
    assert "No such file" in result.stdout.splitlines()[0]
    assert int(result.stdout.splitlines()[1]) == 7  # the old root is gone


def test_no_mount_reaches_the_host_while_it_runs(engine: Engine) -> None:
    with open("/proc/self/mountinfo") as f:
        before = f.read()
    proc = engine.popen("--stage", "2", "run", "--rm", "-i", "busybox", "sh", "-c",
                        "mkdir /mnt && mount -t tmpfs tmpfs /mnt && echo ready; read x",
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == "ready\n"
    with open("/proc/self/mountinfo") as f:
        during = f.read()
    proc.communicate("\n", timeout=30)
    assert during == before


def test_orphans_are_adopted_by_pid_1(engine: Engine) -> None:
    # The subshell exits at once; its sleep is reparented to the container's
    # PID 1 (the shell), not to the host's init.
    result = engine("--stage", "2", "run", "--rm", "busybox", "sh", "-c",
                    "(sleep 5 &); sleep 0.2; ps -o ppid,args | awk '$2$3 == \"sleep5\" {print $1}'")
    assert result.stdout == "1\n"


def test_zombies_are_reaped_when_pid_1_exits(engine: Engine) -> None:
    # PID 1 leaves a child behind; the kernel kills the whole namespace with
    # it, and nothing of it outlives the run (the leak check confirms).
    result = engine("--stage", "2", "run", "--rm", "busybox", "sh", "-c", "sleep 300 & exit 3")
    assert result.returncode == 3


def test_sigterm_reaches_pid_1(engine: Engine) -> None:
    script = 'trap "echo bye; exit 5" TERM; echo ready; while :; do sleep 0.05; done'
    proc = engine.popen("--stage", "2", "run", "--rm", "busybox", "sh", "-c", script, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert (out, proc.returncode) == ("bye\n", 5)


def test_the_container_is_a_grandchild_adopted_by_the_engine(engine: Engine) -> None:
    proc = engine.popen("--stage", "2", "run", "--rm", "-i", "busybox", "sh", "-c", "echo ready; read x",
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == "ready\n"
    kids = children(proc.pid)
    ns = host_namespaces(kids[0])
    proc.communicate("\n", timeout=30)
    assert len(kids) == 1 and ns["pid"] != host_namespaces()["pid"]


def test_user_namespace_maps_root_to_an_unprivileged_range(engine: Engine) -> None:
    facts = engine.probe("--userns", "auto")
    assert facts["uid"] == 0
    assert facts["uid_map"].split() == ["0", "100000", "65536"]
    assert facts["gid_map"].split() == ["0", "100000", "65536"]
    assert facts["namespaces"]["user"] != host_namespaces()["user"]


def test_root_inside_is_nobody_outside(engine: Engine) -> None:
    proc = engine.popen("--stage", "2", "run", "--rm", "-i", "--userns", "auto", "busybox", "sh", "-c",
                        "echo ready; read x; stat -c %u /bin/busybox; touch /bin/x",
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == "ready\n"
    with open(f"/proc/{children(proc.pid)[0]}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    out, err = proc.communicate("\n", timeout=30)
    assert uids == ["100000"] * 4
    # The image's files belong to the host's root, unmapped here: nobody's.
    assert out == "65534\n" and "Permission denied" in err


def test_time_namespace_shifts_the_boot_clock(engine: Engine) -> None:
    with open("/proc/uptime") as f:
        host = float(f.read().split()[0])
    facts = engine.probe("--time-offset", "86400")
    assert facts["namespaces"]["time"] != host_namespaces()["time"]
    assert 86400 <= facts["uptime"] - host < 86400 + 60


def test_a_user_namespace_and_a_time_offset_together(engine: Engine) -> None:
    """timens_offsets is written before become_root: a change of uid makes the
    process non-dumpable, and its /proc/self files then belong to the host's
    root, out of reach of the namespace's (chapter 02, the order of the steps)."""
    with open("/proc/uptime") as f:
        host = float(f.read().split()[0])
    facts = engine.probe("--userns", "auto", "--time-offset", "86400")
    assert facts["uid"] == 0 and facts["uid_map"].split() == ["0", "100000", "65536"]
    assert facts["namespaces"]["time"] != host_namespaces()["time"]
    assert 86400 <= facts["uptime"] - host < 86400 + 60


def test_exit_codes(engine: Engine) -> None:
    assert engine("--stage", "2", "run", "--rm", "busybox", "sh", "-c", "exit 9").returncode == 9
    proc = engine.popen("--stage", "2", "run", "--rm", "busybox", "sh", "-c", "echo ready; sleep 300",
                        stdout=subprocess.PIPE)
    assert proc.stdout.readline() == "ready\n"
    os.kill(children(proc.pid)[0], signal.SIGKILL)
    assert proc.wait(timeout=30) == 128 + signal.SIGKILL


def test_pid_1_is_immune_to_its_own_namespace(engine: Engine) -> None:
    # The kernel drops signals to a namespace's init that it has no handler
    # for, even SIGKILL, when they come from inside: the shell lives on.
    result = engine("--stage", "2", "run", "--rm", "busybox", "sh", "-c", "kill -9 $$; echo still here")
    assert (result.returncode, result.stdout) == (0, "still here\n")


def test_exec_enters_the_running_container(engine: Engine) -> None:
    proc = engine.popen("--stage", "2", "run", "--rm", "-i", "--hostname", "inside", "busybox", "sh",
                        "-c", "echo ready; read x", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == "ready\n"
    cid = running_id(engine)
    init = children(proc.pid)[0]
    script = "echo $$ $(hostname) $X $(pwd); readlink /proc/self/ns/mnt; readlink /proc/self/ns/net; exit 6"
    result = engine("exec", "-e", "X=1", "-w", "/tmp", cid[:12], "sh", "-c", script)
    theirs = [os.readlink(f"/proc/{init}/ns/{n}") for n in ("mnt", "net")]
    proc.communicate("\n", timeout=30)
    lines = result.stdout.splitlines()
    assert result.returncode == 6
    assert lines[0] == "2 inside 1 /tmp"  # PID 2 of the container's namespace
    assert lines[1:] == theirs


def test_exec_into_a_missing_container(engine: Engine) -> None:
    result = engine("exec", "0123456789ab", "true")
    assert (result.returncode, result.stderr) == (125, 'mini-engine: container "0123456789ab" does not exist\n')


def test_exec_with_a_terminal(engine: Engine) -> None:
    proc = engine.popen("--stage", "2", "run", "--rm", "-i", "busybox", "sh", "-c", "echo ready; read x",
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == "ready\n"
    cid = running_id(engine)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 21, 77, 0, 0))
    execd = engine.popen("exec", "-it", cid, "sh", "-c", "tty; stty size",
                         stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    out = read_until_closed(master)
    proc.communicate("\n", timeout=30)
    assert execd.wait(timeout=30) == 0
    # A pty of the container's own devpts, sized like ours.
    assert out.split("\n")[:2] == ["/dev/pts/0", "21 77"]
