"""Stage 0, process: run, stdio, exit codes, signals (chapter 00).

At stage 0 the container is a bare process on the host: no root of its own,
no namespaces. Every test here runs the engine with ``--stage 0``.
"""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import subprocess
import termios

import pytest
from conftest import Engine, children, read_until_closed

from mini_engine.base import procfs
from mini_engine.labkit import wait_until

pytestmark = pytest.mark.stage(0)


def run0(engine: Engine, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return engine("--stage", "0", "run", "--rm", *args, **kw)


def test_output_and_success(engine: Engine) -> None:
    result = run0(engine, "busybox", "echo", "hello")
    assert (result.returncode, result.stdout, result.stderr) == (0, "hello\n", "")


def test_exit_code_is_passed_through(engine: Engine) -> None:
    assert run0(engine, "busybox", "sh", "-c", "exit 42").returncode == 42


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV])
def test_killed_by_a_signal_is_128_plus_n(engine: Engine, sig: signal.Signals) -> None:
    result = run0(engine, "busybox", "sh", "-c", f"kill -{int(sig)} $$")
    assert result.returncode == 128 + sig


def test_stderr_is_its_own_stream(engine: Engine) -> None:
    result = run0(engine, "busybox", "sh", "-c", "echo out; echo err >&2")
    assert (result.stdout, result.stderr) == ("out\n", "err\n")


def test_stdin_only_with_i(engine: Engine) -> None:
    assert run0(engine, "busybox", "cat", input="typed\n").stdout == ""
    assert run0(engine, "-i", "busybox", "cat", input="typed\n").stdout == "typed\n"


def test_environment_and_workdir(engine: Engine) -> None:
    result = run0(engine, "-e", "GREETING=hi", "-e", "FROM_HOST", "-w", "/tmp",
                  "busybox", "sh", "-c", 'echo "$GREETING $FROM_HOST $(pwd)"',
                  env=dict(engine.env, FROM_HOST="there"))
    assert result.stdout == "hi there /tmp\n"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signals_to_the_engine_reach_the_container(engine: Engine, sig: signal.Signals) -> None:
    script = f'trap "echo got {sig.name}; exit 7" {sig.name[3:]}; echo ready; while :; do sleep 0.05; done'
    proc = engine.popen("--stage", "0", "run", "--rm", "busybox", "sh", "-c", script,
                        stdout=subprocess.PIPE)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert (out, proc.returncode) == (f"got {sig.name}\n", 7)


def test_background_processes_end_with_the_container(engine: Engine) -> None:
    # No PID namespace at stage 0: the engine kills the container's process
    # group, or the sleep would outlive it.
    result = run0(engine, "busybox", "sh", "-c", "sleep 300 & echo $!")
    assert result.returncode == 0
    pid = int(result.stdout)
    # Ended: gone, or a zombie its new parent has not reaped yet (run as
    # PID 1 of a sandbox, the test's own pytest may be that parent).
    assert wait_until(lambda: procfs.start_time(pid) is None, timeout=5)


def test_sigpipe_is_default_again(engine: Engine) -> None:
    # Python ignores SIGPIPE; an ignored signal survives execve.
    result = run0(engine, "busybox", "sh", "-c", "yes | head -n 1", timeout=20)
    # With SIGPIPE ignored, write(2) fails with EPIPE instead, and busybox's
    # yes complains on stderr ("Broken pipe") before it exits.
    assert (result.stdout, result.stderr) == ("y\n", "")


def test_signals_the_engine_was_started_ignoring_are_default_again(engine: Engine) -> None:
    """A shell that runs a command in the background (&) has it ignore SIGINT
    and SIGQUIT, and an ignored signal and the blocked mask survive execve: the
    container's command starts with none ignored and none blocked all the same."""
    def ignoring() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGQUIT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})

    result = subprocess.run(engine.argv("--stage", "0", "run", "--rm", "busybox", "grep", "-E", "^Sig(Ign|Blk)",
                                        "/proc/self/status"), env=engine.env, capture_output=True, text=True,
                            timeout=30, preexec_fn=ignoring)
    none = "0000000000000000"
    assert result.stdout.split() == ["SigBlk:", none, "SigIgn:", none], result.stderr


def test_inherited_descriptors_are_closed(engine: Engine) -> None:
    r, w = os.pipe()
    os.dup2(r, 42)
    try:
        result = run0(engine, "busybox", "ls", "/proc/self/fd", pass_fds=(42,))
    finally:
        for fd in (r, w, 42):
            os.close(fd)
    # ls itself opens the directory as fd 3.
    assert result.stdout.split() == ["0", "1", "2", "3"]


def test_the_container_is_a_child_of_the_engine(engine: Engine) -> None:
    proc = engine.popen("--stage", "0", "run", "--rm", "-i", "busybox", "sh", "-c",
                        "echo ready; read x", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == "ready\n"
    kids = children(proc.pid)
    with open(f"/proc/{kids[0]}/cmdline", "rb") as f:
        cmdline = f.read().split(b"\0")
    proc.communicate("\n", timeout=30)
    assert len(kids) == 1 and cmdline[:2] == [b"sh", b"-c"]


def test_a_terminal_with_t(engine: Engine) -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 99, 0, 0))
    proc = engine.popen("--stage", "0", "run", "--rm", "-it", "busybox", "sh", "-c",
                        "test -t 0 && echo TTY; stty size",
                        stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    out = read_until_closed(master)
    assert proc.wait(timeout=30) == 0
    assert out.split("\n")[:2] == ["TTY", "33 99"]
