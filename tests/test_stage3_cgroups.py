"""Stage 3, cgroups: limits, accounting, OOM, freeze, kill, cleanup (chapter 03).

The limits need the memory, cpu and pids controllers on cgroup v2. A host
that keeps them on cgroup v1 (this project's CI machine) skips those tests
here and runs them in the throwaway VM (scripts/test.sh does, through
scripts/testvm.py); the refusal tests run where a controller is missing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Engine, children, running_id

from mini_engine.runtime import cgroups

pytestmark = pytest.mark.stage(3)

MOUNT = cgroups.mount_point()
HAVE = cgroups.available(MOUNT)
needs_v2 = pytest.mark.skipif(not {"memory", "cpu", "pids"} <= HAVE,
                              reason="needs memory, cpu and pids on cgroup v2: runs in the test VM")


def cgroup_dir(container_id: str) -> Path:
    return Path(MOUNT) / "mini-engine" / container_id


def start(engine: Engine, *args: str) -> subprocess.Popen[str]:
    """A container that prints "ready" and then waits for a line on stdin."""
    proc = engine.popen("--stage", "3", "run", "--rm", "-i", *args, "busybox", "sh", "-c",
                        "echo ready; read x", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == "ready\n"
    return proc


def test_the_container_has_a_cgroup_of_its_own_and_sees_it_as_root(engine: Engine) -> None:
    proc = start(engine)
    cid = running_id(engine)
    pid = children(proc.pid)[0]
    with open(f"/proc/{pid}/cgroup") as f:
        outside = f.read().splitlines()[-1]
    path = cgroup_dir(cid)
    procs = (path / "cgroup.procs").read_text().split()
    proc.communicate("\n", timeout=60)
    assert outside == f"0::/mini-engine/{cid}"
    assert procs == [str(pid)]
    assert not path.exists()  # gone with the container
    inside = engine("--stage", "3", "run", "--rm", "busybox", "cat", "/proc/self/cgroup").stdout
    assert inside.splitlines()[-1] == "0::/"


@needs_v2
def test_over_the_memory_limit_is_oom_killed(engine: Engine) -> None:
    result = engine("--stage", "3", "run", "-m", "32m", "--memory-swap", "32m", "busybox",
                    "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
    assert result.returncode == 137
    assert "the kernel's OOM killer killed a process of this container" in result.stderr
    record = json.loads(engine("ps", "-a", "--format", "json").stdout)[-1]
    engine("rm", record["Id"])
    assert record["State"]["OOMKilled"] is True and record["State"]["ExitCode"] == 137


@needs_v2
def test_under_the_memory_limit_is_not(engine: Engine) -> None:
    result = engine("--stage", "3", "run", "--rm", "-m", "64m", "busybox", "sh", "-c",
                    "cat /sys/fs/cgroup/memory.max; dd if=/dev/zero of=/dev/null bs=8M count=1 2>/dev/null")
    assert (result.returncode, result.stdout) == (0, f"{64 << 20}\n")


@needs_v2
def test_a_fork_loop_is_capped_by_pids_max(engine: Engine) -> None:
    # A child shell forks sleeps until fork(2) fails with EAGAIN: PID 1, the
    # child and 8 sleeps make 10. The child gives up; its sleeps stay (9).
    # `read` is a shell builtin: it needs no fork, so it works at the cap.
    script = ("sh -c 'for i in $(seq 30); do sleep 30 & done' 2>/dev/null; "
              "read n < /sys/fs/cgroup/pids.current; read m < /sys/fs/cgroup/pids.max; "
              "read key failed < /sys/fs/cgroup/pids.events; echo $n $m $key $failed")
    result = engine("--stage", "3", "run", "--rm", "--pids-limit", "10", "busybox", "sh", "-c", script)
    current, limit, key, failed = result.stdout.split()
    assert (current, limit, key) == ("9", "10", "max") and int(failed) >= 1


@needs_v2
def test_a_busy_loop_is_throttled_by_cpu_max(engine: Engine) -> None:
    script = ('timeout 1 sh -c "while :; do :; done"; cat /sys/fs/cgroup/cpu.max; '
              "grep -E '^(nr_throttled|throttled_usec) ' /sys/fs/cgroup/cpu.stat")
    result = engine("--stage", "3", "run", "--rm", "--cpus", "0.2", "busybox", "sh", "-c", script)
    lines = result.stdout.splitlines()
    assert lines[0] == "20000 100000"
    stat = dict(line.split() for line in lines[1:])
    assert int(stat["nr_throttled"]) > 0 and int(stat["throttled_usec"]) > 0


@needs_v2
def test_stats_reads_the_meters(engine: Engine) -> None:
    proc = start(engine, "--pids-limit", "50", "-m", "64m")
    cid = running_id(engine)
    numbers = json.loads(engine("stats", "--no-stream", cid[:12], "--json").stdout)
    table = engine("stats", "--no-stream", cid[:12]).stdout
    proc.communicate("\n", timeout=60)
    assert numbers["id"] == cid
    assert numbers["pids_current"] == 1 and numbers["pids_max"] == "50"
    assert 0 < numbers["memory_current"] < 64 << 20 and numbers["memory_max"] == str(64 << 20)
    assert numbers["cpu_usage_usec"] > 0
    assert table.splitlines()[1].startswith(cid[:12])


@needs_v2
def test_pause_freezes_and_unpause_thaws(engine: Engine) -> None:
    proc = start(engine)
    cid = running_id(engine)
    path = cgroup_dir(cid)
    engine("pause", cid)
    frozen = cgroups.read_events(str(path))["frozen"]
    engine("unpause", cid)
    thawed = cgroups.read_events(str(path))["frozen"]
    proc.communicate("\n", timeout=60)
    assert (frozen, thawed, proc.returncode) == (1, 0, 0)


def test_the_cgroup_goes_with_cgroups_made_below_it(engine: Engine) -> None:
    proc = start(engine)
    cid = running_id(engine)
    (cgroup_dir(cid) / "made-inside").mkdir()  # as systemd in a container would
    proc.communicate("\n", timeout=60)
    assert proc.returncode == 0
    assert not cgroup_dir(cid).exists()


def test_kill_ends_it_and_the_cgroup_goes(engine: Engine) -> None:
    proc = start(engine)
    cid = running_id(engine)
    assert cgroup_dir(cid).is_dir()
    assert engine("kill", cid[:12]).returncode == 0
    assert proc.wait(timeout=60) == 128 + signal.SIGKILL
    assert not cgroup_dir(cid).exists()


def test_prune_cleans_up_after_a_killed_engine(engine: Engine) -> None:
    proc = start(engine)
    cid = running_id(engine)
    pid = children(proc.pid)[0]
    proc.kill()  # SIGKILL: the engine has no chance to clean up
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()
    assert cgroup_dir(cid).is_dir() and os.path.exists(f"/proc/{pid}")  # an orphan
    result = engine("prune")
    assert cid in result.stdout.split()
    assert not cgroup_dir(cid).exists()
    assert cid not in engine.containers()
    # The orphan is dead; its new parent, the host's init, reaps it in its own time.
    for _ in range(200):
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}")


@pytest.mark.skipif("memory" in HAVE, reason="this host has memory on cgroup v2: nothing to refuse")
def test_a_limit_this_host_cannot_apply_is_refused(engine: Engine) -> None:
    before = engine.containers()
    result = engine("--stage", "3", "run", "--rm", "-m", "64m", "busybox", "true")
    assert result.returncode == 125
    assert result.stderr == (
        'mini-engine: cgroup controller "memory" is not available here (this host keeps it on '
        "cgroup v1, or has it disabled); run in the lab VM (vagrant up) or the test VM "
        "(make vm-test)\n")
    assert engine.containers() == before
    assert not any((Path(MOUNT) / "mini-engine").glob("*/cgroup.procs"))


def test_limits_need_stage_3(engine: Engine) -> None:
    result = engine("--stage", "2", "run", "--rm", "--pids-limit", "5", "busybox", "true")
    assert result.returncode == 125
    assert result.stderr == "mini-engine: --pids-limit needs stage 3 or above (this is stage 2, namespaces)\n"


@pytest.mark.parametrize("flags, message", [
    (["-m", "lots"], "--memory 'lots': not a size (use a number with k, m or g, e.g. 64m)"),
    (["-m", "1m"], "--memory: the minimum is 6m (docker's too)"),
    (["--memory-swap", "1g"], "--memory-swap needs --memory"),
    (["-m", "64m", "--memory-swap", "32m"], "--memory-swap must be at least --memory (it counts both)"),
    (["--cpus", "lots"], "--cpus 'lots': not a number"),
    (["--blkio-weight", "5"], "--blkio-weight must be between 10 and 1000"),
    (["--device-read-bps", "/etc/passwd:1m"],
     "--device-read-bps '/etc/passwd:1m': /etc/passwd is not a block device"),
])
def test_bad_limits(engine: Engine, flags: list[str], message: str) -> None:
    result = engine("--stage", "3", "spec", *flags, "busybox")
    assert (result.returncode, result.stderr) == (125, f"mini-engine: {message}\n")


def test_spec_carries_the_limits(engine: Engine) -> None:
    spec = json.loads(engine("--stage", "3", "spec", "-m", "64m", "--cpus", "1.5", "--pids-limit", "20",
                             "--cpu-shares", "512", "busybox").stdout)
    assert spec["linux"]["resources"] == {
        "memory": {"limit": 64 << 20, "swap": 128 << 20},
        "cpu": {"quota": 150000, "period": 100000, "shares": 512},
        "pids": {"limit": 20},
    }
    assert spec["linux"]["cgroupsPath"].startswith("/mini-engine/")
    assert cgroups.files_for(spec["linux"]["resources"]) == {
        "memory.max": str(64 << 20), "memory.swap.max": str(64 << 20),
        "cpu.max": "150000 100000", "cpu.weight": "59", "pids.max": "20",
    }
