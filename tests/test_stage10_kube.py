"""Stage 10: a pod from a Kubernetes Pod manifest (kube play), back to one (generate kube), and down.

The manifest's containers must run as it says (command, args, env, a shared
emptyDir, the pod's loopback); what generate kube writes must play back to
the same pod; a field the engine does not take is refused by its name, and
leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Engine, ok

from mini_engine.labkit import wait_until
from mini_engine.runtime import cgroups

pytestmark = [pytest.mark.stage(10), pytest.mark.root]

MANIFEST = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kp"},
    "spec": {
        "containers": [
            # command: the image's Entrypoint; args alone: its Cmd (busybox's is sh), as in Kubernetes.
            {"name": "web", "image": "busybox",
             "command": ["sh", "-c", "mkdir -p /www && echo $GREETING from web > /www/index.html && "
                                     "exec httpd -f -p 127.0.0.1:8080 -h /www"],
             "env": [{"name": "GREETING", "value": "hello"}],
             "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
            {"name": "side", "image": "busybox",
             "args": ["sh", "-c", "until wget -q -O /data/page http://127.0.0.1:8080/; do sleep 0.1; done; "
                                  "cat /data/page; exec sleep 600"],
             "workingDir": "/data",
             "volumeMounts": [{"name": "data", "mountPath": "/data"},
                              {"name": "host0", "mountPath": "/host", "readOnly": True}]},
        ],
        "restartPolicy": "Never",
        "volumes": [{"name": "data", "emptyDir": {}}, {"name": "host0", "hostPath": {"path": "/",
                                                                                        "type": "Directory"}}],
    },
}


def write(tmp_path: Path, manifest: dict[str, Any], name: str = "pod.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(manifest))
    return str(path)


def nothing_left(engine: Engine) -> None:
    assert engine.containers() == []
    for kind in ("pods", "volumes"):
        assert not (engine.root / kind).exists() or os.listdir(engine.root / kind) == [], kind


def test_kube_play_runs_the_pod_generate_writes_it_back_down_removes_it(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, MANIFEST)
    out = ok(engine("kube", "play", path)).splitlines()
    try:
        assert out[0] == "Pod:" and out[2] == "Containers:" and len(out) == 5
        pod = json.loads(ok(engine("pod", "inspect", "kp")))[0]
        assert pod["Id"] == out[1]
        assert [c["Name"] for c in pod["Containers"]] == ["kp-infra", "kp-web", "kp-side"]
        # The side container fetched the page over the pod's loopback into the shared emptyDir.
        assert wait_until(lambda: ok(engine("logs", "kp-side")) == "hello from web\n")
        assert ok(engine("exec", "kp-web", "cat", "/data/page")) == "hello from web\n"
        assert ok(engine("exec", "kp-side", "pwd")) == "/data\n"
        assert config_of(engine, "kp-web")["process"]["args"][:2] == ["sh", "-c"]
        # generate kube: the manifest played, as the engine has it.
        generated = yaml.safe_load(ok(engine("generate", "kube", "kp")))
        assert generated == MANIFEST
        assert yaml.safe_load(ok(engine("kube", "generate", "kp"))) == MANIFEST
        again = write(tmp_path, generated, "generated.yaml")
        down = ok(engine("kube", "down", again))
        assert down == f"Pods stopped and removed:\n{out[1]}\n"
        nothing_left(engine)
        # ... and what generate wrote plays back.
        ok(engine("kube", "play", again))
        assert wait_until(lambda: ok(engine("logs", "kp-side")) == "hello from web\n")
    finally:
        engine("kube", "down", path)
    nothing_left(engine)


def config_of(engine: Engine, name: str) -> dict[str, Any]:
    container_id = json.loads(ok(engine("inspect", name)))[0]["Id"]
    return dict(json.loads((engine.root / "containers" / container_id / "config.json").read_text()))


@pytest.mark.vm
@pytest.mark.skipif(not {"memory", "cpu"} <= cgroups.available(cgroups.mount_point()),
                    reason="needs memory and cpu on cgroup v2: runs in the test VM")
def test_resources_limits_are_the_containers_limits_and_come_back(tmp_path: Path) -> None:
    base = tmp_path / "tmpfs"  # the VM's /tmp is an overlay, where overlays cannot be mounted
    base.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", str(base)], check=True)
    engine = Engine(base / "lib", base / "run")
    manifest = json.loads(json.dumps(MANIFEST))
    manifest["spec"]["containers"][0]["resources"] = {"limits": {"memory": "64Mi", "cpu": "500m"}}
    try:
        ok(engine("kube", "play", write(tmp_path, manifest)))
        resources = config_of(engine, "kp-web")["linux"]["resources"]
        assert resources["memory"]["limit"] == 64 << 20
        assert resources["cpu"] == {"quota": 50000, "period": 100000}
        generated = yaml.safe_load(ok(engine("generate", "kube", "kp")))
        assert generated["spec"]["containers"][0]["resources"] == {"limits": {"memory": str(64 << 20),
                                                                              "cpu": "0.5"}}
    finally:
        engine("kube", "down", write(tmp_path, manifest))
        nothing_left(engine)
        subprocess.run(["umount", "-l", str(base)], check=True)


def with_field(where: str, value: Any) -> dict[str, Any]:
    """MANIFEST with ``value`` at ``where`` (dotted; a number is a list's index)."""
    manifest = json.loads(json.dumps(MANIFEST))
    *path, last = where.split(".")
    node = manifest
    for key in path:
        node = node[int(key)] if key.isdigit() else node[key]
    node[last] = value
    return manifest


@pytest.mark.parametrize("where, value, message", [
    ("spec.containers.0.livenessProbe", {"exec": {"command": ["true"]}},
     "spec.containers[0].livenessProbe is not supported (this engine takes args, command, env, image, name, "
     "ports, resources, volumeMounts, workingDir)"),
    ("spec.hostNetwork", True,
     "spec.hostNetwork is not supported (this engine takes containers, restartPolicy, volumes)"),
    ("metadata.namespace", "prod", "metadata.namespace is not supported (this engine takes name)"),
    ("kind", "Deployment", "kind 'Deployment' of apiVersion 'v1': only a Pod of apiVersion v1 is supported"),
    ("spec.restartPolicy", "Sometimes", "spec.restartPolicy 'Sometimes': expected Always, OnFailure, Never"),
    ("spec.volumes", [{"name": "c", "configMap": {"name": "x"}}],
     "spec.volumes[0].configMap is not supported (this engine takes emptyDir, hostPath, name)"),
    ("spec.containers.1.resources", {"limits": {"nvidia.com/gpu": 1}},
     "spec.containers[1].resources.limits.nvidia.com/gpu is not supported (this engine takes cpu, memory)"),
])
def test_a_field_the_engine_does_not_take_is_refused_by_name(engine: Engine, tmp_path: Path, where: str,
                                                             value: Any, message: str) -> None:
    result = engine("kube", "play", write(tmp_path, with_field(where, value)))
    assert (result.returncode, result.stderr) == (125, f"mini-engine: {message}\n")
    nothing_left(engine)


def test_a_container_that_cannot_run_leaves_no_pod(engine: Engine, tmp_path: Path) -> None:
    manifest = json.loads(json.dumps(MANIFEST))
    manifest["spec"]["containers"][1]["image"] = "localhost/no-such-image"
    result = engine("kube", "play", write(tmp_path, manifest))
    assert result.returncode == 125
    assert result.stderr.startswith('mini-engine: image "localhost/no-such-image" is not here')
    nothing_left(engine)
