"""The engine's containers on disk: one OCI bundle per container.

Chapter 00 reads this module. ``<root>/containers/<id>/`` holds the bundle
(``config.json`` and, from stage 1 on, ``rootfs/``) and ``container.json``,
the engine's own record (image, command, status, exit code), which
``mini-engine ps`` lists.

Until the overlayfs chapter, each container gets a full copy of its image's
root filesystem, so that what it writes stays its own; chapter 4 replaces
the copy with a copy-on-write overlay mount and measures what that saves.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from typing import Any

from mini_engine.paths import Paths
from mini_engine.runtime import state
from mini_engine.runtime.errors import ContainerError


@dataclass
class Container:
    id: str
    bundle: str
    record: dict[str, Any]

    def save(self) -> None:
        state.write_json(os.path.join(self.bundle, "container.json"), self.record)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def new_id() -> str:
    """64 hex digits, like docker's; the first 12 are the short id."""
    return secrets.token_hex(32)


def create(paths: Paths, container_id: str, image: str, source_rootfs: str | None,
           stage: int) -> Container:
    """Make the bundle directory, copy the rootfs in if the stage uses one."""
    bundle = os.path.join(paths.containers, container_id)
    os.makedirs(paths.containers, exist_ok=True)
    # 0711: with --userns the container's root is an unprivileged host uid,
    # and it must still be able to walk through to its rootfs.
    os.mkdir(bundle)
    os.chmod(bundle, 0o711)
    try:
        if source_rootfs is not None and stage >= 1:
            # symlinks=True: busybox's applets are links to /bin/busybox,
            # which must point into the container's root, not be followed here.
            shutil.copytree(source_rootfs, os.path.join(bundle, "rootfs"), symlinks=True)
        record = {"Id": container_id, "Image": image, "Created": now(), "Stage": stage,
                  "State": {"Status": "created", "ExitCode": 0}}
        container = Container(container_id, bundle, record)
        container.save()
    except BaseException:
        shutil.rmtree(bundle, ignore_errors=True)
        raise
    return container


def write_config(container: Container, config: dict[str, Any]) -> None:
    state.write_json(os.path.join(container.bundle, "config.json"), config)


def load(paths: Paths, name: str) -> Container:
    """The container whose id is ``name`` or starts with it (docker's short ids)."""
    matches = [c for c in _ids(paths) if c.startswith(name)] if name else []
    if len(matches) != 1:
        why = "is ambiguous" if matches else "does not exist"
        raise ContainerError(f'container "{name}" {why}')
    bundle = os.path.join(paths.containers, matches[0])
    with open(os.path.join(bundle, "container.json")) as f:
        return Container(matches[0], bundle, json.load(f))


def _ids(paths: Paths) -> list[str]:
    try:
        return sorted(os.listdir(paths.containers))
    except FileNotFoundError:
        return []


def all_containers(paths: Paths) -> list[Container]:
    out = []
    for container_id in _ids(paths):
        try:
            out.append(load(paths, container_id))
        except (OSError, ValueError, ContainerError):
            continue  # half made or half removed by another process
    return out


def remove(paths: Paths, container: Container) -> None:
    shutil.rmtree(container.bundle)
