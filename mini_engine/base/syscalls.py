"""The system calls Python 3.11 does not wrap, through ctypes.

Chapter 2 (namespaces) reads this module. Man pages: unshare(2), setns(2),
mount(2), umount2(2), pivot_root(2), prctl(2), close_range(2), statfs(2),
openat2(2).

Python 3.12 adds ``os.unshare`` and ``os.setns``; Debian 12 ships 3.11, so the
runtime declares each C prototype once here and raises ``OSError`` exactly as
the ``os`` module would: ``OSError(errno, strerror, path)``. The constants
carry the kernel's own names, so ``grep MS_PRIVATE`` finds the man page.
"""

from __future__ import annotations

import ctypes
import os

from mini_engine.base import syscall_table

_libc = ctypes.CDLL(None, use_errno=True)

# Namespace flags, <linux/sched.h>: one bit per kind of namespace.
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# Mount flags, <linux/mount.h>.
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

# umount2(2) flags.
MNT_DETACH = 2

# prctl(2) options.
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

# close_range(2) flag: mark the range close-on-exec instead of closing it.
CLOSE_RANGE_CLOEXEC = 1 << 2

# openat2(2) resolve flags, <linux/openat2.h>: how the kernel may walk a path.
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02  # no /proc/PID/fd/N and friends on the way
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10  # the starting directory is "/": absolute symlinks and ".." stay inside

# glibc 2.36 has no openat2() wrapper, so it is called by number, one for
# every machine: added in Linux 5.6 to the table every architecture shares.
_SYS_OPENAT2 = 437


class _OpenHow(ctypes.Structure):
    """struct open_how, openat2's arguments: extensible, so its size is passed too."""

    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]

_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
_libc.syscall.restype = ctypes.c_long
_libc.close_range.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_int]
_libc.statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]

# statfs(2) f_type values, <linux/magic.h>: which filesystem a path is on.
PROC_SUPER_MAGIC = 0x9FA0
SYSFS_MAGIC = 0x62656572


def _check(result: int, path: str | None = None) -> None:
    """Turn libc's ``-1`` and ``errno`` into the ``OSError`` ``os`` raises."""
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces (CLONE_NEW* flags)."""
    _check(_libc.unshare(flags))


def setns(fd: int, nstype: int = 0) -> None:
    """Join the namespace that ``fd`` (an open /proc/PID/ns/* file) refers to."""
    _check(_libc.setns(fd, nstype))


def mount(
    source: str | None,
    target: str,
    fstype: str | None = None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    """mount(2): attach a filesystem, or change a mount with MS_* flags."""
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), target)


def umount2(target: str, flags: int = 0) -> None:
    """umount2(2): detach the mount at ``target`` (MNT_DETACH: lazily)."""
    _check(_libc.umount2(_b(target), flags), target)


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2): make ``new_root`` the root mount of this mount namespace."""
    number = syscall_table.number("pivot_root")  # glibc 2.36 has no pivot_root() wrapper
    _check(_libc.syscall(number, _b(new_root), _b(put_old)), new_root)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2): per-process settings (subreaper, no_new_privs, death signal)."""
    result = int(_libc.prctl(option, arg2, arg3, arg4, arg5))
    _check(result)
    return result


def statfs_type(path: str) -> int:
    """statfs(2)'s ``f_type``: the kind of filesystem ``path`` is on (a *_MAGIC)."""
    buf = ctypes.create_string_buffer(256)  # struct statfs (120 bytes), f_type first
    _check(_libc.statfs(_b(path), ctypes.byref(buf)), path)
    return ctypes.c_long.from_buffer(buf).value


def close_range(first: int, last: int, flags: int = 0) -> None:
    """close_range(2): close, or with CLOSE_RANGE_CLOEXEC mark, a range of fds."""
    _check(_libc.close_range(first, last, flags))


def openat2(dir_fd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): open ``path`` from ``dir_fd`` as openat(2) would, walking it as
    ``resolve`` (RESOLVE_* flags) allows; a new descriptor. ``ENOSYS`` before Linux 5.6."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd = _libc.syscall(_SYS_OPENAT2, ctypes.c_long(dir_fd), _b(path), ctypes.byref(how),
                       ctypes.c_size_t(ctypes.sizeof(how)))
    _check(fd, path)
    return int(fd)
