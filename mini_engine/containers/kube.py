"""``kube play``, ``kube down``, ``generate kube``: a pod from a Kubernetes Pod manifest, and back.

Chapter 10 reads this module. Reference: the Kubernetes API's Pod
(https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/);
podman-kube-play(1), podman-kube-generate(1).

A Pod manifest says what ``pod create`` and ``run --pod`` say on the
command line: the containers, each with its image, command, environment,
ports, limits and volumes, and what to do when one exits. ``kube play``
turns it into those calls; ``generate kube`` writes a manifest of a pod
the engine runs, which ``kube play`` reads back. The engine takes the
fields below and no others: a field it does not know is refused by its
name, never ignored, for a pod that runs without what its author asked
(a liveness probe, a security context) would be worse than no pod.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from typing import Any

from mini_engine import flags
from mini_engine.base.errors import ContainerError
from mini_engine.config.limits import Limits, parse_size, resources
from mini_engine.containers import pod as pods
from mini_engine.containers import pods as pod_commands
from mini_engine.containers import record as containers
from mini_engine.containers import run as runs
from mini_engine.containers import runtime, volumes
from mini_engine.network import ports
from mini_engine.paths import Paths
from mini_engine.stages import Stage

# The fields each part of a Pod may have here.
POD_KEYS = {"apiVersion", "kind", "metadata", "spec"}
METADATA_KEYS = {"name"}
SPEC_KEYS = {"containers", "restartPolicy", "volumes"}
CONTAINER_KEYS = {"name", "image", "command", "args", "env", "ports", "resources", "volumeMounts", "workingDir"}
PORT_KEYS = {"containerPort", "hostPort", "protocol"}
ENV_KEYS = {"name", "value"}
RESOURCES_KEYS = {"limits"}
LIMITS = {"memory", "cpu"}
MOUNT_KEYS = {"name", "mountPath", "readOnly"}
VOLUME_KINDS = {"emptyDir", "hostPath"}
HOST_PATH_KEYS = {"path", "type"}
HOST_PATH_TYPES = {"", "Directory", "DirectoryOrCreate"}
# restartPolicy -> run's --restart, for every container of the pod (Kubernetes' default: Always).
RESTART = {"Always": "always", "OnFailure": "on-failure", "Never": "no"}


def _refuse_unknown(value: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ContainerError(f"{where}: expected a mapping")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ContainerError(f"{where}.{unknown[0]} is not supported (this engine takes "
                             f"{', '.join(sorted(allowed))})")
    return value


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, (str, int, float)) for item in value):
        raise ContainerError(f"{where}: expected a list of strings")
    return [str(item) for item in value]


def read(path: str) -> dict[str, Any]:
    """The Pod in the YAML file ``path``, checked field by field."""
    import yaml  # type: ignore[import-untyped]  # PyYAML: only kube's commands pay for it

    try:
        with open(path) as f:
            documents = [d for d in yaml.safe_load_all(f) if d is not None]
    except OSError as exc:
        raise ContainerError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ContainerError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if len(documents) != 1:
        raise ContainerError(f"{path}: expected one Pod, found {len(documents)} documents")
    manifest = _refuse_unknown(documents[0], POD_KEYS, "Pod")
    if manifest.get("apiVersion") != "v1" or manifest.get("kind") != "Pod":
        raise ContainerError(f"kind {manifest.get('kind')!r} of apiVersion "
                             f"{manifest.get('apiVersion')!r}: only a Pod of apiVersion v1 is supported")
    name = _refuse_unknown(manifest.get("metadata"), METADATA_KEYS, "metadata").get("name")
    if not isinstance(name, str) or not name:
        raise ContainerError("metadata.name: a Pod needs a name")
    spec = _refuse_unknown(manifest.get("spec"), SPEC_KEYS, "spec")
    if spec.get("restartPolicy", "Always") not in RESTART:
        raise ContainerError(f"spec.restartPolicy {spec.get('restartPolicy')!r}: expected "
                             f"{', '.join(RESTART)}")
    for i, volume in enumerate(spec.get("volumes") or []):
        where = f"spec.volumes[{i}]"
        _refuse_unknown(volume, {"name"} | VOLUME_KINDS, where)
        kinds = VOLUME_KINDS & set(volume)
        if not isinstance(volume.get("name"), str) or len(kinds) != 1:
            raise ContainerError(f"{where}: a volume needs a name and one of "
                                 f"{', '.join(sorted(VOLUME_KINDS))}")
        if "emptyDir" in volume:
            _refuse_unknown(volume["emptyDir"] or {}, set(), f"{where}.emptyDir")
        else:
            host = _refuse_unknown(volume["hostPath"], HOST_PATH_KEYS, f"{where}.hostPath")
            if not os.path.isabs(str(host.get("path", ""))) or host.get("type", "") not in HOST_PATH_TYPES:
                raise ContainerError(f"{where}.hostPath: an absolute path, and a type of "
                                     "Directory or DirectoryOrCreate if any")
    containers_ = spec.get("containers")
    if not isinstance(containers_, list) or not containers_:
        raise ContainerError("spec.containers: a Pod needs at least one container")
    for i, container in enumerate(containers_):
        where = f"spec.containers[{i}]"
        _refuse_unknown(container, CONTAINER_KEYS, where)
        if not isinstance(container.get("name"), str) or not isinstance(container.get("image"), str):
            raise ContainerError(f"{where}: a container needs a name and an image")
        for key in ("command", "args"):
            if key in container:
                _strings(container[key], f"{where}.{key}")
        for j, item in enumerate(container.get("env") or []):
            _refuse_unknown(item, ENV_KEYS, f"{where}.env[{j}]")
        for j, port in enumerate(container.get("ports") or []):
            _refuse_unknown(port, PORT_KEYS, f"{where}.ports[{j}]")
        _refuse_unknown(_refuse_unknown(container.get("resources") or {}, RESOURCES_KEYS,
                                        f"{where}.resources").get("limits") or {},
                        LIMITS, f"{where}.resources.limits")
        for j, mount in enumerate(container.get("volumeMounts") or []):
            _refuse_unknown(mount, MOUNT_KEYS, f"{where}.volumeMounts[{j}]")
    return manifest


def _volume_name(pod_name: str, volume: str) -> str:
    """An emptyDir is a named volume of the pod's own, shared by its containers, gone with it."""
    return f"{pod_name}-{volume}"


def _publish(container: dict[str, Any]) -> list[str]:
    """A container's ports with a hostPort, as -p: the pod's (a containerPort alone publishes nothing)."""
    return [f"{port['hostPort']}:{port['containerPort']}/{str(port.get('protocol', 'TCP')).lower()}"
            for port in container.get("ports") or [] if port.get("hostPort")]


def _request(manifest: dict[str, Any], container: dict[str, Any]) -> runs.Request:
    """``run -d --pod`` for one container of the Pod."""
    pod_name, spec = manifest["metadata"]["name"], manifest["spec"]
    command = [str(c) for c in container.get("command") or []]
    limits = (container.get("resources") or {}).get("limits") or {}
    sources = {v["name"]: v for v in spec.get("volumes") or []}
    mounts = []
    for mount in container.get("volumeMounts") or []:
        if mount.get("name") not in sources:
            raise ContainerError(f"volumeMounts: no volume named {mount.get('name')!r} in spec.volumes")
        volume = sources[mount["name"]]
        source = volume["hostPath"]["path"] if "hostPath" in volume else _volume_name(pod_name, volume["name"])
        mounts.append(f"{source}:{mount['mountPath']}" + (":ro" if mount.get("readOnly") else ""))
    memory = limits.get("memory")
    return runs.Request(
        detach=True, pod=pod_name, name=f"{pod_name}-{container['name']}",
        # Kubernetes' command is the image's Entrypoint, its args the Cmd, as docker's are.
        entrypoint=command[0] if command else None,
        args=[container["image"], *command[1:], *[str(a) for a in container.get("args") or []]],
        env=[f"{e['name']}={e.get('value', '')}" for e in container.get("env") or []],
        workdir=container.get("workingDir"), volumes=mounts,
        limits=Limits(memory=_memory(memory) if memory else None,
                      cpus=_cpus(limits["cpu"]) if "cpu" in limits else None),
        restart=RESTART[spec.get("restartPolicy", "Always")])


# Kubernetes' quantities: Ki, Mi, Gi are powers of 2; k, M, G powers of 10.
QUANTITY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 10**3, "M": 10**6, "G": 10**9,
            "T": 10**12}


def _memory(value: Any) -> str:
    """A memory quantity (64Mi, 128M, 67108864) in bytes, as --memory takes them."""
    text = str(value)
    for suffix, factor in QUANTITY.items():
        if text.endswith(suffix) and text[:-len(suffix)].isdigit():
            return str(int(text[:-len(suffix)]) * factor)
    if not text.isdigit():
        raise ContainerError(f"resources.limits.memory {text!r}: expected bytes, or a number with "
                             f"{', '.join(QUANTITY)}")
    return text


def _cpus(value: Any) -> str:
    """Kubernetes' CPU quantity (0.5, or 500m: millicores) as --cpus."""
    text = str(value)
    return str(int(text[:-1]) / 1000) if text.endswith("m") else text


# [book:kube-play]
def play(paths: Paths, stage: Stage, path: str, runtime_name: str | None) -> int:
    """``kube play``: the Pod's pod and its containers, each as ``run -d --pod`` makes it;
    all or nothing."""
    manifest = read(path)
    name, spec = manifest["metadata"]["name"], manifest["spec"]
    requests = [_request(manifest, c) for c in spec["containers"]]
    for request in requests:
        # Every container's flags and limits refused now, not after the first one runs.
        runs.check_flags(request, stage)
        runtime.refuse_missing_controllers(resources(request.limits))
    publish = [p for c in spec["containers"] for p in _publish(c)]
    for item in publish:
        ports.parse(item)
    for volume in spec.get("volumes") or []:
        if volume.get("hostPath", {}).get("type") == "DirectoryOrCreate":
            os.makedirs(volume["hostPath"]["path"], exist_ok=True)
    with ExitStack() as undo:
        made = pod_commands.create(paths, stage, name, publish, None, None, None, Limits(), runtime_name)
        undo.callback(_down, paths, made.name, spec)
        ids = []
        for request in requests:
            runs.run(paths, request, stage, runtime_name, announce=False)
            ids.append(containers.load(paths, request.name or "").id)
        undo.pop_all()
    print(f"Pod:\n{made.id}\nContainers:")
    print("\n".join(ids))
    return 0
# [/book:kube-play]


def _down(paths: Paths, name: str, spec: dict[str, Any]) -> None:
    pod_commands.rm(paths, name, force=True)
    for volume in spec.get("volumes") or []:
        named = _volume_name(name, volume["name"])
        if "emptyDir" in volume and os.path.isdir(volumes.volume_dir(paths, named)):
            volumes.remove(paths, named)


def down(paths: Paths, path: str) -> int:
    """``kube down``: the Pod's pod, its containers and its emptyDir volumes, removed."""
    manifest = read(path)
    gone = pods.load(paths, manifest["metadata"]["name"])  # an unknown pod is an error, before anything goes
    _down(paths, gone.name, manifest["spec"])
    print(f"Pods stopped and removed:\n{gone.id}")
    return 0


# [book:generate-kube]
def generate(paths: Paths, name: str) -> dict[str, Any]:
    """``generate kube``: the Pod manifest of a pod, from what ``run --pod`` was asked for."""
    pod = pods.load(paths, name)
    members = pods.members(paths, pod)
    if not members:
        raise ContainerError(f'pod "{pod.name}" has no containers but its infra container: '
                             "nothing to describe")
    spec: dict[str, Any] = {"containers": []}
    volumes_: dict[str, dict[str, Any]] = {}
    policies = set()
    for i, member in enumerate(members):
        if member.record.run is None:
            raise ContainerError(f"container {member.id[:12]} has no saved run request")
        request: runs.Request = flags.from_json(runs.Request, member.record.run.request)
        short = (member.record.name or member.id[:12]).removeprefix(f"{pod.name}-")
        container: dict[str, Any] = {"name": short, "image": request.args[0]}
        if request.entrypoint:
            container["command"] = [request.entrypoint, *request.args[1:]]
        elif request.args[1:]:
            container["args"] = request.args[1:]
        if request.env:
            container["env"] = [{"name": k, "value": v} for k, _, v in (e.partition("=") for e in request.env)]
        if request.workdir:
            container["workingDir"] = request.workdir
        if i == 0 and pod.publish:  # the pod's ports, on its first container, as podman writes them
            container["ports"] = [_port(item) for item in pod.publish]
        limits: dict[str, Any] = {}
        if request.limits.memory:
            # In bytes: in a Pod, "64m" is 64 thousandths of a byte.
            limits["memory"] = str(parse_size(request.limits.memory, "--memory"))
        if request.limits.cpus:
            limits["cpu"] = request.limits.cpus
        if limits:
            container["resources"] = {"limits": limits}
        mounts = []
        for item in request.volumes:
            source, destination, *options = item.split(":")
            if source not in volumes_:  # a named volume is an emptyDir; a host's directory a hostPath
                hosts = sum(1 for v in volumes_.values() if "hostPath" in v)
                volumes_[source] = ({"name": f"host{hosts}", "hostPath": {"path": source, "type": "Directory"}}
                                    if os.path.isabs(source) else
                                    {"name": source.removeprefix(f"{pod.name}-"), "emptyDir": {}})
            volume = volumes_[source]["name"]
            mounts.append({"name": volume, "mountPath": destination, **({"readOnly": True}
                                                                        if "ro" in options else {})})
        if mounts:
            container["volumeMounts"] = mounts
        policies.add(request.restart.partition(":")[0])
        spec["containers"].append(container)
    if len(policies) > 1:
        raise ContainerError(f'pod "{pod.name}": its containers restart differently '
                             f'({", ".join(sorted(policies))}); a Pod has one restartPolicy')
    spec["restartPolicy"] = {v: k for k, v in RESTART.items()}[policies.pop()]
    if volumes_:
        spec["volumes"] = list(volumes_.values())
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod.name}, "spec": spec}
# [/book:generate-kube]


def _port(item: str) -> dict[str, Any]:
    parsed = ports.parse(item)
    if parsed.host_ip is not None:
        raise ContainerError(f"-p {item}: a Pod's hostPort publishes on every address; this one is on "
                             f"{parsed.host_ip} only")
    return {"containerPort": parsed.port, **({"hostPort": parsed.host_port} if parsed.host_port else {}),
            "protocol": parsed.protocol.upper()}


def write(manifest: dict[str, Any]) -> None:
    import yaml

    sys.stdout.write(yaml.safe_dump(manifest, sort_keys=False))

