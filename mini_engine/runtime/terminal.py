"""Stage 0, process: a terminal for the container (``run -t``).

Chapter 00 reads this module. Man pages: pty(7), setsid(2),
ioctl_tty(2) (TIOCSCTTY, TIOCGWINSZ, TIOCSWINSZ), termios(3).

A shell only behaves interactively (prompt, line editing, Ctrl-C) on a
terminal. The container gets the slave end of a fresh pseudoterminal as its
controlling terminal; the engine keeps the master end and copies bytes
between it and the user's own terminal, which it switches to raw mode so
that keys such as Ctrl-C reach the container's terminal as bytes.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import socket
import termios
import tty

from mini_engine.runtime.process import exit_code


def copy_window_size(src: int, dst: int) -> None:
    """Give terminal ``dst`` the rows and columns of ``src`` (no-op if ``src`` is no tty)."""
    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return
    fcntl.ioctl(dst, termios.TIOCSWINSZ, size)


# [book:controlling-terminal]
def attach_terminal(slave: int) -> None:
    """In the container: make ``slave`` the controlling terminal and stdio."""
    # Only a session leader without a terminal may acquire one, so the
    # container's process has called setsid() before this (init.py).
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
# [/book:controlling-terminal]


# [book:console-socket]
def open_and_send(console_socket: int) -> None:
    """In the container: open a new pty, keep the slave as stdio, send the master out.

    Opened here, after pivot_root, /dev/ptmx is the container's own devpts
    instance: the pty belongs to the container, as with runc. The engine
    (or podman's conmon) gets the master over a unix socket, as a file
    descriptor passed with SCM_RIGHTS, and relays it to the user.
    """
    master, slave = os.openpty()
    name = os.ttyname(slave)
    with socket.socket(fileno=os.dup(console_socket)) as sock:
        socket.send_fds(sock, [name.encode()], [master])
    os.close(master)
    os.close(console_socket)
    attach_terminal(slave)


def receive_master(sock: socket.socket) -> int:
    """In the engine: the pty master the container sent over ``sock``."""
    _, fds, _, _ = socket.recv_fds(sock, 4096, 1)
    if not fds:
        raise OSError("the container sent no terminal")
    return fds[0]
# [/book:console-socket]


def relay(master: int, pid: int, interactive: bool) -> int:
    """In the engine: copy bytes both ways until the container exits; return its exit code."""
    restore = None
    if interactive and os.isatty(0):
        restore = termios.tcgetattr(0)
        tty.setraw(0)
    resize = signal.signal(signal.SIGWINCH, lambda *_: copy_window_size(0, master))
    readers = [master, 0] if interactive else [master]
    try:
        while readers:
            ready, _, _ = select.select(readers, [], [])
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""  # EIO: every slave fd is closed, the container is gone
                if not data:
                    break
                _write_all(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    _write_all(master, data)
                else:
                    readers.remove(0)  # end of input: keep showing output
        _, status = os.waitpid(pid, 0)
    finally:
        signal.signal(signal.SIGWINCH, resize)
        if restore is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, restore)
    return exit_code(status)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]
