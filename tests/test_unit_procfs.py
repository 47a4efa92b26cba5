"""Is this still the same process? (mini_engine/base/procfs.py)

A pid alone is no name: the kernel hands it on once the process is reaped.
A pid and its start time are one. The runtime's pid file, the engine's
container record and the network's leases all ask through same_process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mini_engine.base import procfs
from mini_engine.containers import record
from mini_engine.runtime import state

pytestmark = pytest.mark.unit


def test_this_process_is_itself() -> None:
    started = procfs.start_time(os.getpid())
    assert isinstance(started, int) and started > 0
    assert procfs.same_process(os.getpid(), started) is True
    assert procfs.same_process(os.getpid(), started + 1) is False  # another process, same pid


def test_a_process_reaped_is_gone_and_a_zombie_too() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = procfs.start_time(child.pid)
    while procfs.start_time(child.pid) is not None:  # it ends; until reaped, a zombie
        pass
    assert os.path.exists(f"/proc/{child.pid}")  # the zombie is still there...
    assert procfs.same_process(child.pid, started) is False  # ...and counts as gone
    child.wait()
    assert procfs.same_process(child.pid, started) is False


def test_without_a_start_time_the_answer_is_no() -> None:
    """Before: the engine's record and the runtime's pid file took a pid with no
    start time as alive, whoever held that pid by then."""
    assert procfs.same_process(os.getpid(), None) is False
    assert procfs.same_process(None, procfs.start_time(os.getpid())) is False
    assert procfs.same_process(0, 0) is False
    made = record.Record(id="x", image="", created="", stage=8, state=record.State(engine_pid=os.getpid()))
    assert record.engine_alive(made) is False
    made.state.stamp()
    assert record.engine_alive(made) is True


def test_the_runtime_reads_a_pid_file_without_a_start_time_as_stopped(tmp_path: Path) -> None:
    directory = Path(state.container_dir(str(tmp_path), "c1"))
    directory.mkdir(parents=True)
    (directory / "pid").write_text(f"{os.getpid()} None\n")  # written after the process was gone
    assert state.status(str(tmp_path), "c1") == (os.getpid(), None, "stopped")
    (directory / "pid").write_text(f"{os.getpid()} {procfs.start_time(os.getpid())}\n")
    assert state.status(str(tmp_path), "c1")[2] == "running"


def test_a_namespace_with_a_process_in_it_is_lived_in() -> None:
    """Our own network namespace has us in it; a file that is no namespace has no one."""
    assert procfs.anyone_in("net", f"/proc/{os.getpid()}/ns/net")
    assert not procfs.anyone_in("net", "/nonexistent/netns")
    assert not procfs.anyone_in("net", "/proc/self/stat")  # a file, but no namespace's
