"""Stage 6, security: what root in the container may still do.

Chapter 06 reads this module. Man pages: capabilities(7), capset(2),
prctl(2) (PR_CAPBSET_DROP, PR_SET_KEEPCAPS, PR_CAP_AMBIENT,
PR_SET_NO_NEW_PRIVS), proc(5).

Root's power is split into capabilities, about forty of them. A process
holds five sets: bounding (the most it can ever get), permitted, effective
(what the kernel checks), inheritable and ambient (what survives execve).
The runtime sets all five from ``process.capabilities`` as late as it can,
after every mount and namespace step that needed them, then sets
no_new_privs, and hides the parts of /proc and /sys a container must not touch.
"""

from __future__ import annotations

import ctypes
import errno
import os

from mini_engine.base import syscall_table, syscalls
from mini_engine.base.capabilities import CAPABILITY_NAMES
from mini_engine.runtime.mounts import _LOCKED

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: see mini_engine/runtime/__init__.py
    from typing import Any

CAPABILITIES = CAPABILITY_NAMES
NUMBER = {name: i for i, name in enumerate(CAPABILITIES)}

PR_CAPBSET_DROP = 24
PR_SET_KEEPCAPS = 8
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_libc = ctypes.CDLL(None, use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def last_cap() -> int:
    """The highest capability this kernel knows (it may know fewer than we do)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAPABILITIES) - 1


def _mask(names: list[str]) -> int:
    bits = 0
    for name in names:
        bits |= 1 << NUMBER[name]
    return bits


# [book:bounding-set]
def drop_bounding(capabilities: dict[str, Any], top: int) -> None:
    """Shrink the bounding set to ``capabilities.bounding``: no execve can go past it."""
    keep = set(capabilities.get("bounding", []))
    for number in range(top + 1):
        if number < len(CAPABILITIES) and CAPABILITIES[number] in keep:
            continue
        try:
            syscalls.prctl(PR_CAPBSET_DROP, number)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: a capability this kernel lacks
                raise
# [/book:bounding-set]


# [book:capset]
def set_capabilities(capabilities: dict[str, Any]) -> None:
    """Set the effective, permitted and inheritable sets, then raise the ambient ones."""
    number = syscall_table.number("capset")  # by number: glibc has no capset() wrapper
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    # Version 3 takes two 32-bit words per set: capabilities 0-31, then 32-63.
    sets = {kind: _mask(capabilities.get(kind, [])) for kind in ("effective", "permitted", "inheritable")}
    data = (_CapData * 2)(*[
        _CapData(*(sets[kind] >> (32 * word) & 0xFFFFFFFF
                   for kind in ("effective", "permitted", "inheritable")))
        for word in (0, 1)
    ])
    if _libc.syscall(number, ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")
    syscalls.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    for name in capabilities.get("ambient", []):
        # An ambient capability must be permitted and inheritable already.
        syscalls.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, NUMBER[name])
# [/book:capset]


def keep_capabilities_across_setuid() -> None:
    """Without this, switching to a non-root uid empties the permitted set."""
    syscalls.prctl(PR_SET_KEEPCAPS, 1)


def set_no_new_privs() -> None:
    """From here on, execve never grants more: setuid bits and file capabilities are ignored."""
    syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)


# [book:masked-paths]
def mask_paths(paths: list[str]) -> None:
    """Hide each path: /dev/null over a file, an empty read-only tmpfs over a directory."""
    for path in paths:
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                syscalls.mount("tmpfs", path, "tmpfs", syscalls.MS_RDONLY)
            else:
                syscalls.mount("/dev/null", path, None, syscalls.MS_BIND)
        except FileNotFoundError:
            continue  # nothing there to hide


def readonly_paths(paths: list[str]) -> None:
    """Make each path read-only: a bind mount onto itself, remounted ro."""
    for path in paths:
        try:
            syscalls.mount(path, path, None, syscalls.MS_BIND | syscalls.MS_REC)
        except FileNotFoundError:
            continue
        locked = os.statvfs(path).f_flag & _LOCKED
        syscalls.mount(None, path, None,
                       syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY | locked)
# [/book:masked-paths]
