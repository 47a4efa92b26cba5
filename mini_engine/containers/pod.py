"""A pod's record, and what a container of the pod joins: the infra container's namespaces.

Chapter 10 reads this module. Man pages: namespaces(7), setns(2),
pid_namespaces(7), uts_namespaces(7), ipc_namespaces(7).

A pod is a group of containers that share some namespaces: by default the
network (one ``localhost``, one address, one set of ports), IPC (System V
IPC and POSIX message queues) and UTS (one hostname), as podman's pods and
Kubernetes' do. Each container keeps its own mount namespace (its own root
filesystem), its own cgroup and, unless the pod shares it, its own PID
namespace.

A namespace lives as long as a process is in it or a file holds it open.
So a pod begins with an *infra container*: a process that does nothing
(the bundled image's ``pause``, images/busybox.py) but be there, in the
namespaces the pod shares. A container that joins the pod names the infra
process's namespace files, ``/proc/PID/ns/net`` and the others, in its
``config.json``'s ``linux.namespaces[].path``, and the runtime calls
setns(2) on them where it would otherwise call unshare(2).

The record lives beside the containers' records, as private as they are:
``<root>/pods/<id>/pod.json``, the directory 0700, the file 0600.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mini_engine.base import files
from mini_engine.base.errors import ContainerError
from mini_engine.containers import record as containers
from mini_engine.containers import runtime
from mini_engine.paths import Paths

# What --share takes (podman's names), and the OCI namespace type and the
# /proc/PID/ns file of each.
SHAREABLE = {"net": ("network", "net"), "ipc": ("ipc", "ipc"), "uts": ("uts", "uts"), "pid": ("pid", "pid")}
DEFAULT_SHARE = ["net", "ipc", "uts"]  # podman's default, without cgroup: each container keeps its own
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


@dataclass
class PodRecord:
    """The engine's record of a pod: its ``pod.json``."""

    id: str
    name: str
    created: str
    share: list[str]           # of SHAREABLE's keys
    hostname: str              # with "uts" shared, every container's
    network: str               # the infra container's: a network's name, "none" or "host"
    publish: list[str] = field(default_factory=list)  # -p, as given: the pod's ports, the infra's
    infra_image: str = ""
    infra_id: str | None = None  # known once the infra container is made
    cgroup: str | None = None  # its cgroup, the parent of its containers' (None rootless: no cgroups)
    resources: dict[str, Any] = field(default_factory=dict)  # the pod's limits, OCI linux.resources

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PodRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def directory(paths: Paths, pod_id: str) -> str:
    return os.path.join(paths.pods, pod_id)


def save(paths: Paths, pod: PodRecord) -> None:
    files.write_json(os.path.join(directory(paths, pod.id), "pod.json"), pod.to_json())


def parse_share(text: str) -> list[str]:
    """``--share net,ipc,uts``: each a namespace a pod can share, in the order given."""
    kinds = [kind.strip() for kind in text.split(",") if kind.strip()]
    for kind in kinds:
        if kind not in SHAREABLE:
            raise ContainerError(f'--share {text}: "{kind}" is not a namespace a pod can share '
                                 f"(choose from {', '.join(SHAREABLE)})")
    return list(dict.fromkeys(kinds))


def check_name(paths: Paths, name: str) -> None:
    if not NAME.match(name) or len(name) > 57:  # 57: room for "-infra" in the infra container's name
        raise ContainerError(f'pod name "{name}": use letters, digits, "_", "." and "-" '
                             "(first a letter or digit), at most 57")
    for other in all_pods(paths):
        if other.name == name:
            raise ContainerError(f'the pod name "{name}" is in use by pod {other.id[:12]}; '
                                 "remove it first (mini-engine pod rm)")


def all_pods(paths: Paths) -> list[PodRecord]:
    out = []
    for pod_id in sorted(os.listdir(paths.pods)) if os.path.isdir(paths.pods) else []:
        try:
            with open(os.path.join(directory(paths, pod_id), "pod.json")) as f:
                out.append(PodRecord.from_json(json.load(f)))
        except (OSError, ValueError):
            continue  # half made or half removed by another process
    return out


def load(paths: Paths, name: str) -> PodRecord:
    """The pod whose id or name is ``name``, or whose id starts with it."""
    pods = all_pods(paths)
    matches = [p for p in pods if name in (p.id, p.name)] or \
        ([p for p in pods if p.id.startswith(name)] if name else [])
    if len(matches) != 1:
        raise ContainerError(f'pod "{name}" {"is ambiguous" if matches else "does not exist"}'
                             + ("" if matches else " (see mini-engine pod ps)"))
    return matches[0]


def remove_record(paths: Paths, pod: PodRecord) -> None:
    shutil.rmtree(directory(paths, pod.id), ignore_errors=True)


def members(paths: Paths, pod: PodRecord) -> list[containers.Container]:
    """The pod's containers, the infra container not among them, oldest first."""
    found = [c for c in containers.all_containers(paths) if c.record.pod == pod.id and c.id != pod.infra_id]
    return sorted(found, key=lambda c: c.record.created)


def infra(paths: Paths, pod: PodRecord) -> containers.Container | None:
    if not pod.infra_id:
        return None
    try:
        return containers.load(paths, pod.infra_id)
    except ContainerError:
        return None  # removed by hand: status says so


# [book:infra-pid]
def infra_pid(paths: Paths, pod: PodRecord) -> int:
    """The infra process's pid, as the host sees it; refused if it is not running."""
    holder = infra(paths, pod)
    state = runtime.of(paths, holder.record.runtime).state(holder.id) if holder else None
    if holder is None or state is None or state.status not in ("running", "paused"):
        why = "has no infra container" if holder is None else "is not running (its infra container has exited)"
        raise ContainerError(f'pod "{pod.name}" {why}; start it with mini-engine pod start {pod.name}')
    return state.pid


def namespace_paths(pod: PodRecord, pid: int) -> dict[str, str]:
    """OCI namespace type -> the infra process's file of it, for each namespace the pod shares."""
    shared = {}
    for kind in pod.share:
        oci_type, ns_file = SHAREABLE[kind]
        if kind == "net" and pod.network == "host":
            continue  # the infra has no network namespace of its own: the host's is everyone's
        shared[oci_type] = f"/proc/{pid}/ns/{ns_file}"
    return shared
# [/book:infra-pid]


def status(paths: Paths, pod: PodRecord) -> tuple[str, str]:
    """The pod's status, podman's words, and why, when it is degraded.

    running: the infra container and every other container run; exited: none
    runs; degraded: some do. A dead infra container is said, never hidden:
    the namespaces it held are gone with it for containers that join now.
    """
    holder = infra(paths, pod)
    infra_running = holder is not None and containers.status(paths, holder)[0] == "running"
    states = [containers.status(paths, c)[0] for c in members(paths, pod)]
    running = states.count("running")
    if infra_running and running == len(states):
        return "running", ""
    if not infra_running and running == 0:
        return ("exited", "") if holder is not None else ("exited", "its infra container was removed")
    if not infra_running:
        return "degraded", "its infra container has exited"
    return "degraded", f"{len(states) - running} of {len(states)} containers not running"
