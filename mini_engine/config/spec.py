"""The engine's side of the contract: writing the OCI ``config.json``.

Every chapter adds a function here; each fills the ``config.json`` keys its
stage teaches, which that chapter names (``mini-engine stages`` lists the
stages and their chapters). ``mini-engine spec`` prints what ``run`` would
write, so a learner can read it, edit it, and hand the bundle to runc.
Spec: https://github.com/opencontainers/runtime-spec (config.md, config-linux.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mini_engine.base import identity
from mini_engine.base.defaults import DEFAULT_MOUNTS, DEFAULT_PATH, OCI_VERSION
from mini_engine.base.errors import ContainerError
from mini_engine.base.identity import subordinate_range
from mini_engine.config.kernel import Settings as KernelSettings
from mini_engine.config.security import Options as SecurityOptions
from mini_engine.stages import Stage

if TYPE_CHECKING:  # the network's modules are imported by the stage that uses them
    from mini_engine.network.ports import Port


@dataclass
class RunOptions:
    """What ``run`` was asked for, with the image's defaults already known."""

    container_id: str
    command: list[str]
    image_env: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    workdir: str | None = None
    hostname: str | None = None
    tty: bool = False
    userns: str = "host"
    time_offset: int | None = None
    rootfs: str = "rootfs"
    resources: dict[str, Any] = field(default_factory=dict)
    user: dict[str, Any] = field(default_factory=lambda: {"uid": 0, "gid": 0})
    home: str = "/root"
    security: SecurityOptions = field(default_factory=SecurityOptions)  # stage 6: --cap-add...
    network: str = "none"  # stage 7: "none", "host", or a network's name
    netns: str | None = None  # stage 7: the network namespace the engine made
    name_mounts: list[dict[str, Any]] = field(default_factory=list)  # /etc/hosts and friends
    publish: list[Port] = field(default_factory=list)  # stage 7: for the engine, not in config.json
    volumes: list[dict[str, Any]] = field(default_factory=list)  # stage 8: -v and --tmpfs mounts
    mount_records: list[dict[str, Any]] = field(default_factory=list)  # the same, as inspect shows them
    read_only: bool = False  # stage 8: --read-only
    init: str | None = None  # stage 8: --init, the host's init program to bind in
    pod_id: str | None = None  # stage 10: the pod it belongs to (its infra container too)
    pod_namespaces: dict[str, str] = field(default_factory=dict)  # stage 10: type -> the infra's ns file
    kernel: KernelSettings = field(default_factory=KernelSettings)  # --ulimit, --sysctl, --device, --shm-size


def pod_cgroup(pod_id: str) -> str:
    """Stage 10: the cgroup of a pod, the parent of its containers' (``linux.cgroupsPath``)."""
    return f"/mini-engine/pod-{pod_id}"


def merge_env(*lists: list[str]) -> list[str]:
    """KEY=VALUE lists, later ones winning, in first-seen order (as docker merges)."""
    merged: dict[str, str] = {}
    for items in lists:
        for item in items:
            key, _, value = item.partition("=")
            merged[key] = value
    return [f"{k}={v}" for k, v in merged.items()]


# [book:spec-process]
def add_process(spec: dict[str, Any], o: RunOptions) -> None:
    """Stage 0: what to run, with which environment, as whom, where."""
    extra = [f"HOSTNAME={o.hostname or o.container_id[:12]}"]
    if o.tty:
        extra.append("TERM=xterm")
    env = merge_env(o.image_env, extra, o.env)
    if not any(item.startswith("PATH=") for item in env):
        env.insert(0, f"PATH={DEFAULT_PATH}")  # docker's default, for an image without one
    if not any(item.startswith("HOME=") for item in env):
        env.append(f"HOME={o.home}")  # docker's default: the user's home from passwd
    spec["process"] = {
        "terminal": o.tty,
        "user": dict(o.user),
        "args": o.command,
        "env": env,
        "cwd": o.workdir or "/",
    }
# [/book:spec-process]


# [book:spec-root]
def add_root(spec: dict[str, Any], o: RunOptions) -> None:
    """Stage 1: the root filesystem, relative to the bundle as runc expects."""
    spec["root"] = {"path": o.rootfs, "readonly": False}
# [/book:spec-root]


# Docker's defaults; the user and time namespaces are asked for by flags.
DEFAULT_NAMESPACES = ["pid", "network", "ipc", "uts", "mount", "cgroup"]

# [book:spec-namespaces]
def add_namespaces(spec: dict[str, Any], o: RunOptions) -> None:
    """Stage 2: the namespaces, the filesystems in them, the hostname, the id maps."""
    kinds = list(DEFAULT_NAMESPACES)
    linux: dict[str, Any] = {}
    if o.userns == "auto":
        kinds.append("user")
        uid_start, uid_size = subordinate_range("root", "/etc/subuid")
        gid_start, gid_size = subordinate_range("root", "/etc/subgid")
        linux["uidMappings"] = [{"containerID": 0, "hostID": uid_start, "size": uid_size}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": gid_start, "size": gid_size}]
    if o.time_offset is not None:
        kinds.append("time")
        offset = {"secs": o.time_offset, "nanosecs": 0}
        linux["timeOffsets"] = {"monotonic": offset, "boottime": offset}
    linux["namespaces"] = [{"type": kind} for kind in kinds]
    spec["hostname"] = o.hostname or o.container_id[:12]
    spec["mounts"] = [dict(m, options=list(m["options"])) for m in DEFAULT_MOUNTS]
    if identity.rootless():
        # Group 5 (tty) has no id in a one-id user namespace: devpts would refuse gid=5.
        for m in spec["mounts"]:
            m["options"] = [opt for opt in m["options"] if not opt.startswith("gid=")]
    spec["linux"] = linux
# [/book:spec-namespaces]


# cgroup2 inside the container: with a cgroup namespace it shows the
# container's own cgroup as its root. Read-only, as docker mounts it.
CGROUP_MOUNT: dict[str, Any] = {
    "destination": "/sys/fs/cgroup", "type": "cgroup2", "source": "cgroup2",
    "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
}


# [book:spec-cgroups]
def add_cgroups(spec: dict[str, Any], o: RunOptions) -> None:
    """Stage 3: a cgroup of the container's own (a leaf), and its limits."""

    if identity.rootless():
        return  # no cgroup of our own to make (containers/rootless.py)
    spec["linux"]["cgroupsPath"] = f"/mini-engine/{o.container_id}"
    spec["linux"]["resources"] = o.resources
    spec["mounts"].append(dict(CGROUP_MOUNT, options=list(CGROUP_MOUNT["options"])))
# [/book:spec-cgroups]


def add_security(spec: dict[str, Any], o: RunOptions) -> None:
    """Stage 6: capabilities, no_new_privs, seccomp, masked paths (mini_engine/config/security.py)."""
    from mini_engine.config import security

    security.add_security(spec, o.security)


# [book:spec-network]
def add_network(spec: dict[str, Any], o: RunOptions) -> None:
    """Stage 7: the network namespace the engine made (or the host's), and the name files."""
    linux = spec["linux"]
    if o.network == "host":
        linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
    elif o.netns:
        for ns in linux["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = o.netns  # joined, not made: the engine has wired it already
    spec["mounts"] += [dict(m, options=list(m["options"])) for m in o.name_mounts]
# [/book:spec-network]


# [book:spec-volumes]
def add_volumes(spec: dict[str, Any], o: RunOptions) -> None:
    """Stage 8: volumes, tmpfs, a read-only root, and an init as PID 1 (mini_engine/containers/volumes.py
    turns -v and --tmpfs into mounts)."""
    spec["mounts"] += [dict(m, options=list(m["options"])) for m in o.volumes]
    propagation = root_propagation(o.volumes)
    if propagation:  # a volume that propagates needs a root that lets it
        spec["linux"]["rootfsPropagation"] = propagation
    spec["root"]["readonly"] = o.read_only
    if o.init:
        spec["mounts"].append({"destination": INIT_TARGET, "type": "bind", "source": o.init,
                               "options": ["bind", "ro", "nosuid", "nodev"]})
        spec["process"]["args"] = [INIT_TARGET, "--", *spec["process"]["args"]]


INIT_TARGET = "/run/mini-engine-init"  # where --init's program is bound, out of the image's way


def root_propagation(mounts: list[dict[str, Any]]) -> str | None:
    """``linux.rootfsPropagation`` for these mounts, as docker chooses it: shared if a
    mount is, rslave if one is a slave; else none (the runtime's default, rslave)."""
    options = {option for mount in mounts for option in mount.get("options", [])}
    if options & {"shared", "rshared"}:
        return "shared"
    if options & {"slave", "rslave"}:
        return "rslave"
    return None
# [/book:spec-volumes]


# [book:spec-pod]
def add_pod(spec: dict[str, Any], o: RunOptions) -> None:
    """Stage 10: the namespaces a pod shares, joined by path: the infra container's.

    The runtime then calls setns(2) on each file instead of unshare(2). What
    is not listed here (the mount namespace, and PID unless the pod shares
    it) the container still makes of its own.
    """
    for ns in spec["linux"]["namespaces"]:
        if ns["type"] in o.pod_namespaces:
            ns["path"] = o.pod_namespaces[ns["type"]]
    if o.pod_id and "cgroupsPath" in spec["linux"]:
        # A cgroup of its own still, but below the pod's, whose limits bound them all.
        spec["linux"]["cgroupsPath"] = f"{pod_cgroup(o.pod_id)}/{o.container_id}"
# [/book:spec-pod]


# [book:spec-kernel]
def add_rlimits(spec: dict[str, Any], o: RunOptions) -> None:
    """Stage 0: ``--ulimit``, set by the runtime with setrlimit(2) before it execs."""
    if o.kernel.rlimits:
        spec["process"]["rlimits"] = [dict(limit) for limit in o.kernel.rlimits]


def add_kernel_settings(spec: dict[str, Any], o: RunOptions) -> None:
    """Stage 2: ``--sysctl``, ``--device`` and ``--shm-size``, which the container's namespaces
    make its own: its /proc/sys, its /dev, its /dev/shm."""
    linux = spec["linux"]
    if o.kernel.sysctl:
        linux["sysctl"] = dict(o.kernel.sysctl)
    if o.kernel.devices:
        linux["devices"] = [dict(device) for device in o.kernel.devices]
    if o.kernel.shm_size is not None:
        for mount in spec["mounts"]:
            if mount["destination"] == "/dev/shm":
                mount["options"] = [opt for opt in mount["options"] if not opt.startswith("size=")]
                mount["options"].append(f"size={o.kernel.shm_size // 1024}k")


def add_device_rules(spec: dict[str, Any], o: RunOptions) -> None:
    """Stage 6: each ``--device`` let through the device filter, with the permissions it was given
    (the last rule that matches decides: these come after docker's list)."""
    devices = spec["linux"].get("resources", {}).get("devices")
    if devices is not None:
        devices += [dict(rule) for rule in o.kernel.device_rules]
# [/book:spec-kernel]


# Stage number -> what it adds to config.json. Later chapters append here.
SPEC_STAGES: list[tuple[int, Callable[[dict[str, Any], RunOptions], None]]] = [
    (0, add_process),
    (0, add_rlimits),
    (1, add_root),
    (2, add_namespaces),
    (2, add_kernel_settings),
    (3, add_cgroups),
    (6, add_security),
    (6, add_device_rules),
    (7, add_network),
    (8, add_volumes),
    (10, add_pod),
]


def build(o: RunOptions, stage: Stage) -> dict[str, Any]:
    """The config.json for ``o`` with every stage up to ``stage``."""
    spec: dict[str, Any] = {"ociVersion": OCI_VERSION}
    for number, add in SPEC_STAGES:
        if number <= stage.number:
            add(spec, o)
    return spec


def read_env_file(path: str) -> list[str]:
    """docker's ``--env-file``: a ``KEY=VALUE`` (or a bare ``KEY``, taken from here) a line;
    blank lines and lines that begin with ``#`` are skipped, and values are taken as they are:
    no quotes removed, nothing expanded."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise ContainerError(f"--env-file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ContainerError(f"--env-file {path}: not UTF-8 text") from None
    out = []
    for number, line in enumerate(lines, 1):
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key = line.partition("=")[0]
        if not key or any(c.isspace() for c in key):
            raise ContainerError(f'--env-file {path}, line {number}: "{key}" is no variable name')
        out.append(line)
    return out


def host_env(items: list[str]) -> list[str]:
    """docker's ``-e KEY`` (no value): take the value from our environment, or drop it."""
    out = []
    for item in items:
        if "=" in item:
            out.append(item)
        elif item in os.environ:
            out.append(f"{item}={os.environ[item]}")
    return out
