"""``version`` and ``info``: what this engine is, and what this host gives it, in docker's shape.

Chapter 00 mentions this module. ``docker info`` answers from the daemon:
how many containers and images, the storage driver, the cgroup version, the
kernel. The engine has no daemon; ``info`` asks the same places each
command does (the store, the containers' records, the kernel through
``doctor``'s checks) and names its fields as docker does, so that
``mini-engine info --format '{{.CgroupVersion}}'`` answers like
``docker info --format '{{.CgroupVersion}}'``.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from mini_engine.base.defaults import OCI_VERSION
from mini_engine.paths import Paths

VERSION = "0.1.0"

# Python's names for machines, as Go's GOARCH says them (docker's Arch).
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


# docker info's SecurityOptions, and the feature of doctor's that gives each.
SECURITY = (("seccomp", "seccomp"), ("userns", "namespace user"))


def version(runtime_name: str | None) -> dict[str, Any]:
    """``docker version``'s two halves: the command line, and the engine with its runtime."""
    arch = GOARCH.get(platform.machine(), platform.machine())
    client = {"Version": VERSION, "PythonVersion": platform.python_version(), "Os": "linux", "Arch": arch}
    server = {"Version": VERSION, "KernelVersion": platform.release(), "Os": "linux", "Arch": arch,
              "Runtime": runtime_name or "mini-runc (in-process)", "OCIRuntimeSpec": OCI_VERSION}
    return {"Client": client, "Server": server}


def print_version(data: dict[str, Any]) -> None:
    for title, part in (("Client: mini-engine", data["Client"]), ("Engine: mini-engine", data["Server"])):
        print(title)
        for key, value in part.items():
            print(f" {key + ':':<16}{value}")


def _cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def info(paths: Paths, runtime_name: str | None) -> dict[str, Any]:
    """``docker info``'s fields that mean something here, and ``doctor``'s verdicts."""
    from mini_engine import doctor
    from mini_engine.containers import listing
    from mini_engine.images.store import Store

    listed = listing.containers_listed(paths, True, {}, None, paused=True)
    states = [c.status for c in listed]
    features = doctor.features()
    kernel = {f.name: f.ok for f in features}
    meminfo = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            meminfo[key] = value.split()[0]
    return {
        "Containers": len(listed),
        "ContainersRunning": states.count("running"),
        "ContainersPaused": states.count("paused"),
        "ContainersStopped": states.count("exited") + states.count("created"),
        "Images": len(Store(paths.root).images()),
        "Driver": "overlay",
        "DockerRootDir": paths.root,
        "RunRoot": paths.runtime_state,
        "DefaultRuntime": runtime_name or "mini-runc (in-process)",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": _cgroup_version(),
        "KernelVersion": platform.release(),
        "OperatingSystem": _os_name(),
        "OSType": "linux",
        "Architecture": platform.machine(),
        "NCPU": os.cpu_count() or 0,
        "MemTotal": int(meminfo.get("MemTotal", 0)) * 1024,
        "Name": platform.node(),
        "ServerVersion": VERSION,
        "PythonVersion": sys.version.split()[0],
        "SecurityOptions": [f"name={name}" for name, feature in SECURITY if kernel.get(feature)],
        "Kernel": kernel,
        "Stages": {f"{v['number']} {v['slug']}": v["works"] for v in doctor.verdicts(features)},
    }


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.partition("=")[2].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def print_info(data: dict[str, Any]) -> None:
    """docker info's layout: a line per field, the kernel's features and the stages below."""
    print("Engine:")
    for key, value in data.items():
        if isinstance(value, dict):
            continue
        shown = ", ".join(value) if isinstance(value, list) else value
        print(f" {key + ':':<20}{shown}")
    print(" Kernel features:")
    for name, ok in data["Kernel"].items():
        print(f"  {'ok' if ok else 'NO':<4}{name}")
    print(" Stages (mini-engine doctor says why):")
    for stage, works in data["Stages"].items():
        print(f"  {stage:<16}{works}")
