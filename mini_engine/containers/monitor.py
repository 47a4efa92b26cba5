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

The log has podman's "k8s-file" format, one line per line of output
(``logfile.py``, which also rotates it).
"""

from __future__ import annotations

import os
import selectors
import sys
import time
from collections.abc import Callable

from mini_engine.base.errors import ContainerError
from mini_engine.containers import logfile

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


# [book:pump]
def pump(stdout: int, stderr: int, pid: int, log_path: str, options: logfile.Options = logfile.DEFAULT_OPTIONS,
         echo: frozenset[str] = frozenset()) -> None:
    """Copy the container's output into its log, line by line, until both pipes close
    (or, once ``pid`` has exited, a second more: a process it left may hold them).

    Each line is ``TIME STREAM F TEXT`` (k8s-file, as conmon writes; TIME from
    ``logfile.now()``); a last line without a newline is written at its
    pipe's end with ``P`` (partial). ``logfile.Writer`` makes the log 0600
    (what a container prints is its owner's) and rotates it by ``options``.
    ``echo``: a foreground run's streams (stdout, stderr), each byte to our
    own too, as it comes. The pipes are the caller's to close.
    """
    streams = {stdout: "stdout", stderr: "stderr"}
    partial = {stdout: b"", stderr: b""}
    pidfd = os.pidfd_open(pid)  # readable once the process has exited
    deadline: float | None = None
    with selectors.DefaultSelector() as selector, logfile.Writer(log_path, options) as log:
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
                stream = streams[key.fd]
                if data and stream in echo and not _echo(1 if stream == "stdout" else 2, data):
                    _hang_up(key.fd)  # our reader is gone (| head): so is the container's
                    data = b""
                if not data:  # EOF: nobody holds the pipe any more
                    selector.unregister(key.fd)
                    if partial[key.fd]:
                        log.write(f"{logfile.now()} {streams[key.fd]} P ".encode() + partial[key.fd] + b"\n")
                    del streams[key.fd]
                    continue
                *lines, partial[key.fd] = (partial[key.fd] + data).split(b"\n")
                stamp = logfile.now()
                log.write(b"".join(f"{stamp} {streams[key.fd]} F ".encode() + line + b"\n" for line in lines))
    os.close(pidfd)
# [/book:pump]


def _hang_up(fd: int) -> None:
    """Close our end of the container's pipe, so that its next write fails with EPIPE
    (SIGPIPE), as if it wrote to our reader itself; ``fd`` stays open, on a dead pipe,
    for its owner to close."""
    dead, other = os.pipe()
    os.close(other)
    os.dup2(dead, fd, inheritable=False)
    os.close(dead)


def _echo(fd: int, data: bytes) -> bool:
    """Write all of ``data`` to ``fd``; False if its reader has gone (EPIPE)."""
    try:
        while data:
            data = data[os.write(fd, data):]
    except BrokenPipeError:
        return False
    return True
