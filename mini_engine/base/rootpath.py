"""Paths inside a container's root: followed as if that root were "/".

Chapter 02 reads this module (the runtime mounts on what it finds, the
engine makes a missing working directory and reads the image's
/etc/passwd with it). Man pages: path_resolution(7), openat2(2),
symlink(7), proc(5).

An image is untrusted input, and so is a running container's filesystem:
``/proc -> /etc`` in a layer, or a directory swapped for a symlink by a
process of the container while the engine looks, must never lead a mount
or a read out to the host. Every lookup here stops at the root the way the
kernel's own RESOLVE_IN_ROOT does.
"""

from __future__ import annotations

import errno
import os
import stat

from mini_engine.base import syscalls


# [book:resolve-in-root]
def resolve_in_root(root: str, path: str) -> str:
    """The host path for ``path`` inside ``root``, following symlinks as if ``root`` were "/".

    A rootfs comes from an image, and an image may hold ``/proc -> /etc``:
    mounting on ``root + "/proc"`` would then mount over the host's /etc.
    So each component is resolved by hand, and ".." stops at ``root``.
    The answer is a string, good for a check; to act on it, see open_in_root.
    """
    todo = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        try:
            target = os.readlink(os.path.join(root, *done, part))
        except OSError:
            done.append(part)  # not a symlink, or not there yet
            continue
        links += 1
        if links > 40:  # the kernel's own limit (path_resolution(7))
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        if target.startswith("/"):
            done = []
        todo = [p for p in target.split("/") if p not in ("", ".")] + todo
    return os.path.join(root, *done)
# [/book:resolve-in-root]


# [book:open-in-root]
def open_in_root(root: str, path: str) -> int:
    """An ``O_PATH`` descriptor of ``path`` inside ``root``, resolved as if ``root`` were "/".

    A string is looked up again by every call that is handed it. Between
    resolve_in_root and mount(2), a process of another container on the
    same rootfs can swap a directory for a symlink, and the mount lands
    where the symlink points (runc's CVE-2021-30465). A descriptor is looked
    up once, and mount(2) reaches exactly it through /proc/self/fd/N. The
    kernel walks the path itself with openat2(2)'s RESOLVE_IN_ROOT (Linux
    5.6); before that, walk_in_root does the same walk, one descriptor at a
    time. Neither follows a /proc magic link: it would lead anywhere.
    """
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            return syscalls.openat2(root_fd, path, os.O_PATH,
                                    syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS)
        except OSError as exc:
            # ENOSYS: a kernel before 5.6; EPERM: a seccomp filter (an older
            # docker's) that refuses system calls it does not know.
            if exc.errno not in (errno.ENOSYS, errno.EPERM):
                raise
        return walk_in_root(root_fd, path)
    finally:
        os.close(root_fd)
# [/book:open-in-root]


def walk_in_root(root_fd: int, path: str) -> int:
    """RESOLVE_IN_ROOT by hand: resolve_in_root's walk, but from descriptors.

    Each component is opened with O_NOFOLLOW from the directory before it,
    so no path the kernel looks up has more than one name; a symlink is
    read and its target walked from ``root_fd`` (absolute) or from where it
    is (relative); ".." goes back to a directory already open, and never
    above ``root_fd``. What a component is when it is opened is what counts.
    """
    walked = [os.dup(root_fd)]  # the directories from the root down to here
    todo = [p for p in path.split("/") if p not in ("", ".")]
    links = 0
    try:
        while todo:
            part = todo.pop(0)
            if part == "..":
                if len(walked) > 1:
                    os.close(walked.pop())
                continue
            fd = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=walked[-1])
            if not stat.S_ISLNK(os.fstat(fd).st_mode):
                walked.append(fd)  # if it is no directory, the next open says ENOTDIR
                continue
            os.close(fd)
            links += 1
            if links > 40:  # the kernel's own limit (path_resolution(7))
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            target = os.readlink(part, dir_fd=walked[-1])
            if target.startswith("/"):
                while len(walked) > 1:
                    os.close(walked.pop())
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
        return walked.pop()
    finally:
        for fd in walked:
            os.close(fd)


def make_in_root(root: str, path: str, directory: bool) -> int:
    """open_in_root, after making ``path`` where it is missing: directories, and
    an empty file at the end for a file to be bound onto (when not ``directory``).

    The missing part is made along resolve_in_root's answer, one component
    at a time from the descriptor before it, refusing a symlink on the way
    (O_NOFOLLOW): a swapped component fails the mount rather than moves it.
    """
    try:
        return open_in_root(root, path)
    except FileNotFoundError:
        pass
    inside = os.path.relpath(resolve_in_root(root, path), root)
    parts = [] if inside == "." else inside.split("/")
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(parts):
            if i == len(parts) - 1 and not directory:
                try:
                    os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                     0o666, dir_fd=fd))
                except FileExistsError:
                    pass
                break
            try:
                os.mkdir(part, 0o777, dir_fd=fd)
            except FileExistsError:
                pass
            below = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = below
    finally:
        os.close(fd)
    return open_in_root(root, path)


def read_in_root(root: str, path: str, limit: int = 1 << 20) -> bytes:
    """The first ``limit`` bytes of the file at ``path`` inside ``root``.

    Opened through the descriptor open_in_root found (its /proc/self/fd
    name), so a symlink swapped in after the lookup is not followed.
    """
    fd = open_in_root(root, path)
    try:
        with open(f"/proc/self/fd/{fd}", "rb") as f:
            return f.read(limit)
    finally:
        os.close(fd)
