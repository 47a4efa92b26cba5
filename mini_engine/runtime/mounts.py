"""Stage 2, namespaces: the container's own mount table and root.

Chapter 02 reads this module. Man pages: mount_namespaces(7), mount(2),
pivot_root(2), umount2(2), proc(5), sysfs(5), devpts, mknod(2).

In a new mount namespace the process starts with a copy of the host's mount
table. The runtime makes those mounts slaves of the host's (runc's default;
``linux.rootfsPropagation`` may ask for another propagation), so that no
mount of the container's reaches the host, builds the container's
filesystem on the rootfs (/proc, /dev, /sys), makes it the root with
pivot_root(2) and detaches the host's old root, so that no path, not even
"..", leads back to the host.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from mini_engine.base import mountinfo, syscalls
from mini_engine.base.errors import ContainerError
from mini_engine.base.rootpath import make_in_root, open_in_root, resolve_in_root
from mini_engine.base.syscalls import (
    MNT_DETACH,
    MS_BIND,
    MS_MOVE,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SLAVE,
    mount,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: see mini_engine/runtime/__init__.py
    from collections.abc import Callable
    from typing import Any

# config.json mount options -> (MS_* flag, whether the option sets or clears it).
MOUNT_FLAGS = {
    "ro": (syscalls.MS_RDONLY, True),
    "rw": (syscalls.MS_RDONLY, False),
    "nosuid": (syscalls.MS_NOSUID, True),
    "suid": (syscalls.MS_NOSUID, False),
    "nodev": (syscalls.MS_NODEV, True),
    "dev": (syscalls.MS_NODEV, False),
    "noexec": (syscalls.MS_NOEXEC, True),
    "exec": (syscalls.MS_NOEXEC, False),
    "sync": (syscalls.MS_SYNCHRONOUS, True),
    "async": (syscalls.MS_SYNCHRONOUS, False),
    "dirsync": (syscalls.MS_DIRSYNC, True),
    "remount": (syscalls.MS_REMOUNT, True),
    "bind": (syscalls.MS_BIND, True),
    "rbind": (syscalls.MS_BIND | syscalls.MS_REC, True),
    "noatime": (syscalls.MS_NOATIME, True),
    "atime": (syscalls.MS_NOATIME, False),
    "nodiratime": (syscalls.MS_NODIRATIME, True),
    "diratime": (syscalls.MS_NODIRATIME, False),
    "relatime": (syscalls.MS_RELATIME, True),
    "norelatime": (syscalls.MS_RELATIME, False),
    "strictatime": (syscalls.MS_STRICTATIME, True),
    "nostrictatime": (syscalls.MS_STRICTATIME, False),
    "nosymfollow": (syscalls.MS_NOSYMFOLLOW, True),
    # Recursively read-only (runc's "rro"): the mounts below too, see mount_entry.
    "rro": (syscalls.MS_RDONLY, True),
}

# Propagation options: applied by a second mount(2) call of their own.
PROPAGATION = {
    "private": syscalls.MS_PRIVATE,
    "rprivate": syscalls.MS_PRIVATE | syscalls.MS_REC,
    "shared": syscalls.MS_SHARED,
    "rshared": syscalls.MS_SHARED | syscalls.MS_REC,
    "slave": syscalls.MS_SLAVE,
    "rslave": syscalls.MS_SLAVE | syscalls.MS_REC,
    "unbindable": syscalls.MS_UNBINDABLE,
    "runbindable": syscalls.MS_UNBINDABLE | syscalls.MS_REC,
}

# The devices every container gets (runtime spec, config-linux.md "Default
# Devices"): name -> (major, minor) from the kernel's devices.txt.
DEFAULT_DEVICES = {
    "null": (1, 3),
    "zero": (1, 5),
    "full": (1, 7),
    "random": (1, 8),
    "urandom": (1, 9),
    "tty": (5, 0),
}
DEV_SYMLINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
    "ptmx": "pts/ptmx",
}

# Flags the kernel locks on mounts copied into a mount namespace owned by a
# less privileged user namespace; a remount that would clear them fails
# with EPERM, so a remount keeps them.
_LOCKED = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC


def parse_options(options: list[str]) -> tuple[int, list[int], str]:
    """Split config.json mount options into (MS_* flags, propagation changes, fs data)."""
    flags = 0
    propagation = []
    data = []
    for option in options:
        if option in MOUNT_FLAGS:
            flag, on = MOUNT_FLAGS[option]
            flags = flags | flag if on else flags & ~flag
        elif option in PROPAGATION:
            propagation.append(PROPAGATION[option])
        else:
            data.append(option)  # filesystem-specific, e.g. "mode=755"
    return flags, propagation, ",".join(data)


# [book:target-in]
@contextmanager
def target_in(root: str, path: str, landing: str | None = None, make: bool | None = None) -> Iterator[str]:
    """The name mount(2) is given for ``path`` inside ``root``: /proc/self/fd/N of a
    descriptor opened there (made first: a directory if ``make``, a file if False).

    The descriptor must be at ``landing``, the host path resolve_in_root gave
    when the mount was checked (check_destination), or gives now: anything
    else means the tree changed since, and nothing is mounted (runc's
    "possibly malicious path detected").
    """
    landing = landing or resolve_in_root(root, path)
    fd = open_in_root(root, path) if make is None else make_in_root(root, path, make)
    try:
        target = f"/proc/self/fd/{fd}"
        where = os.readlink(target)
        if where != os.path.normpath(os.path.join(os.path.realpath(root), os.path.relpath(landing, root))):
            raise ContainerError(f"mount on {path}: refused: it resolves to {where} now "
                                 "(a symlink swapped in since it was checked?)")
        yield target
    finally:
        os.close(fd)
# [/book:target-in]


# [book:mount-entry]
def mount_entry(root: str, bundle: str, entry: dict[str, Any], landing: str | None = None) -> None:
    """Carry out one entry of config.json ``mounts`` under ``root``, at ``landing``
    (where check_destination found it lands; by default, where it lands now)."""
    flags, propagation, data = parse_options(entry.get("options", []))
    destination = entry["destination"]
    landing = landing or resolve_in_root(root, destination)
    fstype = entry.get("type")
    if flags & MS_BIND:
        source = os.path.join(bundle, entry["source"])  # relative sources are the bundle's
        with target_in(root, destination, landing, make=os.path.isdir(source)) as target:
            mount(source, target, None, flags & (MS_BIND | MS_REC))
        # A new bind mount ignores every flag but MS_REC; ro, nosuid and
        # friends only take effect on a remount of it, opened anew: the old
        # descriptor is of the directory below the new mount.
        if flags & ~(MS_BIND | MS_REC):
            with target_in(root, destination, landing) as target:
                locked = os.statvfs(target).f_flag & _LOCKED
                mount(None, target, None, flags | locked | MS_REMOUNT | MS_BIND)
        if "rro" in entry.get("options", []):
            remount_read_only_below(landing)
    else:
        if fstype == "cgroup":
            # Engines (podman, docker) ask for "cgroup" and leave the version
            # to the runtime; this one is cgroup v2 only, as runc on a v2 host.
            fstype, data = "cgroup2", ""
        with target_in(root, destination, landing, make=True) as target:
            mount(entry.get("source", fstype), target, fstype, flags, data or None)
    # mount(2) takes one propagation type per call.
    for change in propagation:
        with target_in(root, destination, landing) as target:
            mount(None, target, None, change)
# [/book:mount-entry]


# runc's list (checkProcMount): the files lxcfs emulates, the only mount
# points allowed inside /proc.
PROC_MOUNTS_ALLOWED = (
    "/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
    "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/sys/kernel/ns_last_pid",
    "/proc/sys/crypto/fips_enabled",
)
_KERNEL_FILESYSTEMS = {"/proc": ("proc", syscalls.PROC_SUPER_MAGIC),
                       "/sys": ("sysfs", syscalls.SYSFS_MAGIC)}


# [book:check-destination]
def check_destination(config: dict[str, Any], root: str, bundle: str, entry: dict[str, Any]) -> str:
    """Refuse a mount that would put something else where the kernel's /proc
    and /sys belong, or over what masking hides (runc's checkProcMount).

    Masked and read-only paths are applied after every mount, and a path
    that is not there is skipped: a directory of the host mounted on /proc
    would leave the container without its own /proc and the masking with
    nothing to say. The destination is checked where it really lands, after
    the image's symlinks, and that host path is returned: the mount goes
    there or nowhere.
    """
    landing = resolve_in_root(root, entry["destination"])
    inside = os.path.relpath(landing, root)
    dest = "/" if inside == "." else f"/{inside}"
    if dest in _KERNEL_FILESYSTEMS:
        fstype, magic = _KERNEL_FILESYSTEMS[dest]
        if parse_options(entry.get("options", []))[0] & MS_BIND:
            source = os.path.join(bundle, entry["source"])
            kernels = os.path.exists(source) and syscalls.statfs_type(source) == magic
        else:
            kernels = entry.get("type") == fstype
        if not kernels:
            raise ContainerError(f"mount on {dest}: refused: only a {fstype} filesystem goes there")
        return landing
    if dest.startswith("/proc/") and dest not in PROC_MOUNTS_ALLOWED:
        raise ContainerError(f"mount on {dest}: refused: it is inside /proc")
    linux = config.get("linux", {})
    for kind, key in (("masked", "maskedPaths"), ("read-only", "readonlyPaths")):
        for path in linux.get(key, []):
            if path == dest or path.startswith(dest.rstrip("/") + "/"):
                raise ContainerError(f"mount on {dest}: refused: it would replace {path}, "
                                     f"which is {kind} in the container")
    return landing
# [/book:check-destination]


# [book:devices]
def create_devices(root: str, in_user_namespace: bool) -> None:
    """Fill the container's fresh /dev tmpfs with the default devices."""
    for name, (major, minor) in DEFAULT_DEVICES.items():
        if in_user_namespace:
            # mknod(2) of a device needs CAP_MKNOD in the host's user
            # namespace, and a tmpfs mounted inside a user namespace ignores
            # device nodes anyway: bind-mount the host's node instead.
            with target_in(root, f"/dev/{name}", make=False) as target:
                mount(f"/dev/{name}", target, None, MS_BIND)
        else:
            with target_in(root, "/dev") as dev:
                make_node(dev, name, stat.S_IFCHR | 0o666, os.makedev(major, minor))
    with target_in(root, "/dev") as dev:
        for name, target in DEV_SYMLINKS.items():
            os.symlink(target, os.path.join(dev, name))
# [/book:devices]


def make_node(directory: str, name: str, mode: int, device: int, uid: int = 0, gid: int = 0) -> None:
    """mknod(2) ``name`` in ``directory``, with exactly ``mode`` and owner (mknod applies
    our umask). Changed through a descriptor of the node: the name may be a symlink by then."""
    os.mknod(os.path.join(directory, name), mode, device)
    fd = os.open(os.path.join(directory, name), os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(mode))
        os.chown(f"/proc/self/fd/{fd}", uid, gid)
    finally:
        os.close(fd)


def create_device(root: str, device: dict[str, Any], in_user_namespace: bool) -> None:
    """One entry of ``linux.devices``: a device node (or fifo) the config asks for."""
    if in_user_namespace:
        with target_in(root, device["path"], make=False) as target:
            mount(device["path"], target, None, MS_BIND)  # the host's node: see create_devices
        return
    kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[device["type"]]
    mode = device.get("fileMode", 0o666) & 0o7777
    parent, name = os.path.split(device["path"])
    with target_in(root, parent, make=True) as directory:
        if os.path.lexists(os.path.join(directory, name)):
            os.unlink(os.path.join(directory, name))  # what the image has there, a symlink too
        make_node(directory, name, kind | mode, os.makedev(device.get("major", 0), device.get("minor", 0)),
                  device.get("uid", 0), device.get("gid", 0))


def remount_read_only_below(target: str) -> None:
    """Make every mount under ``target`` read-only as well ("rro").

    A remount changes one mount; the copies an rbind brought along keep
    their own flags. (mount_setattr(2) with AT_RECURSIVE does it in one
    call, from Linux 5.12; this walk works everywhere.)
    """
    for point in [m.mount_point for m in mountinfo.mounts()]:
        if point.startswith(target + "/"):
            try:
                locked = os.statvfs(point).f_flag & _LOCKED
                mount(None, point, None, MS_BIND | MS_REMOUNT | MS_RDONLY | locked)
            except PermissionError:
                pass  # below a directory the container's root may not search: out of its reach anyway


# ioctl_ns(2): a new descriptor of the user namespace that owns a namespace.
NS_GET_USERNS = 0xB701


# [book:sysfs-userns]
def owns_network_namespace() -> bool:
    """Is our user namespace the owner of our network namespace?"""
    net = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        owner = fcntl.ioctl(net, NS_GET_USERNS)
    except PermissionError:
        return False  # owned by a user namespace above ours: the host's
    finally:
        os.close(net)
    try:
        theirs, ours = os.fstat(owner), os.stat("/proc/self/ns/user")
    finally:
        os.close(owner)
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)


def sysfs_as_allowed(entry: dict[str, Any], in_user_namespace: bool) -> dict[str, Any]:
    """The ``/sys`` entry, or what replaces it where the kernel refuses a sysfs.

    sysfs shows the network devices of the mounter's network namespace, so
    only root of the user namespace that owns that network namespace may
    mount one (sysfs(5)). With ``--userns`` and a network namespace the
    engine made first (chapter 07), or the host's, the owner is the host's
    user namespace and mount(2) says EPERM. What is left is what runc's
    rootless config and crun do: bind the host's /sys, recursively and
    read-only all the way down.
    """
    if entry.get("type") != "sysfs" or not in_user_namespace or owns_network_namespace():
        return entry
    return {"destination": entry["destination"], "type": "bind", "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "rro"]}
# [/book:sysfs-userns]


def unshare_parent_mount(path: str, propagation: int) -> None:
    """Give the mount ``path`` lies on (its own, if it is a mount point) ``propagation``."""
    while True:
        try:
            mount(None, path, None, propagation)
            return
        except OSError as exc:
            # EINVAL: not a mount point. Its parent directory may be one.
            if exc.errno != errno.EINVAL or path == "/":
                raise
            path = os.path.dirname(path)


# [book:pivot]
def pivot_into(root: str) -> None:
    """Make ``root`` the root of this mount namespace and let go of the host's."""
    os.chdir(root)
    # pivot_root(".", ".") stacks the old root on top of the new one, at the
    # same place; the umount below takes it off again (pivot_root(2), NOTES).
    # Unlike chroot, nothing of the host is left to walk to.
    syscalls.pivot_root(".", ".")
    syscalls.umount2(".", MNT_DETACH)
    os.chdir("/")
# [/book:pivot]


# [book:no-pivot]
def move_into(root: str) -> None:
    """``--no-pivot``: move ``root`` over "/" and chroot into it (runc's msMoveRoot).

    pivot_root(2) fails with EINVAL when the root is the initial ramfs, which
    can never be unmounted (a system that runs from its initramfs). Moving
    the rootfs onto "/" works anywhere, but leaves the host's whole mount
    tree below it in the namespace: out of reach of a path, not of a process
    that escapes the chroot (chapter 01). So, as runc does, the host's full
    /proc and /sys go first: through them an escaped process would reach
    every process and the kernel's knobs.
    """
    real_root = os.path.realpath(root)
    for entry in reversed(mountinfo.mounts()):  # the deepest first
        if entry.fstype not in ("proc", "sysfs") or entry.root != "/" \
                or entry.mount_point.startswith(real_root + "/"):
            continue
        try:
            # A slave first: the unmount must not travel back to the host's own /proc.
            mount(None, entry.mount_point, None, MS_SLAVE | MS_REC)
            syscalls.umount2(entry.mount_point, MNT_DETACH)
        except FileNotFoundError:
            continue  # it went with a mount above it
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EPERM):
                raise
            # Locked by a less privileged user namespace: cover it instead.
            mount("tmpfs", entry.mount_point, "tmpfs", 0)
    os.chdir(real_root)
    mount(real_root, "/", None, MS_MOVE)
    # "/" is still the host's: chroot to ".", the rootfs that now sits over it.
    os.chroot(".")
    os.chdir("/")
# [/book:no-pivot]


# [book:prepare-rootfs]
def prepare_rootfs(
    config: dict[str, Any],
    root: str,
    bundle: str,
    in_user_namespace: bool,
    before_pivot: Callable[[], None] | None = None,
    no_pivot: bool = False,
) -> None:
    """In a new mount namespace: build the container's filesystem and enter it
    (with pivot_root, or with ``no_pivot`` by MS_MOVE and chroot)."""
    # The new namespace copied the host's mounts with their propagation: a
    # mount made here under a shared one would show up on the host (shared
    # subtrees, mount_namespaces(7)). As runc does, every mount becomes a
    # slave unless config.json asks otherwise: what the host mounts later
    # still reaches us (a volume's rslave needs that), nothing of ours goes out.
    asked = config.get("linux", {}).get("rootfsPropagation")
    if asked is not None and asked not in PROPAGATION:
        raise ContainerError(f"config.json: linux.rootfsPropagation {asked!r} is not one of "
                             f"{', '.join(PROPAGATION)}")
    propagation = PROPAGATION[asked] if asked else MS_REC | MS_SLAVE
    mount(None, "/", None, propagation)
    # pivot_root(2) refuses a new root whose parent mount is shared, and the
    # bind below would appear in that mount's peers: never shared, that one.
    unshare_parent_mount(root, MS_SLAVE if asked and propagation & MS_SLAVE else MS_PRIVATE)
    # pivot_root(2) requires the new root to be a mount point.
    mount(root, root, None, MS_BIND | MS_REC)
    mounts = config.get("mounts", [])
    for entry in mounts:
        landing = check_destination(config, root, bundle, entry)
        mount_entry(root, bundle, sysfs_as_allowed(entry, in_user_namespace), landing)
    if any(entry["destination"] == "/dev" for entry in mounts):
        create_devices(root, in_user_namespace)
    for device in config.get("linux", {}).get("devices", []):
        create_device(root, device, in_user_namespace)
    if before_pivot is not None:
        before_pivot()  # the createContainer hooks: in our namespaces, the host's paths
    if no_pivot:
        move_into(root)
    else:
        pivot_into(root)
    if asked and not propagation & (MS_PRIVATE | MS_SLAVE):
        # shared (or unbindable): only now, on the container's own root, so
        # that the setup above stayed out of the host's mounts.
        mount(None, "/", None, propagation)
    if config["root"].get("readonly"):
        locked = os.statvfs("/").f_flag & _LOCKED
        mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | locked)
# [/book:prepare-rootfs]


def bind_console(tty: str) -> None:
    """After pivot_root: the container's terminal is also its /dev/console."""
    if os.path.isdir("/dev"):
        with target_in("/", "/dev/console", make=False) as target:
            mount(tty, target, None, MS_BIND)


def detach_mounts_under(root: str) -> None:
    """Lazily unmount whatever a chroot'ed container mounted in its rootfs.

    Without a mount namespace (stage 1) a container's mounts land in the
    host's mount table; the runtime takes them away when it deletes the
    container, deepest first.
    """
    root = os.path.realpath(root)
    points = [m.mount_point for m in mountinfo.mounts()]
    for point in sorted((p for p in points if p.startswith(root + "/")), reverse=True):
        try:
            syscalls.umount2(point, MNT_DETACH)
        except OSError:
            pass  # an outer one already took it along
