"""Everyday docker habits with detached containers and logs (issue 21, items 3 and 5), typed as docker's.

``create`` and ``start -a -i``, ``run -dit`` and ``attach`` with its detach keys, ``run -a``,
``exec -d``, ``logs --since/--until`` and the log of a foreground container, the log's
rotation (``--log-opt max-size/max-file``), ``stats`` streaming and ``--no-stream``.
Each test runs the engine as a command and checks what it prints; the terminals are
pseudoterminals the test opens, as the stage 0 tests' are.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time

import pytest
from conftest import Engine, inspect, ok

pytestmark = [pytest.mark.stage(8), pytest.mark.root]


def read_until(master: int, wanted: bytes, timeout: float = 30) -> bytes:
    """What the pty's master gives until ``wanted`` has come (or the slave side is gone)."""
    out = b""
    deadline = time.monotonic() + timeout
    while wanted not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        try:
            data = os.read(master, 4096)
        except OSError:
            break  # EIO: every slave descriptor is closed
        if not data:
            break
        out += data
    return out


def type_until(master: int, line: bytes, wanted: bytes, proc: subprocess.Popen[str] | None = None) -> bytes:
    """Type ``line`` until ``wanted`` comes back (or ``proc`` ends): a shell starting to read a
    line flushes what was typed before, so a line typed too early is typed again."""
    out = b""
    for _ in range(15):
        os.write(master, line)
        out = read_until(master, wanted, timeout=2)
        if wanted in out or (proc is not None and proc.poll() is not None):
            break
    return out


def attach_on_a_pty(engine: Engine, *args: str) -> tuple[subprocess.Popen[str], int]:
    """``mini-engine attach ARGS`` on a pty of 33 rows and 99 columns; the process and the master."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 99, 0, 0))
    proc = engine.popen("attach", *args, stdin=slave, stdout=slave, stderr=slave)
    # Until attach has made our terminal raw, the pty itself would echo what we type.
    deadline = time.monotonic() + 30
    while termios.tcgetattr(slave)[3] & termios.ECHO and proc.poll() is None:
        assert time.monotonic() < deadline, "attach never took the terminal"
        time.sleep(0.05)
    os.close(slave)
    return proc, master


def test_create_then_start_attached(engine: Engine) -> None:
    made = ok(engine("create", "--name", "made", "busybox", "sh", "-c", "echo from the start; exit 3")).strip()
    try:
        assert re.fullmatch(r"[0-9a-f]{64}", made)
        listed = ok(engine("ps", "-a", "--format", "{{.Names}} {{.Status}}"))
        assert listed == "made Created\n"  # made, not started, as docker says it
        assert inspect(engine, "made")["State"]["Status"] == "created"
        # start -a: its output here, and its exit code ours, as docker's.
        started = engine("start", "-a", "made")
        assert (started.returncode, started.stdout, started.stderr) == (3, "from the start\n", "")
        assert ok(engine("logs", "made")) == "from the start\n"
        # Without -a, start prints its id and returns; the container runs on its own.
        assert ok(engine("start", "made")) == f"{made}\n"
        assert ok(engine("wait", "made")) == "3\n"
        # start -a -i: our input is its stdin, and the end of our input its end (docker's StdinOnce).
        ok(engine("create", "-i", "--name", "reader", "busybox", "sh", "-c",
                  "while read x; do echo got $x; done"))
        talked = engine("start", "-a", "-i", "reader", input="one\ntwo\n")
        assert (talked.returncode, talked.stdout) == (0, "got one\ngot two\n")
        refused = engine("start", "-a", "made", "reader")
        assert (refused.returncode, refused.stderr) == (
            125, "mini-engine: you cannot start and attach several containers at once\n")
        wrong = engine("create", "-d", "busybox", "true")
        assert (wrong.returncode, wrong.stderr) == (
            125, "mini-engine: create starts nothing, so -d means nothing: start it (start -a attaches)\n")
    finally:
        engine("rm", "-f", "made", "reader")


def test_run_dit_then_attach_and_detach_with_the_keys(engine: Engine) -> None:
    ok(engine("run", "-dit", "--name", "shell", "busybox", "sh"))
    try:
        proc, master = attach_on_a_pty(engine, "shell")
        # The container's terminal: our keys in, its echo and output back, our window's size its.
        out = type_until(master, b"stty size; echo $((6 * 7))\r", b"42\r\n")
        assert b"33 99\r\n42\r\n" in out, out
        os.write(master, b"\x10\x11")  # Ctrl-P Ctrl-Q
        out = read_until(master, b"sequence")
        assert proc.wait(timeout=30) == 1  # docker's code when the keys detach
        assert b"mini-engine: read escape sequence" in out, out
        os.close(master)
        assert inspect(engine, "shell")["State"]["Status"] == "running"  # it runs on
        # Other keys, and a second attach: the shell's exit code is attach's.
        proc, master = attach_on_a_pty(engine, "--detach-keys", "ctrl-x,x", "shell")
        assert b"still here\r\n" in type_until(master, b"echo still here\r", b"still here\r\n")
        type_until(master, b"exit 5\r", b"never comes", proc)
        assert proc.wait(timeout=30) == 5
        os.close(master)
        assert ok(engine("wait", "shell")) == "5\n"
        # The terminal's output went to the log too.
        assert "still here" in ok(engine("logs", "shell"))
        stopped = engine("attach", "shell")
        assert (stopped.returncode, stopped.stderr) == (
            1, 'mini-engine: container "shell" is not running: you cannot attach to a stopped container, '
               "start it first\n")
        bad = engine("attach", "--detach-keys", "ctrl-1", "shell")
        assert bad.returncode == 125 and bad.stderr.startswith('mini-engine: --detach-keys "ctrl-1": expected')
    finally:
        engine("rm", "-f", "shell")


def test_run_di_keeps_stdin_for_each_attach(engine: Engine) -> None:
    ok(engine("run", "-di", "--name", "echoer", "busybox", "sh", "-c", "while read x; do echo got $x; done"))
    try:
        # A piped attach: its output until its input ends... and the container lives on, stdin open.
        first = engine.popen("attach", "echoer", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        first.stdin.write("one\n")
        first.stdin.flush()
        assert first.stdout.readline() == "got one\n"
        first.send_signal(signal.SIGINT)  # docker's attach leaves on Ctrl-C without --sig-proxy
        first.wait(timeout=30)
        # start -a of a running container attaches to it, as docker's.
        second = engine.popen("start", "-a", "-i", "echoer", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        second.stdin.write("two\n")
        second.stdin.flush()
        assert second.stdout.readline() == "got two\n"
        second.kill()
        second.wait(timeout=30)
        assert ok(engine("logs", "echoer")) == "got one\ngot two\n"
    finally:
        engine("rm", "-f", "echoer")


def test_run_a_attaches_the_streams_named(engine: Engine) -> None:
    script = "echo OUT; echo ERR >&2"
    try:
        only_out = engine("run", "--name", "a1", "-a", "stdout", "busybox", "sh", "-c", script)
        assert (only_out.returncode, only_out.stdout, only_out.stderr) == (0, "OUT\n", "")
        only_err = engine("run", "--name", "a2", "-a", "stderr", "busybox", "sh", "-c", script)
        assert (only_err.returncode, only_err.stdout, only_err.stderr) == (0, "", "ERR\n")
        # What the terminal did not get is in the log, as docker's.
        logged = engine("logs", "a1")
        assert (logged.stdout, logged.stderr) == ("OUT\n", "ERR\n")
        fed = engine("run", "--rm", "-a", "stdin", "-a", "stdout", "busybox", "cat", input="fed\n")
        assert fed.stdout == "fed\n"
        conflict = engine("run", "-d", "-a", "stdout", "busybox", "true")
        assert (conflict.returncode, conflict.stderr) == (
            125, "mini-engine: conflicting options: -a and -d (attach later: mini-engine attach)\n")
    finally:
        engine("rm", "-f", "a1", "a2")


def test_exec_d_returns_at_once_and_the_process_runs_on(engine: Engine) -> None:
    ok(engine("run", "-d", "--name", "box", "busybox", "sleep", "300"))
    try:
        result = engine("exec", "-d", "box", "sh", "-c", "sleep 1; echo done > /tmp/mark")
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
        # Returned before the process had done its work...
        assert engine("exec", "box", "cat", "/tmp/mark").returncode == 1
        deadline = time.monotonic() + 30
        while engine("exec", "box", "cat", "/tmp/mark").stdout != "done\n":
            assert time.monotonic() < deadline, "exec -d's process never finished"
            time.sleep(0.2)
        missing = engine("exec", "-d", "box", "no-such-command")
        assert (missing.returncode, missing.stderr) == (
            127, 'mini-engine: exec "no-such-command": executable file not found in $PATH\n')
        both = engine("exec", "-d", "-i", "box", "true")
        assert (both.returncode, both.stderr) == (
            125, "mini-engine: exec -d and -i conflict: a process in the background reads no input\n")
    finally:
        engine("rm", "-f", "box")


def test_a_foreground_container_keeps_a_log(engine: Engine) -> None:
    try:
        result = engine("run", "--name", "fg", "busybox", "sh", "-c", "echo out; echo err >&2; exit 2")
        assert (result.returncode, result.stdout, result.stderr) == (2, "out\n", "err\n")
        logged = engine("logs", "fg")
        assert (logged.returncode, logged.stdout, logged.stderr) == (0, "out\n", "err\n")
        # A terminal's output stays the terminal's: no log, and logs says so.
        master, slave = pty.openpty()
        engine.popen("run", "-t", "--name", "tty", "busybox", "echo", "hi", stdin=slave, stdout=slave,
                     stderr=slave).wait(timeout=60)
        os.close(slave)
        os.close(master)
        none = engine("logs", "tty")
        assert (none.returncode, none.stderr) == (
            1, 'mini-engine: container "tty" ran in the foreground with a terminal (-t), where its output '
               "went to the terminal alone: it keeps no log\n")
    finally:
        engine("rm", "-f", "fg", "tty")


def test_logs_since_and_until(engine: Engine) -> None:
    ok(engine("run", "-d", "--name", "talker", "busybox", "sh", "-c",
              "echo one; sleep 1.5; echo two; sleep 300"))
    try:
        deadline = time.monotonic() + 30
        while len(engine("logs", "talker").stdout.splitlines()) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        stamped = ok(engine("logs", "-t", "talker")).splitlines()
        (one_at, one), (two_at, two) = (line.split(" ", 1) for line in stamped)
        assert (one, two) == ("one", "two")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", one_at)
        assert ok(engine("logs", "--since", two_at, "talker")) == "two\n"
        assert ok(engine("logs", "--until", one_at, "talker")) == "one\n"
        assert ok(engine("logs", "--since", "10m", "talker")) == "one\ntwo\n"  # a duration before now
        assert ok(engine("logs", "--since", "1h30m", "talker")) == "one\ntwo\n"
        # An RFC 3339 time with an offset: the first line's time, an hour east of UTC.
        day, clock = one_at.rstrip("Z").split("T")
        east = f"{day}T{int(clock[:2]) + 1:02d}{clock[2:]}+01:00" if clock[:2] != "23" else one_at
        assert ok(engine("logs", "--until", east, "talker")) == "one\n"
        later = ok(engine("logs", "--since", str(int(time.time()) + 60), "talker"))  # a Unix time
        assert later == ""
        # -f with --until: it stops at that time, though the container runs on.
        followed = engine("logs", "-f", "--until", f"{time.time() + 2:.3f}", "talker", timeout=30)
        assert (followed.returncode, followed.stdout) == (0, "one\ntwo\n")
        bad = engine("logs", "--since", "yesterday", "talker")
        assert (bad.returncode, bad.stderr) == (
            125, 'mini-engine: --since "yesterday": expected a time (2026-11-26T14:00:00Z, 1700000000) or a '
                 "duration before now (10m, 1h30m)\n")
    finally:
        engine("rm", "-f", "talker")


def test_the_log_rotates_at_its_max_size(engine: Engine) -> None:
    script = "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i + 1)); done"
    cid = None
    try:
        cid = ok(engine("run", "-d", "--log-opt", "max-size=2k", "--log-opt", "max-file=2", "busybox",
                        "sh", "-c", script)).strip()
        assert ok(engine("wait", cid)) == "0\n"
        bundle = engine.root / "containers" / cid
        logs = sorted(p.name for p in bundle.iterdir() if p.name.startswith("ctr.log"))
        assert logs == ["ctr.log", "ctr.log.1"]  # max-file=2: the oldest went
        assert all((bundle / name).stat().st_size <= 2048 for name in logs)
        assert all((bundle / name).stat().st_mode & 0o777 == 0o600 for name in logs)
        shown = ok(engine("logs", cid)).splitlines()
        numbers = [int(line.split()[1]) for line in shown]
        # The newest lines, in order, none missing between the two files.
        assert numbers[-1] == 299 and numbers == list(range(numbers[0], 300)) and numbers[0] > 0
        bad = engine("run", "--rm", "--log-opt", "max-size=lots", "busybox", "true")
        assert (bad.returncode, bad.stderr) == (
            125, "mini-engine: --log-opt max-size=lots: expected a size such as 10m, 512k or 1g\n")
        unknown = engine("run", "--rm", "--log-opt", "compress=true", "busybox", "true")
        assert (unknown.returncode, unknown.stderr) == (
            125, "mini-engine: --log-opt compress=true: expected max-size=SIZE or max-file=N\n")
    finally:
        if cid:
            engine("rm", "-f", cid)


def test_stats_streams_until_interrupted(engine: Engine) -> None:
    cid = ok(engine("run", "-d", "--name", "busy", "busybox", "sleep", "300")).strip()
    header = "CONTAINER ID  MEM USAGE / LIMIT         CPU TIME    PIDS      BLOCK I/O"
    try:
        once = ok(engine("stats", "--no-stream", "busy")).splitlines()
        assert once[0] == header and once[1].startswith(cid[:12]) and len(once) == 2
        stream = engine.popen("stats", "busy", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        frames = [stream.stdout.readline().rstrip("\n") for _ in range(6)]  # three frames, a second apart
        stream.send_signal(signal.SIGINT)  # Ctrl-C ends it
        assert stream.wait(timeout=30) == 130
        assert frames[0::2] == [header] * 3 and all(row.startswith(cid[:12]) for row in frames[1::2])
        # Each row of a JSON stream is one object, a line each.
        stream = engine.popen("stats", "--json", stdout=subprocess.PIPE)
        assert json.loads(stream.stdout.readline())["id"] == cid
        # A stream ends by itself once the containers it shows have all exited.
        ok(engine("kill", "busy"))
        assert stream.wait(timeout=30) == 0
    finally:
        engine("rm", "-f", "busy")
