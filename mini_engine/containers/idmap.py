"""Image files owned right inside a user namespace: idmapped layers.

Chapter 06 reads this module. Man pages: mount_setattr(2) (MOUNT_ATTR_IDMAP),
open_tree(2), move_mount(2), user_namespaces(7).

With ``--userns auto`` the container's root is host uid 100000. The image's
files belong to host uid 0, which has no name inside: ``ls -l`` shows
``nobody``, and root in the container cannot write its own /etc. Two fixes:

- copy each layer with every owner shifted by 100000 (``chown``): works on
  any kernel and filesystem, but costs a copy of the image per mapping, and
  the copies no longer share the page cache;
- an *idmapped mount* of each layer: the same files, seen through the
  mapping, so uid 0 on disk reads as 100000. Nothing is copied; it needs
  Linux 5.12 and a filesystem that supports it (ext4, xfs, btrfs; tmpfs from
  6.3), and overlayfs accepts idmapped lower layers from 5.19.

This engine takes the second. For each layer it clones the layer's
directory as a detached mount (``open_tree(OPEN_TREE_CLONE)``), gives it the
container's mapping (``mount_setattr(MOUNT_ATTR_IDMAP)`` with a user
namespace that has it), and attaches it under the container's bundle
(``move_mount``); the overlay is then made of those. The upper directory is
owned by the container's root, so what it writes is its own.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import signal
import struct
from typing import Any

from mini_engine.base import syscalls
from mini_engine.base.errors import ContainerError
from mini_engine.runtime import namespaces

# Calls newer than 2019 have one number on every architecture (the kernel's generic table).
_SYS = {arch: {"open_tree": 428, "move_mount": 429, "mount_setattr": 442} for arch in ("x86_64", "aarch64")}
OPEN_TREE_CLONE = 1
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOUNT_ATTR_IDMAP = 0x00100000
MOVE_MOUNT_F_EMPTY_PATH = 0x00000004

_libc = ctypes.CDLL(None, use_errno=True)


def _syscall(name: str, *args: Any) -> int:
    numbers = _SYS.get(platform.machine())
    if numbers is None:
        raise OSError(38, f"{name}: no syscall number for {platform.machine()}")
    result = int(_libc.syscall(numbers[name], *args))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")
    return result


def user_namespace(uid_maps: list[dict[str, int]], gid_maps: list[dict[str, int]]) -> int:
    """A descriptor of a new user namespace with these maps (a child holds it while we open it)."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: make the namespace, say so, wait to be killed
        try:
            os.close(ready_r)
            syscalls.unshare(syscalls.CLONE_NEWUSER)
            os.write(ready_w, b"x")
            signal.pause()
        finally:
            os._exit(0)
    os.close(ready_w)
    try:
        if os.read(ready_r, 1) != b"x":
            raise ContainerError("idmap: could not make a user namespace")
        namespaces.write_id_maps(pid, {"linux": {"uidMappings": uid_maps, "gidMappings": gid_maps}})
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


# [book:idmapped-mount]
def mount_idmapped(source: str, target: str, userns_fd: int) -> None:
    """Mount ``source`` on ``target``, its owners seen through the namespace's maps."""
    tree = _syscall("open_tree", -100, source.encode(), OPEN_TREE_CLONE | os.O_CLOEXEC | AT_RECURSIVE)
    try:
        # struct mount_attr: attr_set, attr_clr, propagation, userns_fd.
        attr = ctypes.create_string_buffer(struct.pack("<QQQQ", MOUNT_ATTR_IDMAP, 0, 0, userns_fd))
        _syscall("mount_setattr", tree, b"", AT_EMPTY_PATH | AT_RECURSIVE, attr, len(attr.raw))
        _syscall("move_mount", tree, b"", -100, target.encode(), MOVE_MOUNT_F_EMPTY_PATH)
    finally:
        os.close(tree)
# [/book:idmapped-mount]


def map_layers(lowers: list[str], cwd: str, directory: str, config: dict[str, Any]) -> list[str]:
    """Idmapped mounts of ``lowers`` (relative to ``cwd``) under ``directory``; their paths.

    On failure every mount made so far is removed, and a clear error raised.
    """
    linux = config.get("linux", {})
    fd = user_namespace(linux["uidMappings"], linux["gidMappings"])
    made: list[str] = []
    try:
        for i, lower in enumerate(lowers):
            target = os.path.join(directory, str(i))
            os.makedirs(target, exist_ok=True)
            mount_idmapped(os.path.join(cwd, lower), target, fd)
            made.append(target)
    except OSError as exc:
        unmap_layers(made)
        raise ContainerError(f"idmapped layers: {exc.strerror} (needs Linux 5.19 and a filesystem "
                             "with idmapped mounts under the engine's root)") from None
    finally:
        os.close(fd)
    return made


def unmap_layers(targets: list[str]) -> None:
    for target in targets:
        # Not os.path.ismount: a mount of a directory of the same filesystem
        # has the same st_dev as its parent, and looks like no mount at all.
        try:
            syscalls.umount2(target, syscalls.MNT_DETACH)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: nothing mounted there
                raise
