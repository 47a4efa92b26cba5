"""The engine drives another runtime through its client: --runtime, as podman's.

On the host, the runtime is the repository's bin/mini-runc run as a program
(runc's command line, its state under RUNROOT/runtimes/mini-runc): real
containers, their output, exit codes, states, and ps, top, stop, exec, rm
working through it. The same tests with Debian's runc write cgroups, which
this host keeps on cgroup v1: they run in the test VM (marker vm).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import PODMAN_NEEDS_V2, REPO, Engine

pytestmark = [pytest.mark.root]

MINI_RUNC = str(REPO / "bin" / "mini-runc")


def runtime_states(engine: Engine, name: str) -> list[str]:
    d = engine.runroot / "runtimes" / name
    return sorted(p for p in os.listdir(d) if not p.startswith(".")) if d.exists() else []


def check_a_runtime(engine: Engine, runtime: str, name: str) -> None:
    """run --rm's output and exit code; a detached container's state, exec, top, stop and rm."""
    hi = engine("--runtime", runtime, "run", "--rm", "busybox", "sh", "-c", "echo hi; echo oops >&2; exit 3")
    assert (hi.stdout, hi.stderr, hi.returncode) == ("hi\n", "oops\n", 3)
    missing = engine("--runtime", runtime, "run", "--rm", "busybox", "nosuchcommand")
    assert missing.returncode == 127
    assert engine.containers() == [] and runtime_states(engine, name) == []

    cid = engine("--runtime", runtime, "run", "-d", "--name", "viaexec", "busybox", "sleep", "300")
    cid = cid.stdout.strip()
    try:
        assert runtime_states(engine, name) == [cid]  # its runtime's state, not the in-process one's
        assert engine.runtime_states() == []
        inspected = json.loads(engine("inspect", "viaexec").stdout)[0]
        assert (inspected["OCIRuntime"], inspected["State"]["Status"]) == (name, "running")
        assert engine("ps").stdout.splitlines()[1].split()[-1] == "viaexec"
        execd = engine("exec", "viaexec", "sh", "-c", "cat /proc/1/comm; exit 4")
        assert (execd.stdout, execd.returncode) == ("sleep\n", 4)  # in the container's PID namespace
        top = engine("top", "viaexec").stdout.splitlines()
        assert top[0].split() == ["PID", "CMD"] and top[1].split()[1:] == ["sleep", "300"]
        assert engine("stop", "-t", "1", "viaexec").returncode == 0
        after = json.loads(engine("inspect", "viaexec").stdout)[0]["State"]
        # sleep, PID 1 of its namespace, ignores SIGTERM: the SIGKILL after 1 s, through the runtime.
        assert (after["Status"], after["ExitCode"]) == ("exited", 137)
        assert runtime_states(engine, name) == []  # deleted through it as the container ended
    finally:
        removed = engine("rm", "-f", "viaexec")
    assert (removed.stdout, removed.returncode) == (f"{cid}\n", 0)
    assert engine.containers() == []


def test_the_engine_drives_mini_runc_by_exec(engine: Engine) -> None:
    check_a_runtime(engine, MINI_RUNC, "mini-runc")


def test_in_process_is_the_default(engine: Engine) -> None:
    """Without --runtime the engine calls the runtime in its own process: its state is
    the in-process runtime's (RUNROOT/runtime), and no runtime root is made."""
    made = engine("run", "-d", "busybox", "sleep", "300").stdout.strip()
    try:
        inspected = json.loads(engine("inspect", made).stdout)[0]
        states = engine.runtime_states()
    finally:
        engine("rm", "-f", made)
    assert inspected["OCIRuntime"] == "mini-runc"
    assert states == [made]
    assert runtime_states(engine, "mini-runc") == []


def test_an_unknown_runtime_is_one_line_and_125(engine: Engine) -> None:
    result = engine("--runtime", "no-such-runtime", "run", "--rm", "busybox", "true")
    assert result.stderr == ('mini-engine: runtime "no-such-runtime" not found: give a program with '
                             "runc's command line, on PATH or by its path (e.g. --runtime runc)\n")
    assert result.returncode == 125
    assert engine.containers() == [] and engine.runtime_states() == []
    assert not (engine.runroot / "runtimes" / "no-such-runtime").exists()


@pytest.mark.vm
@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
@PODMAN_NEEDS_V2
def test_the_engine_drives_runc(tmpfs_engine: Engine) -> None:
    """Debian's runc, in the VM (it writes cgroups): the same lifecycle."""
    check_a_runtime(tmpfs_engine, "runc", "runc")


@pytest.mark.vm
@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
@PODMAN_NEEDS_V2
def test_runc_applies_the_engines_limits(tmpfs_engine: Engine) -> None:
    engine = tmpfs_engine
    result = engine("--runtime", "runc", "run", "--rm", "-m", "32m", "busybox",
                    "cat", "/sys/fs/cgroup/memory.max")
    assert (result.stdout, result.returncode) == (f"{32 << 20}\n", 0)


def test_runtime_roots_are_per_runtime(tmp_path: Path) -> None:
    """A runtime found by its path or on PATH keeps its state under RUNROOT/runtimes/ its name."""
    from mini_engine.containers import runtime
    from mini_engine.paths import Paths

    paths = Paths(str(tmp_path / "lib"), str(tmp_path / "run"))
    chosen = runtime.choose(paths, MINI_RUNC)
    root = str(tmp_path / "run" / "runtimes" / "mini-runc")
    assert (chosen.name, chosen.path, chosen.root) == ("mini-runc", MINI_RUNC, root)
    again = runtime.of(paths, chosen.describe())
    assert (again.name, again.path, again.root) == (chosen.name, chosen.path, chosen.root)
    assert isinstance(runtime.choose(paths, None), runtime.InProcess)
    assert isinstance(runtime.of(paths, None), runtime.InProcess)  # records made before --runtime
