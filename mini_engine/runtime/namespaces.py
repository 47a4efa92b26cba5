"""Stage 2, namespaces: what the process can see.

Chapter 02 reads this module. Man pages: namespaces(7), unshare(2), setns(2),
user_namespaces(7), pid_namespaces(7), time_namespaces(7), netdevice(7).

A namespace wraps one kind of global resource (process IDs, mounts, the
hostname, the network stack, user IDs, clocks) so that the processes inside
see their own instance of it. The runtime makes new ones with unshare(2) or
joins existing ones with setns(2), as ``linux.namespaces`` in config.json says.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct

from mini_engine.base import syscalls
from mini_engine.base.errors import ContainerError
from mini_engine.runtime.config import NAMESPACE_FILES
from mini_engine.runtime.config import namespaces as listed_namespaces

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: see mini_engine/runtime/__init__.py
    from typing import Any

    from mini_engine.runtime.channel import Sync as Channel  # the child's line to the engine

# OCI namespace type -> the flag unshare(2) and setns(2) take for it.
CLONE_FLAGS = {
    "pid": syscalls.CLONE_NEWPID,
    "network": syscalls.CLONE_NEWNET,
    "mount": syscalls.CLONE_NEWNS,
    "ipc": syscalls.CLONE_NEWIPC,
    "uts": syscalls.CLONE_NEWUTS,
    "user": syscalls.CLONE_NEWUSER,
    "cgroup": syscalls.CLONE_NEWCGROUP,
    "time": syscalls.CLONE_NEWTIME,
}


# [book:enter-namespaces]
def enter_namespaces(config: dict[str, Any], parent: Channel) -> None:
    """Join or create every namespace config.json lists, the user namespace first."""
    wanted = listed_namespaces(config)
    joined: set[str] = set()
    if "user" in wanted:
        # Every other namespace is owned by the user namespace its creator is
        # in, and root of that user namespace is who may act inside them.
        # So the user namespace comes first, and the rest are made by its root.
        if wanted["user"]:
            _join(wanted["user"], "user")
        else:
            # Namespaces to join (an engine's network namespace, chapter 07)
            # are joined while we are still the host's root: setns(2) needs
            # CAP_SYS_ADMIN in their owner, and the new user namespace has
            # none there. runc joins in this order too.
            for kind, path in wanted.items():
                if path and kind != "user":
                    _join(path, kind)
                    joined.add(kind)
            syscalls.unshare(syscalls.CLONE_NEWUSER)
            # Only a process outside may write our uid_map and gid_map.
            parent.send(type="userns")
            if parent.recv() != {"type": "ack"}:
                raise ContainerError("the engine did not write the user namespace maps")

    new = 0
    for kind, path in wanted.items():
        if kind == "user" or kind in joined:
            continue
        if path:
            _join(path, kind)
        else:
            new |= CLONE_FLAGS[kind]
    syscalls.unshare(new)

    if new & syscalls.CLONE_NEWTIME:
        set_time_offsets(config.get("linux", {}).get("timeOffsets", {}))
    if new & syscalls.CLONE_NEWNET:
        # A new network namespace has one interface, lo, and it is down.
        bring_up_loopback()
    if "user" in wanted:
        # Last: a change of uid makes the process non-dumpable, and then its
        # /proc/self files (timens_offsets above) belong to the host's root.
        become_root()
# [/book:enter-namespaces]


# [book:join-namespaces]
def join_namespaces_of(pid: int) -> set[str]:
    """setns(2) into every namespace of process ``pid`` that is not ours already.

    setns needs CAP_SYS_ADMIN in the user namespace that owns the target.
    So a namespace the container's user namespace does not own (the
    engine's network namespace, made before it) is joined first, while we
    still have the host's capabilities; then the user namespace; then the
    ones it owns, where it gives them to us. The mount namespace also sets
    our root and working directory to the namespace's root. Returns the
    kinds joined (a joined PID or time namespace applies to our children).
    """
    # Open them all first: once we are in the container's mount namespace,
    # /proc is the container's, and the host's pid means nothing there.
    fds: dict[str, int] = {}
    root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for kind in ["user"] + [k for k in CLONE_FLAGS if k != "user"]:
            name = NAMESPACE_FILES[kind]
            if os.readlink(f"/proc/{pid}/ns/{name}") != os.readlink(f"/proc/self/ns/{name}"):
                fds[kind] = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        user = fds.get("user")
        owned = {kind for kind, fd in fds.items() if user is not None and kind != "user"
                 and _same_file(_owner(fd), user)}
        for kind in sorted(fds, key=lambda k: (k in owned, k == "user")):
            syscalls.setns(fds[kind], CLONE_FLAGS[kind])
        if "mount" not in fds:
            # Same mount namespace as ours (a chroot'ed container, stage 1):
            # take the container's root the way it got it, or we would run
            # on the host's filesystem.
            os.fchdir(root)
            os.chroot(".")
    finally:
        os.close(root)
        for fd in fds.values():
            os.close(fd)
    return set(fds)
# [/book:join-namespaces]


NS_GET_USERNS = 0xB701  # linux/nsfs.h: _IO(0xb7, 0x1)


def _owner(fd: int) -> int:
    """A descriptor of the user namespace that owns the namespace ``fd`` (ioctl_ns(2))."""
    return fcntl.ioctl(fd, NS_GET_USERNS)


def _same_file(fd: int, other: int) -> bool:
    """Whether two namespace descriptors name one namespace; closes ``fd``."""
    try:
        a, b = os.fstat(fd), os.fstat(other)
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    finally:
        os.close(fd)


def _join(path: str, kind: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.setns(fd, CLONE_FLAGS[kind])
    finally:
        os.close(fd)


# [book:id-maps]
def write_id_maps(pid: int, config: dict[str, Any]) -> None:
    """From outside: tell the kernel which host IDs the container's IDs are."""
    linux = config.get("linux", {})
    for key, name in (("uidMappings", "uid_map"), ("gidMappings", "gid_map")):
        mappings = linux.get(key)
        if not mappings:
            raise ContainerError(f"config.json: a user namespace needs linux.{key}")
        # One line per range, "inside outside count"; the kernel accepts the
        # whole map in a single write(2), and only once.
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings)
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(lines)


def become_root() -> None:
    """Inside a new user namespace: take uid 0 and gid 0 of the namespace."""
    # Until now our uid was the host's 0, which the maps leave unmapped
    # (it shows as 65534, "nobody"); root of the namespace is host uid N.
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
# [/book:id-maps]


def set_time_offsets(offsets: dict[str, Any]) -> None:
    """Shift CLOCK_MONOTONIC and CLOCK_BOOTTIME for the new time namespace.

    The kernel takes the offsets only before any process has entered the
    namespace: unshare(CLONE_NEWTIME) moves our children, not us, so we
    write them now, before the fork that makes PID 1.
    """
    lines = "".join(
        f"{clock} {value.get('secs', 0)} {value.get('nanosecs', 0)}\n"
        for clock, value in offsets.items()
    )
    if lines:
        with open("/proc/self/timens_offsets", "w") as f:
            f.write(lines)


# struct ifreq from <net/if.h>: a 16-byte name, then a union whose first
# member for SIOCGIFFLAGS is a short of IFF_* flags; 40 bytes on 64-bit.
_IFREQ = "16sh22x"
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def bring_up_loopback() -> None:
    """``ip link set lo up``, with the ioctl(2) that predates netlink."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack(_IFREQ, b"lo", 0)
        _, flags = struct.unpack(_IFREQ, fcntl.ioctl(s, SIOCGIFFLAGS, request))
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | IFF_UP))


def apply_sysctl(sysctl: dict[str, str]) -> None:
    """``linux.sysctl``: kernel parameters, written to the container's /proc/sys.

    Only namespaced parameters (net.*, kernel.shm*, kernel.msg*, ...) are the
    container's own; writing another one would change the host, and the
    kernel refuses it to a container that is not privileged.
    """
    for key, value in sysctl.items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(str(value))


def set_hostname(config: dict[str, Any]) -> None:
    """Set ``hostname`` from config.json, which only a UTS namespace makes safe."""
    hostname = config.get("hostname")
    if hostname is None:
        return
    if "uts" not in listed_namespaces(config):
        raise ContainerError("config.json: hostname needs a uts namespace (it would rename the host)")
    socket.sethostname(hostname)
