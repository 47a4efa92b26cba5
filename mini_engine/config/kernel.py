"""What docker's ``run`` asks of the kernel beyond the defaults: ``--ulimit``, ``--sysctl``,
``--device``, ``--shm-size``, ``--group-add``.

Chapter 08 reads this module. Man pages: setrlimit(2) (``process.rlimits``),
sysctl(8) and proc(5) ("/proc/sys"), mknod(2) and makedev(3) (``linux.devices``),
tmpfs(5) (``size=``), setgroups(2) (``process.user.additionalGids``). Spec:
config.md ("POSIX process"), config-linux.md ("Devices", "Sysctl").

Each flag is checked when ``run`` reads it, before anything is made; the
config.json keys it fills belong to the stage that teaches them, so each is
written by a function of that stage in ``spec.py`` (``add_rlimits``,
``add_kernel_settings``, ``add_device_rules``):

- ``--ulimit nofile=1024:2048``: an ``RLIMIT_NOFILE`` the runtime sets with
  setrlimit(2) before exec (stage 0);
- ``--sysctl net.ipv4.ip_forward=1``: written to the container's /proc/sys
  by its runtime, inside its namespaces (stage 2). Only a parameter that a
  namespace of the container's own makes its own is taken: the net.* ones need
  a network namespace (not ``--network host``), the IPC ones (kernel.shm*,
  kernel.msg*, kernel.sem, fs.mqueue.*) an IPC namespace (not a pod's, which
  its other containers share). Any other would change the host's kernel, and
  docker refuses it, as this does;
- ``--device /dev/fuse[:/dev/fuse[:rwm]]``: the host's node, made again in
  the container's /dev with the same type and numbers (stage 2), and let
  through the device filter (stage 6, ``runtime/devices.py``);
- ``--shm-size 256m``: the size of the tmpfs on /dev/shm (stage 2);
- ``--group-add audio``: a supplementary group, by number or by a name in the
  image's own /etc/group (stage 5).
"""

from __future__ import annotations

import os
import re
import resource
import stat
from dataclasses import dataclass, field
from typing import Any

from mini_engine.base.errors import ContainerError
from mini_engine.config.limits import parse_size
from mini_engine.flags import flag
from mini_engine.stages import IMAGES, NAMESPACES, PROCESS


@dataclass
class KernelOptions:
    """The flags of ``run`` that ask the kernel for more than the defaults, as given."""

    ulimit: list[str] = flag("--ulimit", since=PROCESS, action="append", default=[],
                             metavar="NAME=SOFT[:HARD]", help="a resource limit of the process, as "
                                                              "setrlimit(2): nofile=1024:2048 (-1: unlimited)")
    sysctl: list[str] = flag("--sysctl", since=NAMESPACES, action="append", default=[], metavar="KEY=VALUE",
                             help="a namespaced kernel parameter: net.*, kernel.shm*, kernel.msg*, "
                                  "kernel.sem, fs.mqueue.* (stage 2)")
    device: list[str] = flag("--device", since=NAMESPACES, action="append", default=[],
                             metavar="HOST[:CONTAINER[:rwm]]",
                             help="a device of the host's in the container's /dev, let through its "
                                  "device filter (stage 6)")
    shm_size: str | None = flag("--shm-size", since=NAMESPACES, metavar="SIZE",
                                help="the size of /dev/shm (default 64m)")
    group_add: list[str] = flag("--group-add", since=IMAGES, action="append", default=[], metavar="GROUP",
                                help="a supplementary group: a number, or a name of the image's /etc/group")


@dataclass
class Settings:
    """``KernelOptions`` checked and turned into what config.json says."""

    rlimits: list[dict[str, Any]] = field(default_factory=list)
    sysctl: dict[str, str] = field(default_factory=dict)
    devices: list[dict[str, Any]] = field(default_factory=list)
    device_rules: list[dict[str, Any]] = field(default_factory=list)
    shm_size: int | None = None


def settings(options: KernelOptions) -> Settings:
    """Check every flag; a mistake is one error, before anything is made."""
    rlimits = [parse_ulimit(item) for item in options.ulimit]
    named = [limit["type"] for limit in rlimits]
    for kind in named:
        if named.count(kind) > 1:
            raise ContainerError(f"--ulimit {kind[7:].lower()} is given twice")
    sysctl = dict(parse_sysctl(item) for item in options.sysctl)
    devices, rules = [], []
    for item in options.device:
        device, rule = parse_device(item)
        devices.append(device)
        rules.append(rule)
    shm = None
    if options.shm_size is not None:
        shm = parse_size(options.shm_size, "--shm-size")
        if shm <= 0:
            raise ContainerError(f"--shm-size {options.shm_size}: must be more than 0")
    return Settings(rlimits, sysctl, devices, rules, shm)


# setrlimit(2)'s resources, by docker's names (``ulimit -a``'s).
ULIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
           "rss", "rtprio", "rttime", "sigpending", "stack")
UNLIMITED = 2**64 - 1  # RLIM_INFINITY, as config.json writes it (a uint64)


def parse_ulimit(item: str) -> dict[str, Any]:
    """``nofile=1024:2048`` (or ``nofile=1024``: soft and hard alike) -> a ``process.rlimits`` entry."""
    name, sep, values = item.partition("=")
    if not sep or name not in ULIMITS or not hasattr(resource, f"RLIMIT_{name.upper()}"):
        raise ContainerError(f"--ulimit {item}: expected NAME=SOFT[:HARD], NAME one of {', '.join(ULIMITS)}")
    numbers = []
    for text in values.split(":"):
        if not re.fullmatch(r"-1|[0-9]{1,19}", text):
            raise ContainerError(f"--ulimit {item}: {text!r} is not a number (-1: unlimited)")
        numbers.append(UNLIMITED if text == "-1" else int(text))
    if len(numbers) > 2:
        raise ContainerError(f"--ulimit {item}: expected NAME=SOFT[:HARD]")
    soft, hard = numbers[0], numbers[-1]
    if soft > hard:
        raise ContainerError(f"--ulimit {item}: the soft limit {soft} is above the hard limit {hard}")
    return {"type": f"RLIMIT_{name.upper()}", "soft": soft, "hard": hard}


# [book:sysctl-namespace]
# The sysctls a namespace makes the container's own (docker's list, and runc's).
IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
               "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def sysctl_namespace(key: str) -> str | None:
    """The namespace that holds sysctl ``key`` (config.json's name for it), or None: the host's."""
    if key.startswith("net."):
        return "network"
    if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
        return "ipc"
    return None
# [/book:sysctl-namespace]


def parse_sysctl(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    key = key.replace("/", ".")  # net/ipv4/ip_forward, as sysctl(8) takes it too
    if not sep or not re.fullmatch(r"[a-z0-9_]+(\.[a-zA-Z0-9_-]+)+", key):
        raise ContainerError(f"--sysctl {item}: expected KEY=VALUE, e.g. net.ipv4.ip_forward=1")
    if sysctl_namespace(key) is None:
        raise ContainerError(f"--sysctl {key}: not a namespaced kernel parameter; it would change the "
                             "host's (net.*, kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.* are "
                             "the container's own)")
    return key, value


def check_sysctl_namespaces(sysctl: dict[str, str], network: str, ipc_shared: bool) -> None:
    """A parameter of a namespace the container shares with the host (or with a pod) is refused."""
    for key in sysctl:
        kind = sysctl_namespace(key)
        if kind == "network" and network == "host":
            raise ContainerError(f"--sysctl {key}: not allowed with --network host: it would change the "
                                 "host's network namespace")
        if kind == "network" and network == "pod":
            raise ContainerError(f"--sysctl {key}: not allowed with --pod: the pod's containers share its "
                                 "network namespace")
        if kind == "ipc" and ipc_shared:
            raise ContainerError(f"--sysctl {key}: not allowed with --pod: the pod's containers share its "
                                 "IPC namespace")


DEVICE_TYPES = {stat.S_IFCHR: "c", stat.S_IFBLK: "b"}


def parse_device(item: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``HOST[:CONTAINER[:PERMISSIONS]]`` -> a ``linux.devices`` entry and its device-filter rule."""
    parts = item.split(":")
    if len(parts) == 2 and parts[1] and set(parts[1]) <= set("rwm"):
        parts = [parts[0], parts[0], parts[1]]  # /dev/fuse:rw: docker reads a short last part as permissions
    if len(parts) > 3 or not parts[0]:
        raise ContainerError(f"--device {item}: expected HOST[:CONTAINER[:PERMISSIONS]]")
    host = parts[0]
    inside = parts[1] if len(parts) > 1 and parts[1] else host
    access = parts[2] if len(parts) > 2 else "rwm"
    if not access or not set(access) <= set("rwm"):
        raise ContainerError(f"--device {item}: permissions are made of r, w and m")
    if set(access) != set("rwm"):
        # runtime/devices.py: a node of linux.devices opens whatever the rules say, as runc makes it.
        raise ContainerError(f"--device {item}: the runtime lets a device it makes be read, written "
                             "and made (as runc does); fewer permissions than rwm are refused, not ignored")
    if not os.path.isabs(inside) or os.path.normpath(inside) in ("/", "/dev"):
        raise ContainerError(f"--device {item}: the path in the container must be absolute, e.g. /dev/fuse")
    try:
        st = os.stat(host)
    except OSError as exc:
        raise ContainerError(f"--device {item}: {host}: {exc.strerror}") from None
    kind = DEVICE_TYPES.get(stat.S_IFMT(st.st_mode))
    if kind is None:
        # docker takes a directory of devices too; one node at a time here.
        raise ContainerError(f"--device {item}: {host} is not a character or block device")
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    device = {"path": os.path.normpath(inside), "type": kind, "major": major, "minor": minor,
              "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
    rule = {"allow": True, "type": kind, "major": major, "minor": minor, "access": access}
    return device, rule


def group_ids(groups: list[str], group_file: str | None) -> list[int]:
    """``--group-add``'s groups as numbers: a number as it is, a name from the image's /etc/group."""
    from mini_engine.images.imageconfig import group_id

    return [group_id(name, group_file, "--group-add") for name in groups]
