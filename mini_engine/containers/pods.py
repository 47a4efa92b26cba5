"""``mini-engine pod ...``: make a pod, list it, start, stop and remove it with its containers.

Chapter 10 reads this module; the pod's record and what its containers
join are in pod.py. podman's ``pod`` commands are the model: ``pod create``
makes the record and starts the infra container, which holds the shared
namespaces and the pod's published ports; ``run --pod`` adds containers;
``pod rm`` removes the pod, its containers with it.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack
from typing import Any

from mini_engine.base import identity, procfs
from mini_engine.base.errors import ContainerError
from mini_engine.base.signals import parse_signal
from mini_engine.config import spec
from mini_engine.config.limits import Limits, resources
from mini_engine.containers import manage, runtime
from mini_engine.containers import pod as pods
from mini_engine.containers import record as containers
from mini_engine.containers import run as runs
from mini_engine.images import busybox
from mini_engine.paths import Paths
from mini_engine.settings import engine as engine_settings
from mini_engine.stages import Stage


# [book:pod-create]
def create(paths: Paths, stage: Stage, name: str | None, publish: list[str], share: str | None,
           infra_image: str | None, network: str | None, limits: Limits, runtime_name: str | None
           ) -> pods.PodRecord:
    """``pod create``: the pod's record and cgroup, then its infra container, which holds what
    the pod shares."""
    shared = pods.parse_share(share) if share is not None else list(pods.DEFAULT_SHARE)
    limited = resources(limits)
    if limited and identity.rootless():
        raise ContainerError("pod limits are not available rootless: the kernel gives cgroups to root "
                             "(run as root, or in the lab VM)")
    runtime.refuse_missing_controllers(limited)  # before anything is made
    if publish and "net" not in shared:
        raise ContainerError("--publish needs the pod to share its network (--share net): "
                             "a port is published to one network namespace")
    pod_id = containers.new_id()
    name = name or f"pod_{pod_id[:12]}"
    pods.check_name(paths, name)
    image = infra_image or busybox.NAME
    # The infra container is made as `run -d` makes any container: the pod's ports
    # and network are its own. The bundled image runs the engine's pause.
    infra_request = runs.Request(
        detach=True, name=f"{name}-infra", hostname=name, network=network, publish=list(publish),
        args=[image] if infra_image else [image, busybox.PAUSE])
    runs.check_flags(infra_request, stage)
    # The network run's default gives the infra container (containers/run.py).
    network = network or engine_settings.default_network() or ("none" if identity.rootless() else "bridge")
    record = pods.PodRecord(pod_id, name, containers.now(), shared, name, network, list(publish), image,
                            cgroup=None if identity.rootless() else spec.pod_cgroup(pod_id), resources=limited)
    with ExitStack() as undo:
        os.makedirs(paths.pods, mode=0o700, exist_ok=True)
        os.mkdir(pods.directory(paths, pod_id), 0o700)
        undo.callback(pods.remove_record, paths, record)
        pods.save(paths, record)
        if record.cgroup:
            runtime.make_parent_cgroup(record.cgroup, record.resources)
            undo.callback(runtime.remove_cgroup, record.cgroup)
        runs.run(paths, infra_request, stage, runtime_name, infra_of=pod_id, announce=False)
        infra = containers.load(paths, infra_request.name or "")
        undo.callback(manage.rm, paths, infra.id, True)
        record.infra_id = infra.id
        pods.save(paths, record)
        undo.pop_all()
    return record
# [/book:pod-create]


def _running(paths: Paths, container: containers.Container) -> bool:
    return containers.status(paths, container)[0] == "running"


def start(paths: Paths, name: str) -> str:
    """The infra container first (the others join its namespaces), then each container of the pod."""
    pod = pods.load(paths, name)
    infra = pods.infra(paths, pod)
    if infra is None:
        raise ContainerError(f'pod "{pod.name}" has no infra container (it was removed); '
                             "remove the pod (mini-engine pod rm) and make it again")
    if pod.cgroup:  # made again if a prune took it while the pod was stopped
        runtime.make_parent_cgroup(pod.cgroup, pod.resources)
    for container in [infra, *pods.members(paths, pod)]:
        if not _running(paths, container):
            try:
                runs.start(paths, container.id, announce=False)
            except containers.AlreadyRunning:
                pass  # started by someone else meanwhile
    return pod.id


def stop(paths: Paths, name: str, timeout: int) -> str:
    """The pod's containers, then the infra container (pause exits on SIGTERM)."""
    pod = pods.load(paths, name)
    for container in pods.members(paths, pod):
        manage.stop(paths, container.id, timeout)
    infra = pods.infra(paths, pod)
    if infra is not None:
        manage.stop(paths, infra.id, timeout)
    return pod.id


def kill(paths: Paths, name: str, sig: str) -> str:
    """The signal to every running container of the pod, the infra container last."""
    pod = pods.load(paths, name)
    number = parse_signal(sig)
    infra = pods.infra(paths, pod)
    for container in [*pods.members(paths, pod), *([infra] if infra else [])]:
        if _running(paths, container):
            runtime.of(paths, container.record.runtime).kill(container.id, number)
    return pod.id


# [book:pod-rm]
def rm(paths: Paths, name: str, force: bool) -> str:
    """``pod rm``: the pod and its containers; running ones only with ``-f``, killed first."""
    pod = pods.load(paths, name)
    infra = pods.infra(paths, pod)
    everything = [*pods.members(paths, pod), *([infra] if infra else [])]
    running = [c for c in everything if _running(paths, c) or containers.engine_alive(c.record)]
    if running and not force:
        names = ", ".join(c.record.name or c.id[:12] for c in running)
        raise ContainerError(f'cannot remove pod "{pod.name}": it has running containers ({names}); '
                             "stop the pod first (mini-engine pod stop) or remove it with -f")
    for container in everything:  # the infra container last: the others are in its namespaces
        manage.rm(paths, container.id, force)
    if pod.cgroup:
        runtime.remove_cgroup(pod.cgroup)
    pods.remove_record(paths, pod)
    return pod.id
# [/book:pod-rm]


def infra_owner(paths: Paths, name: str) -> pods.PodRecord | None:
    """The pod whose infra container ``name`` is, if it is one (``rm`` of it alone is refused)."""
    try:
        container = containers.load(paths, name)
    except ContainerError:
        return None
    return next((p for p in pods.all_pods(paths) if p.infra_id == container.id), None)


def inspect(paths: Paths, name: str) -> dict[str, Any]:
    pod = pods.load(paths, name)
    status, reason = pods.status(paths, pod)
    infra = pods.infra(paths, pod)
    listed = [*([infra] if infra else []), *pods.members(paths, pod)]
    return {
        "Id": pod.id, "Name": pod.name, "Created": pod.created, "State": status, "Error": reason,
        "Hostname": pod.hostname, "SharedNamespaces": pod.share, "Network": pod.network,
        "InfraContainerID": pod.infra_id or "",
        "InfraConfig": {"Image": pod.infra_image, "PortBindings": pod.publish,
                        "Ports": (infra.record.network_settings.ports
                                  if infra and infra.record.network_settings else [])},
        "CgroupPath": pod.cgroup or "", "Resources": pod.resources,
        "NumContainers": len(listed),
        "Containers": [{"Id": c.id, "Name": c.record.name or "", "State": containers.status(paths, c)[0]}
                       for c in listed],
    }


def ps(paths: Paths, fmt: str) -> int:
    rows = []
    for pod in pods.all_pods(paths):
        status, reason = pods.status(paths, pod)
        rows.append((pod, status, reason, len(pods.members(paths, pod)) + (1 if pod.infra_id else 0)))
    if fmt == "json":
        print(json.dumps([dict(pod.to_json(), status=status, error=reason, containers=count)
                          for pod, status, reason, count in rows], indent=2))
        return 0
    print(f"{'POD ID':<14}{'NAME':<20}{'STATUS':<44}{'CREATED':<21}{'INFRA ID':<14}# OF CONTAINERS")
    for pod, status, reason, count in rows:
        shown = f"{status} ({reason})" if reason else status
        print(f"{pod.id[:12]:<14}{pod.name:<20}{shown:<44}{pod.created[:19]:<21}"
              f"{(pod.infra_id or '')[:12]:<14}{count}")
    return 0


def top(paths: Paths, name: str) -> int:
    """Every process of every running container of the pod, as the host numbers them."""
    pod = pods.load(paths, name)
    infra = pods.infra(paths, pod)
    print(f"{'CONTAINER':<24}{'PID':<10}CMD")
    for container in [*([infra] if infra else []), *pods.members(paths, pod)]:
        if not _running(paths, container):
            continue
        for pid in runtime.of(paths, container.record.runtime).processes(container.id):
            cmd = procfs.command_line(pid)
            if cmd is not None:  # None: exited since
                print(f"{(container.record.name or container.id[:12]):<24}{pid:<10}{cmd}")
    return 0


def logs(paths: Paths, name: str, tail: int | None) -> int:
    """The logs of the pod's containers, merged in time order, each line led by its container's name."""
    from mini_engine.containers import logfile

    pod = pods.load(paths, name)
    entries = []
    for container in pods.members(paths, pod):
        label = container.record.name or container.id[:12]
        entries += [(stamp, stream, label, text)
                    for stamp, stream, text in logfile.read(os.path.join(container.bundle, "ctr.log"))]
    entries.sort(key=lambda entry: entry[0])  # one clock, one format: text order is time order
    for _, stream, label, text in entries[max(0, len(entries) - tail):] if tail is not None else entries:
        (sys.stdout if stream == "stdout" else sys.stderr).write(f"{label} {text}\n")
    return 0
