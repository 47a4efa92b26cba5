"""Volumes and mounts: ``-v``, ``--tmpfs``, ``--read-only``, ``--init``.

Chapter 08 reads this module. Man pages: mount(8) ("bind mounts",
"shared subtree operations"), tmpfs(5).

What a container writes to its overlay goes when the container does. Data
that must outlive it lives in a *volume*: a directory of the host's,
bind-mounted into the container. ``-v /srv/site:/www:ro`` names one of the
host's own; ``-v data:/var/lib/db`` names a *named volume*, a directory the
engine keeps under ``<root>/volumes/NAME/_data`` (made on first use, as
docker does, or by ``volume create``), which ``volume rm`` removes when no
container uses it any more.

Each bind mount is ``rprivate``: a mount made later on the host under the
source does not appear in the container, nor one made in the container on
the host. ``--tmpfs /run`` mounts a fresh tmpfs, ``--read-only`` makes the
root filesystem read-only (volumes and tmpfs stay writable: that is how a
read-only container gets somewhere to write), and ``--init`` runs a tiny
init as PID 1 (catatonit, bind-mounted from the host) that reaps the
zombies an entrypoint that never waits would leave.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

from mini_engine.paths import Paths
from mini_engine.runtime.errors import ContainerError

NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
INIT_PATHS = ("/usr/bin/catatonit", "/usr/libexec/podman/catatonit", "/usr/bin/tini-static")
INIT_TARGET = "/run/mini-engine-init"


def volume_dir(paths: Paths, name: str) -> str:
    return os.path.join(paths.root, "volumes", name)


# [book:parse-volume]
def parse_volume(paths: Paths, spec: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """One ``-v``: the config.json mount, and the record ``inspect`` shows."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ContainerError(f"-v {spec}: expected SOURCE:DESTINATION[:ro|rw]")
    source, destination, mode = parts[0], parts[1], parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise ContainerError(f"-v {spec}: mode {mode} is not ro or rw")
    if not os.path.isabs(destination) or os.path.normpath(destination) == "/":
        raise ContainerError(f"-v {spec}: the destination must be an absolute path other than /")
    if os.path.isabs(source):
        if not os.path.exists(source):
            raise ContainerError(f"-v {spec}: {source} does not exist on the host")
        kind, name = "bind", ""
    else:
        if not NAME.match(source):
            raise ContainerError(f"-v {spec}: {source} is neither an absolute path nor a volume name")
        kind, name = "volume", source
        source = create(paths, name, quiet_if_there=True)
    options = ["rbind", "rprivate"] + (["ro"] if mode == "ro" else [])
    mount = {"destination": os.path.normpath(destination), "type": "bind", "source": source,
             "options": options}
    record = {"Type": kind, "Name": name, "Source": source, "Destination": mount["destination"],
              "RW": mode == "rw", "Propagation": "rprivate"}
    return mount, record
# [/book:parse-volume]


def parse_tmpfs(spec: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """One ``--tmpfs DESTINATION[:OPTIONS]``: nosuid and nodev, as docker mounts it."""
    destination, _, extra = spec.partition(":")
    if not os.path.isabs(destination) or os.path.normpath(destination) == "/":
        raise ContainerError(f"--tmpfs {spec}: the destination must be an absolute path other than /")
    options = ["nosuid", "nodev", *([o for o in extra.split(",") if o] or ["mode=1777"])]
    mount = {"destination": os.path.normpath(destination), "type": "tmpfs", "source": "tmpfs",
             "options": options}
    return mount, {"Type": "tmpfs", "Source": "", "Destination": mount["destination"], "RW": True}


def init_mount() -> dict[str, Any]:
    """``--init``: the host's catatonit (or tini), read-only at a path of its own."""
    for path in INIT_PATHS:
        if os.path.exists(path):
            return {"destination": INIT_TARGET, "type": "bind", "source": path,
                    "options": ["bind", "ro", "nosuid", "nodev"]}
    raise ContainerError("--init needs catatonit (apt-get install catatonit) or tini-static")


def create(paths: Paths, name: str, quiet_if_there: bool = False) -> str:
    """``volume create NAME``: its data directory."""
    if not NAME.match(name):
        raise ContainerError(f'volume name "{name}": use letters, digits, "_", "." and "-"')
    data = os.path.join(volume_dir(paths, name), "_data")
    if os.path.isdir(data):
        if quiet_if_there:
            return data
        raise ContainerError(f'volume "{name}" already exists')
    os.makedirs(data, mode=0o755, exist_ok=True)
    return data


def all_volumes(paths: Paths) -> list[str]:
    directory = os.path.join(paths.root, "volumes")
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def users(paths: Paths, name: str) -> list[str]:
    """The containers (short ids) whose mounts name the volume."""
    from mini_engine import containers

    return [c.id[:12] for c in containers.all_containers(paths)
            if any(m.get("Name") == name for m in c.record.get("Mounts", []))]


def remove(paths: Paths, name: str) -> None:
    """``volume rm``: refused while a container, running or not, uses it."""
    if name not in all_volumes(paths):
        raise ContainerError(f'volume "{name}" does not exist')
    using = users(paths, name)
    if using:
        raise ContainerError(f'volume "{name}" is in use by container {", ".join(using)}')
    shutil.rmtree(volume_dir(paths, name))
