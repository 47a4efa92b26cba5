"""Attaching to a detached container: the monitor's socket, and ``attach``, ``start -a``, ``run -dit``.

Chapter 08 reads this module. Man pages: unix(7) (SOCK_SEQPACKET), pty(7),
ioctl_tty(2) (TIOCSWINSZ), termios(3), proc(5) (/proc/self/fd).

A detached container's output goes to its monitor, and from there to its
log. To let a terminal attach later, the monitor also listens on a unix
socket in the container's bundle, ``attach.sock``, as podman's conmon
does: every byte the container writes goes to each connected client too,
and what a client sends goes to the container's stdin (a pipe the monitor
keeps open with ``-i``, or its terminal with ``-t``). The socket is
``SOCK_SEQPACKET``: the kernel keeps each message whole, so one byte in
front of each says what it is, with no framing of our own:

- monitor to client: ``1`` stdout, ``2`` stderr, then the bytes;
- client to monitor: ``0`` stdin bytes, ``1`` end of input, ``2`` the window's size.

The client ends when the socket closes (the container has exited: its exit
code is then in its record), or when the user types the *detach keys*,
docker's Ctrl-P Ctrl-Q: it leaves, and the container runs on.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import socket
import termios
import threading
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mini_engine.base.errors import ContainerError
from mini_engine.paths import Paths

SOCKET = "attach.sock"
STDOUT, STDERR = b"1", b"2"
INPUT, END_OF_INPUT, WINDOW = b"0", b"1", b"2"
DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
DETACHED = "read escape sequence"  # docker's words, and its exit code 1


# [book:attach-socket]
@contextmanager
def _in_bundle(bundle: str) -> Iterator[str]:
    """A short path to ``bundle/attach.sock``: a unix socket's path must fit in 108
    bytes (unix(7)), a bundle's may not; /proc/self/fd/N names the directory in a few."""
    fd = os.open(bundle, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{SOCKET}"
    finally:
        os.close(fd)


def listen(bundle: str) -> socket.socket:
    """The monitor's end: a listening socket at ``bundle/attach.sock``, 0600 as the bundle's files."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with _in_bundle(bundle) as path:
        try:
            os.unlink(path)  # a monitor killed earlier left it
        except FileNotFoundError:
            pass
        old = os.umask(0o177)
        try:
            server.bind(path)
        finally:
            os.umask(old)
    server.listen(8)
    return server


def connect(bundle: str) -> socket.socket | None:
    """A client's end; None if no monitor listens there."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with _in_bundle(bundle) as path:
        try:
            client.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            client.close()
            return None
    return client
# [/book:attach-socket]


# [book:attach-hub]
class Hub(threading.Thread):
    """In the monitor: copy the container's output (``sources``, fd -> stream) to ``pump``'s
    pipes (fd -> fd: the log's way) and to every client; the clients' input to ``stdin``.

    A thread of the monitor, beside ``pump``: it ends when the container's output
    does, closing the pump's pipes, so that ``pump`` sees the end too.
    """

    def __init__(self, server: socket.socket, sources: dict[int, bytes], pump: dict[int, int],
                 stdin: int | None, terminal: int | None, pid: int) -> None:
        super().__init__()
        self.daemon = True  # a monitor that must end does not wait for it
        self.server, self.sources, self.pump = server, sources, pump
        self.stdin, self.terminal, self.pid = stdin, terminal, pid
        self.clients: list[socket.socket] = []
        self.accept_waiting()

    def accept_waiting(self) -> None:
        """Take the clients already queued (``start -a`` connects before the container starts)."""
        self.server.setblocking(False)
        while True:
            try:
                client, _ = self.server.accept()
            except BlockingIOError:
                return
            # A client that stops reading (a suspended terminal) must not stop the container: dropped.
            client.settimeout(10)
            self.clients.append(client)

    def run(self) -> None:
        pidfd = os.pidfd_open(self.pid)
        deadline: float | None = None
        try:
            while self.sources:
                readers: list[int | socket.socket] = [*self.sources, pidfd, self.server, *self.clients]
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                ready, _, _ = select.select(readers, [], [], timeout)
                if not ready and deadline is not None:
                    break  # a process it left holds its output open: the container is done
                for fd in ready:
                    if isinstance(fd, socket.socket):
                        if fd is self.server:
                            self.accept_waiting()
                        else:
                            self._input(fd)
                    elif fd == pidfd:
                        deadline = time.monotonic() + 1.0  # as pump: drain a second more
                    else:
                        self._output(fd)
        finally:
            os.close(pidfd)
            for fd in list(self.sources):
                self._close_source(fd)
            for client in self.clients:
                client.close()  # the clients see the end
            self.server.close()
            if self.stdin is not None and self.stdin != self.terminal:
                os.close(self.stdin)

    def _output(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""  # EIO from a terminal: its last slave is closed, the container is gone
        if not data:
            self._close_source(fd)
            return
        _write_all(self.pump[fd], data)
        for client in list(self.clients):
            try:
                client.send(self.sources[fd] + data)
            except OSError:
                self._drop(client)

    def _close_source(self, fd: int) -> None:
        del self.sources[fd]
        os.close(self.pump.pop(fd))
        if fd != self.terminal:
            os.close(fd)

    def _input(self, client: socket.socket) -> None:
        try:
            message = client.recv(65536)
        except OSError:
            message = b""
        if not message:
            self._drop(client)
            return
        kind, data = message[:1], message[1:]
        if kind == INPUT and self.stdin is not None:
            _write_all(self.stdin, data)
        elif kind == END_OF_INPUT and self.stdin is not None and self.stdin != self.terminal:
            # As docker's attached stdin: its end is the container's end of input.
            os.close(self.stdin)
            self.stdin = None
        elif kind == WINDOW and self.terminal is not None and len(data) == 8:
            fcntl.ioctl(self.terminal, termios.TIOCSWINSZ, data)

    def _drop(self, client: socket.socket) -> None:
        self.clients.remove(client)
        client.close()
# [/book:attach-hub]


class Wiring:
    """A detached container's stdio, made before the runtime's create; its hub, made after.

    The container writes into pipes of its own, which the hub reads (or, with ``-t``, into
    its terminal); the hub writes into the log's pipes (``to_log``, which ``pump`` reads);
    with ``-i`` the container reads a pipe the hub feeds, open for whoever attaches.
    """

    def __init__(self, bundle: str, server: socket.socket | None, interactive: bool, tty_mode: bool,
                 to_log: tuple[int, int]) -> None:
        self.server = server or listen(bundle)
        self.bundle, self.interactive, self.to_log = bundle, interactive, to_log
        self.owned = list(to_log)  # closed here unless the hub takes them over
        stdin = os.open(os.devnull, os.O_RDONLY)
        self.feed = None
        if interactive and not tty_mode:
            # docker keeps a detached container's stdin open, for whoever attaches.
            os.close(stdin)
            stdin, self.feed = os.pipe()
            self.owned.append(self.feed)
        (self.out, out_to), (self.err, err_to) = os.pipe(), os.pipe()
        self.owned += [self.out, self.err]
        self.stdio = (stdin, out_to, err_to)  # the caller closes them once the container has its copies

    def start_hub(self, created: Any) -> Hub:
        """The hub, started: ``created`` is the runtime's process, and its terminal's master with -t."""
        log_out, log_err = self.to_log
        sources, to_log = {self.out: STDOUT, self.err: STDERR}, {self.out: log_out, self.err: log_err}
        feed = self.feed
        if created.master is not None:
            # With -t its output comes from the terminal, stdout and stderr as one: the
            # pipes go unused, and the log's stderr ends at once.
            sources, to_log = {created.master: STDOUT}, {created.master: log_out}
            os.close(log_err)
            feed = created.master if self.interactive else None
        hub = Hub(self.server, sources, to_log, feed, created.master, created.pid)
        self.owned = [self.out, self.err] if created.master is not None else []
        hub.start()  # it closes the log's pipes when the container's output ends
        return hub

    def close(self) -> None:
        for fd in self.owned:
            os.close(fd)
        self.owned = []
        self.server.close()
        with _in_bundle(self.bundle) as path:
            try:
                os.unlink(path)  # nobody listens there any more: attach finds no socket
            except FileNotFoundError:
                pass


def _write_all(fd: int, data: bytes) -> None:
    """Write ``data``, waiting at most a few seconds for room: a reader that has stopped
    (pump, done a second after the container's exit) must not stop the hub."""
    try:
        while data:
            _, ready, _ = select.select([], [fd], [], 5.0)
            if not ready:
                return
            data = data[os.write(fd, data[:select.PIPE_BUF]):]
    except BrokenPipeError:
        pass  # the reader is gone: the container closed its stdin


def parse_detach_keys(keys: str) -> bytes:
    """docker's ``--detach-keys``: ``ctrl-p,ctrl-q``; a letter, or ctrl- and one of a-z @ [ \\ ] ^ _."""
    out = b""
    for key in keys.split(","):
        if len(key) == 1:
            out += key.encode()
        elif key.lower().startswith("ctrl-") and len(key) == 6 and (key[5].isalpha() or key[5] in "@[\\]^_"):
            out += bytes([ord(key[5].upper()) & 0x1F])  # Ctrl clears the top bits: ctrl-p is 0x10
        else:
            raise ContainerError(f'--detach-keys "{keys}": expected keys such as ctrl-p,ctrl-q '
                                 "(a letter, or ctrl- and a-z, @, [, \\, ], ^ or _)")
    return out


class _DetachKeys:
    """Watches the typed bytes for the detach sequence; holds back a beginning of it."""

    def __init__(self, sequence: bytes) -> None:
        self.sequence, self.held = sequence, b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """What to send on, and whether the whole sequence was typed."""
        out = b""
        for key in (bytes([byte]) for byte in data):
            if not self.sequence.startswith(self.held + key):
                out, self.held = out + self.held, b""  # not the sequence after all: sent as typed
                if not self.sequence.startswith(key):
                    out += key
                    continue
            self.held += key
            if self.held == self.sequence:
                return out, True
        return out, False


# [book:attach-client]
def client(sock: socket.socket, stdin: bool, tty_mode: bool, detach_keys: str = DEFAULT_DETACH_KEYS,
           stdin_once: bool = False) -> bool:
    """Copy the container's output to ours and, with ``stdin``, our input to it, until the
    container ends (True) or the detach keys are typed (False: it runs on). ``stdin_once``:
    the end of our input is the container's too (docker's StdinOnce, a container made by
    ``create``, attached from the start); otherwise the next client may still type."""
    keys = _DetachKeys(parse_detach_keys(detach_keys))
    restore = None
    if stdin and tty_mode and os.isatty(0):
        restore = termios.tcgetattr(0)
        tty.setraw(0, termios.TCSANOW)  # keys reach the container's terminal as bytes: Ctrl-C is its
    resize = None
    if tty_mode and os.isatty(0):
        def send_size(*_: object) -> None:
            sock.send(WINDOW + fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))
        resize = signal.signal(signal.SIGWINCH, send_size)
        send_size()
    readers: list[int | socket.socket] = [sock, 0] if stdin else [sock]
    try:
        while True:
            ready, _, _ = select.select(readers, [], [])
            if sock in ready:
                message = sock.recv(65536 + 1)
                if not message:
                    return True  # the monitor closed it: the container has exited
                os.write(1 if message[:1] == STDOUT else 2, message[1:])
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    if stdin_once:
                        sock.send(END_OF_INPUT)
                    readers.remove(0)
                    continue
                data, detached = keys.feed(data)
                if data:
                    sock.send(INPUT + data)
                if detached:
                    return False
    finally:
        if resize is not None:
            signal.signal(signal.SIGWINCH, resize)
        if restore is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, restore)
        sock.close()
# [/book:attach-client]


# [book:attach-command]
def attach_command(paths: Paths, name: str, stdin: bool, detach_keys: str) -> int:
    """``mini-engine attach``: a terminal on a detached container; its exit code once it exits."""
    from mini_engine.containers import record as containers

    parse_detach_keys(detach_keys)  # a bad one refused before anything is shown
    container = containers.load(paths, name)
    if containers.status(paths, container)[0] != "running":
        raise ContainerError(f'container "{name}" is not running: you cannot attach to a stopped '
                             "container, start it first", 1)
    sock = connect(container.bundle)
    if sock is None:
        raise ContainerError(f'container "{name}" runs in the foreground of the terminal that started it: '
                             "only a detached one (run -d, start) can be attached", 1)
    saved = container.record.run.request if container.record.run else {}
    return follow(paths, container.id, sock, stdin and bool(saved.get("interactive")), bool(saved.get("tty")),
                  detach_keys, stdin_once=not saved.get("detach"))
# [/book:attach-command]


def follow(paths: Paths, container_id: str, sock: socket.socket, stdin: bool, tty_mode: bool,
           detach_keys: str, stdin_once: bool) -> int:
    """Run the client; the container's exit code once it has exited and its monitor has
    recorded it, or docker's ``read escape sequence`` and 1 after the detach keys."""
    from mini_engine.containers import manage

    if stdin and tty_mode and not os.isatty(0):
        sock.close()
        raise ContainerError("the input device is not a TTY: attach --no-stdin, or from a terminal")
    if not client(sock, stdin, tty_mode, detach_keys, stdin_once):
        raise ContainerError(DETACHED, 1)
    return manage.exit_code(paths, container_id)
