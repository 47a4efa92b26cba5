"""Stage 0, process: a container is first of all a process.

Chapter 00 reads this module. Man pages: fork(2), execve(2), wait(2),
signal(7), setsid(2), close_range(2).

Everything later stages add (a root filesystem, namespaces, limits) is done
between ``fork`` and ``execve``; this module holds the two ends: turning
``process`` from config.json into an ``execve``, and turning the wait status
the kernel hands back into the exit code docker would print.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import stat
import struct
from contextlib import contextmanager

from mini_engine.base import syscalls
from mini_engine.base.defaults import DEFAULT_PATH
from mini_engine.base.errors import CANNOT_INVOKE, NOT_FOUND, ContainerError
from mini_engine.runtime import trampoline

# Signals the engine passes on to the container instead of dying of them:
# Ctrl-C, `kill`, a closed terminal. SIGKILL and SIGSTOP cannot be caught.
FORWARDED_SIGNALS = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: see mini_engine/runtime/__init__.py
    from collections.abc import Iterator
    from typing import Any


# [book:exec]
def prepare_exec(preserve_fds: int = 0) -> None:
    """Leave the container nothing of ours but stdin, stdout, stderr (and what the caller passes on)."""
    # An ignored signal survives execve, and so does the blocked mask.
    # Python ignores SIGPIPE and SIGXFSZ (a writer to a closed pipe would
    # get EPIPE errors instead of the quiet death every Unix program
    # expects), and a shell that ran us in the background (&) ignores
    # SIGINT and SIGQUIT (a container's `trap ... INT` would never fire).
    # The command starts with every signal at its default, as under a daemon.
    for sig in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}:
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # 32 and 33: the C library keeps them for itself
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    # Every descriptor we did not mean to hand on must not survive execve:
    # an open directory of the host is a way out (CVE-2024-21626).
    # 0, 1 and 2 stay, and the next ``preserve_fds`` when the caller asks
    # (runc's --preserve-fds, for socket activation); the rest close when
    # execve succeeds.
    first = 3 + preserve_fds
    for fd in range(3, first):
        os.set_inheritable(fd, True)
    syscalls.close_range(first, 0xFFFFFFFF, syscalls.CLOSE_RANGE_CLOEXEC)


def exec_process(process: dict[str, Any]) -> None:
    """Replace this process with the container's command. Returns only by raising."""
    args = process["args"]
    env = dict(item.split("=", 1) for item in process.get("env", []))
    # The container's PATH, from env, not the engine's.
    path = find_executable(args[0], env.get("PATH", DEFAULT_PATH))
    missing = missing_interpreter(path)
    if missing:
        raise ContainerError(f'exec "{args[0]}": no such file or directory: {missing}', NOT_FOUND)
    try:
        # Through the sealed trampoline (stage 6, runtime/trampoline.py), so
        # that /proc/self/exe of whatever runs next is never the host's Python.
        os.execve(trampoline.sealed_trampoline(), ["mini-runc-exec", path, *args], env)
    except OSError as exc:
        raise exec_error(args[0], exc) from None


def find_executable(name: str, search: str) -> str:
    """What execvp(3) would run for ``name``: itself if it holds a "/", else
    the first executable file of that name in ``search``; execvp's error if
    there is none (not a file, or not executable). Checked here, before the
    exec, because the exec itself happens in the trampoline, which can only
    exit 126 or 127 without a word."""
    candidates = [name] if "/" in name else [os.path.join(d or ".", name) for d in search.split(":")]
    denied = None
    for candidate in candidates:
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            denied = OSError(errno.EACCES, os.strerror(errno.EACCES))
        elif "/" in name and os.path.isdir(candidate):
            denied = OSError(errno.EACCES, os.strerror(errno.EACCES))
    raise exec_error(name, denied or OSError(errno.ENOENT, os.strerror(errno.ENOENT)))
# [/book:exec]


# [book:interpreter]
PT_INTERP = 3  # elf(5): the program header that names the program interpreter


def program_interpreter(path: str) -> tuple[str, str] | None:
    """The file execve(2) must load to run ``path``, and where ``path`` names it:
    a script's "#!" line, or the PT_INTERP header of a dynamic ELF program
    (the loader, ld.so). None for a static program, or a file we may not
    read (execve decides then)."""
    if path.startswith(("/proc/", "/dev/")):
        # /proc/self/exe names whoever opens it: at execve, the trampoline,
        # not us. (And no FIFO or device to block on: regular files only.)
        return None
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            head = f.read(64)
            if head.startswith(b"#!"):
                words = (head + f.readline())[2:].split(b"\n", 1)[0].split()
                return (os.fsdecode(words[0]), "#!") if words else None
            if head[:4] != b"\x7fELF" or len(head) < 64:
                return None
            if head[4] == 2:  # ELFCLASS64: e_phoff at 32, e_phentsize and e_phnum at 54
                phoff, = struct.unpack_from("<Q", head, 32)
                entry_size, count = struct.unpack_from("<HH", head, 54)
                fields = "<8xQ16xQ"  # p_offset, p_filesz of an Elf64_Phdr
            else:  # ELFCLASS32
                phoff, = struct.unpack_from("<I", head, 28)
                entry_size, count = struct.unpack_from("<HH", head, 42)
                fields = "<4xI8xI"  # p_offset, p_filesz of an Elf32_Phdr
            f.seek(phoff)
            table = f.read(entry_size * count)
            for at in range(0, len(table) - entry_size + 1, entry_size):
                if struct.unpack_from("<I", table, at)[0] == PT_INTERP:
                    offset, size = struct.unpack_from(fields, table, at)
                    f.seek(offset)
                    return os.fsdecode(f.read(size).rstrip(b"\0")), "PT_INTERP"
    except (OSError, struct.error):
        pass
    return None


def missing_interpreter(path: str) -> str | None:
    """Why execve(2) of ``path``, a file that is there, would fail with ENOENT:
    an interpreter it asks for is not there. The kernel does not say which
    file it missed; this says. (A script's interpreter may ask for ld.so.)"""
    for _ in range(5):  # the kernel follows a few levels, then gives up (ELOOP)
        found = program_interpreter(path)
        if found is None:
            return None
        interpreter, how = found
        if not os.path.exists(interpreter):
            return f"{path} asks for the interpreter {interpreter} ({how}), which is not in the container"
        path = interpreter
    return None
# [/book:interpreter]


def set_user(user: dict[str, Any]) -> None:
    """Take the uid, gid and supplementary groups of ``process.user``."""
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    # Groups first: once the uid is not root, we may no longer change them.
    groups = user.get("additionalGids", [])
    try:
        os.setgroups(groups)
    except PermissionError:
        # In a user namespace whose setgroups is "deny" (rootless, one id)
        # there are no groups to drop, and none can be added.
        if groups or not _setgroups_denied():
            raise
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


# [book:change-directory]
def change_directory(cwd: str) -> None:
    """chdir to the working directory, then make sure it is inside the container.

    A cwd of /proc/self/fd/N would follow a descriptor this process still has
    from the host (not closed until exec) to a host directory: CVE-2024-21626.
    The kernel names a directory outside our root "(unreachable)/...", and
    libc's getcwd fails on it.
    """
    os.chdir(cwd)
    try:
        where = os.getcwd()
    except FileNotFoundError:
        where = "(unreachable)"
    if where.startswith("(unreachable)"):
        raise ContainerError(f"the working directory {cwd} is outside the container; refused")
# [/book:change-directory]


def _setgroups_denied() -> bool:
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "deny"
    except OSError:
        return False


def set_rlimits(rlimits: list[dict[str, Any]]) -> None:
    """``process.rlimits``: setrlimit(2) for each, e.g. RLIMIT_NOFILE."""
    def value(n: int) -> int:
        # OCI writes "unlimited" as 2**64-1; the C API calls it RLIM_INFINITY.
        return resource.RLIM_INFINITY if n >= 2**63 or n < 0 else n

    for limit in rlimits:
        try:
            resource.setrlimit(getattr(resource, limit["type"]), (value(limit["soft"]), value(limit["hard"])))
        except ValueError as exc:  # Python's word for EPERM and EINVAL here
            raise ContainerError(f"setrlimit {limit['type']}: {exc}") from None


def set_oom_score_adj(value: int) -> None:
    """How eager the OOM killer is to pick this process (-1000..1000), inherited by children."""
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(value))


def exec_error(command: str, exc: OSError) -> ContainerError:
    """Docker's exit codes for a command that could not start."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        if "/" in command:
            return ContainerError(f'exec "{command}": no such file or directory', NOT_FOUND)
        return ContainerError(f'exec "{command}": executable file not found in $PATH', NOT_FOUND)
    return ContainerError(f'exec "{command}": {(exc.strerror or "").lower()}', CANNOT_INVOKE)


# [book:exit-code]
def exit_code(status: int) -> int:
    """The wait status of the container's process as a shell exit code."""
    if os.WIFSIGNALED(status):
        # The shell's convention, which docker keeps: killed by N is 128+N.
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)
# [/book:exit-code]


# [book:forward]
@contextmanager
def forwarding_signals(pid: int) -> Iterator[None]:
    """While inside, signals sent to the engine go to process ``pid`` instead."""

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass  # it has exited; waitpid will say how

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait(pid: int) -> int:
    """Wait for ``pid`` to end; return its exit code."""
    # A forwarded signal interrupts waitpid; Python retries it (PEP 475).
    _, status = os.waitpid(pid, 0)
    return exit_code(status)
# [/book:forward]


def set_subreaper() -> None:
    """Adopt our orphaned grandchildren, as PID 1 would (PR_SET_CHILD_SUBREAPER).

    The runtime forks twice when it makes a PID namespace (chapter 2): the
    container's PID 1 is a grandchild, and the engine must still wait for it.
    """
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
