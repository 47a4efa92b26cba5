"""A container's root filesystem as an overlay: image layers below, its writes above.

Chapter 04 reads this module. Kernel docs: filesystems/overlayfs.rst.
Man pages: mount(2), mknod(2), xattr(7).

    mount -t overlay overlay \\
          -o lowerdir=TOP:...:BOTTOM,upperdir=UPPER,workdir=WORK  MERGED

The lower layers are read-only and shared by every container of an image;
the first one named in ``lowerdir=`` is the top. The container's writes go
to its own ``upper`` directory: a changed file is copied up first, a deleted
one leaves a *whiteout* (a character device 0/0) in upper, and a directory
that replaces one below is marked *opaque* (xattr ``trusted.overlay.opaque``).
``work`` is the kernel's scratch space, on the same filesystem as upper.
So ``mini-engine diff`` is a walk of upper.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator

from mini_engine.base import mountinfo, syscalls
from mini_engine.base.errors import ContainerError
from mini_engine.images.layer import is_opaque, is_whiteout

# The kernel copies mount options into one page: a longer string fails.
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# [book:mount-overlay]
def mount(lowers: list[str], upper: str, work: str, target: str, cwd: str) -> None:
    """Mount an overlay on ``target``: ``lowers`` top first, relative to ``cwd``.

    Layer paths are relative, and the mount is made from ``cwd``: forty
    absolute paths under /var/lib would pass the one-page limit, forty
    short links like ``l/3f2a9c01de`` do not (docker's overlay2 does the same).

    Refused with ContainerError, in words the checks compare: a path with
    ':' or ',' (``overlay: path 'P' holds ':' or ',', which mount options
    cannot``), and options of a page or more (``overlay: N layers make M
    bytes of mount options; the kernel takes at most 4095``).
    """
    for path in (*lowers, upper, work):
        if ":" in path or "," in path:
            raise ContainerError(f"overlay: path {path!r} holds ':' or ',', which mount options cannot")
    options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    from mini_engine.base import identity

    if identity.rootless():
        options += ",userxattr"  # user.overlay.* xattrs: trusted.* are root's alone
    if len(options) >= PAGE_SIZE:
        raise ContainerError(f"overlay: {len(lowers)} layers make {len(options)} bytes of "
                             f"mount options; the kernel takes at most {PAGE_SIZE - 1}")
    saved = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.chdir(cwd)
        try:
            syscalls.mount("overlay", target, "overlay", 0, options)
        except OSError as exc:
            kind = filesystem_of(upper)
            if kind in ("overlay", "9p", "nfs", "nfs4") or kind.startswith("fuse"):
                raise ContainerError(f"overlay mount on {target} failed: the engine's root is on {kind}, "
                                     "which overlayfs cannot write to; put it (--root, MINI_ENGINE_ROOT) "
                                     "on ext4, xfs, btrfs or tmpfs") from None
            raise ContainerError(f"overlay mount on {target} failed: {exc.strerror} "
                                 "(is the overlay module loaded? see 'mini-engine doctor')") from None
    finally:
        os.fchdir(saved)
        os.close(saved)
# [/book:mount-overlay]


def filesystem_of(path: str) -> str:
    """The type of the filesystem ``path`` is on, from mountinfo's longest matching mount point."""
    try:
        return mountinfo.mount_of(path).fstype
    except OSError:
        return "unknown"


def unmount(target: str) -> None:
    """Unmount ``target`` if something is mounted there."""
    if not os.path.ismount(target):
        return
    try:
        syscalls.umount2(target)
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
        # Still in use (a process of the container lingering): detach it
        # now, the kernel frees it when the last user goes.
        syscalls.umount2(target, syscalls.MNT_DETACH)


# [book:diff]
def diff(upper: str, lowers: list[str]) -> list[tuple[str, str]]:
    """What the container changed: ("A"|"C"|"D", path) read from ``upper``.

    ``lowers`` (absolute, top first) tell a changed file from an added one.
    """
    changes: list[tuple[str, str]] = []
    for path, st in _walk(upper):
        below = _in_lowers(lowers, path)
        if is_whiteout(st):
            changes.append(("D", path))
            continue
        changes.append(("C" if below else "A", path))
        if stat.S_ISDIR(st.st_mode) and below and is_opaque(os.path.join(upper, path.lstrip("/"))):
            # An opaque directory hides all that was below it: each is deleted,
            # unless upper made one of the same name again.
            for name in _lower_names(lowers, path):
                if not os.path.lexists(os.path.join(upper, path.lstrip("/"), name)):
                    changes.append(("D", f"{path}/{name}"))
    return sorted(changes, key=lambda change: change[1])
# [/book:diff]


def _walk(top: str, prefix: str = "") -> Iterator[tuple[str, os.stat_result]]:
    with os.scandir(os.path.join(top, prefix.lstrip("/")) if prefix else top) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            path = f"{prefix}/{entry.name}"
            st = entry.stat(follow_symlinks=False)
            yield path, st
            if stat.S_ISDIR(st.st_mode):
                yield from _walk(top, path)


def _in_lowers(lowers: list[str], path: str) -> bool:
    """Does ``path`` exist in the stack of lower layers (top first), as overlay would merge it?"""
    parts = path.lstrip("/").split("/")
    for lower in lowers:
        opaque_above = False
        for i in range(1, len(parts)):
            try:
                st = os.lstat(os.path.join(lower, *parts[:i]))
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                return False  # a whiteout, file or symlink here hides everything below
            opaque_above = opaque_above or is_opaque(os.path.join(lower, *parts[:i]))
        try:
            return not is_whiteout(os.lstat(os.path.join(lower, *parts)))
        except OSError:
            if opaque_above:
                return False  # an opaque directory hides the layers below it
    return False


def _lower_names(lowers: list[str], path: str) -> list[str]:
    names: set[str] = set()
    for lower in lowers:
        try:
            names.update(os.listdir(os.path.join(lower, path.lstrip("/"))))
        except OSError:
            continue
    return sorted(n for n in names if _in_lowers(lowers, f"{path}/{n}"))
