"""Detached containers: the monitor, a small process per container (conmon's role).

Chapter 08 reads this module. Man pages: setsid(2), pidfd_open(2),
select(2), pipe(7).

``run -d`` must return at once, yet somebody must stay with the container:
hold its stdout and stderr, write them to its log, reap it when it exits,
record its exit code, and take down what the engine set up for it (the
overlay, the network). podman leaves that to conmon, a small C program;
here the engine process itself becomes the monitor. The command line
forks; the child leaves the terminal's session (setsid), forks once more so
that it is nobody's child (the first child exits, and the monitor is
adopted by init or the nearest subreaper), and then runs the container the
way a foreground ``run`` does. Only where a foreground run would wait, it
copies the container's output into the log. A pipe from the monitor to
the command line carries one message: the container's id once its
command runs, or the error that stopped it.

The log has podman's "k8s-file" format, one line per line of output:
``2026-11-26T14:00:00.123456789Z stdout F hello``.
"""

from __future__ import annotations

import datetime
import os
import selectors
import sys
import time
from collections.abc import Callable, Iterator

from mini_engine.base.errors import ContainerError

Started = Callable[[str, str], None]  # (container id, bundle): the command runs


# [book:detach]
def detach(body: Callable[[Started], int], announce: bool = True) -> int:
    """Run ``body`` in a monitor process of its own; return once it reports (and, if
    ``announce``, print the container's id)."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child:  # the command line
        os.close(write_end)
        with os.fdopen(read_end, "rb") as report:
            message = report.read().decode()
        os.waitpid(child, 0)  # the first child, which exits at once
        kind, _, rest = message.partition(" ")
        if kind == "started":
            if announce:
                print(rest)
            return 0
        code, _, why = rest.partition(" ")
        raise ContainerError(why or "the monitor died before the container started",
                             int(code) if code.isdigit() else 125)
    os.close(read_end)
    try:
        os.setsid()  # no terminal: a hangup of the user's shell does not reach us
        if os.fork():
            os._exit(0)
        # The monitor. Our stdio goes nowhere: the container's goes to its log.
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)

        def started(container_id: str, bundle: str) -> None:
            nonlocal write_end
            if write_end < 0:
                return  # a restart (--restart): the command line heard from us the first time
            os.write(write_end, f"started {container_id}".encode())
            os.close(write_end)
            write_end = -1
            # From here on the engine's own messages go to the container's monitor.log.
            log = os.open(os.path.join(bundle, "monitor.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(log, 2)
            os.close(log)

        body(started)
    except ContainerError as exc:
        if write_end >= 0:
            os.write(write_end, f"error {exc.exit_code} {exc}".encode())
        else:
            print(f"mini-engine: {exc}", file=sys.stderr)
    except BaseException as exc:  # a bug: still reported, never a silent monitor
        if write_end >= 0:
            os.write(write_end, f"error 125 internal error: {type(exc).__name__}: {exc}".encode())
        else:
            print(f"mini-engine: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        os._exit(0)
# [/book:detach]


def _now() -> str:
    now = time.time_ns()
    seconds = datetime.datetime.fromtimestamp(now // 1_000_000_000, datetime.UTC)
    return f"{seconds:%Y-%m-%dT%H:%M:%S}.{now % 1_000_000_000:09d}Z"


# [book:pump]
def pump(stdout: int, stderr: int, pid: int, log_path: str) -> None:
    """Copy the container's output into its log, line by line, until both pipes close
    (or, once ``pid`` has exited, a second more: a process it left may hold them)."""
    from mini_engine.settings import engine

    streams = {stdout: "stdout", stderr: "stderr"}
    partial = {stdout: b"", stderr: b""}
    limit = engine.log_size_max()
    pidfd = os.pidfd_open(pid)  # readable once the process has exited
    deadline: float | None = None
    # 0600: what a container prints (a token, a generated password) is its owner's.
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    with selectors.DefaultSelector() as selector, open(fd, "ab", buffering=0) as log:
        size = os.fstat(log.fileno()).st_size

        def write(records: list[bytes]) -> None:
            # containers.conf's log_size_max: as conmon keeps it, the log starts again
            # from empty when a line would take it past the limit.
            nonlocal size
            start = 0
            for i, record in enumerate(records):
                if 0 < limit < size + len(record) and size > 0:
                    log.write(b"".join(records[start:i]))
                    os.ftruncate(log.fileno(), 0)
                    start, size = i, 0
                size += len(record)
            log.write(b"".join(records[start:]))

        for fd in streams:
            selector.register(fd, selectors.EVENT_READ)
        selector.register(pidfd, selectors.EVENT_READ)
        while streams:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            events = selector.select(timeout)
            if not events and deadline is not None:
                break
            for key, _ in events:
                if key.fd == pidfd:
                    selector.unregister(pidfd)
                    deadline = time.monotonic() + 1.0
                    continue
                data = os.read(key.fd, 65536)
                if not data:  # EOF: nobody holds the pipe any more
                    selector.unregister(key.fd)
                    if partial[key.fd]:
                        write([f"{_now()} {streams[key.fd]} P ".encode() + partial[key.fd] + b"\n"])
                    del streams[key.fd]
                    continue
                *lines, partial[key.fd] = (partial[key.fd] + data).split(b"\n")
                stamp = _now()
                write([f"{stamp} {streams[key.fd]} F ".encode() + line + b"\n" for line in lines])
    os.close(pidfd)
# [/book:pump]


def read_log(path: str) -> Iterator[tuple[str, str, str]]:
    """(timestamp, stream, text) for each line of a k8s-file log."""
    try:
        with open(path, "rb") as f:
            for raw in f:
                stamp, stream, _flag, text = raw.decode(errors="replace").rstrip("\n").split(" ", 3)
                yield stamp, stream, text
    except FileNotFoundError:
        return
