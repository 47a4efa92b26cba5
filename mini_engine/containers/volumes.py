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

Each bind mount is ``rprivate`` unless ``-v`` says otherwise, as docker's:
a mount made later on the host under the source does not appear in the
container, nor one made in the container on the host. ``rslave`` lets the
host's later mounts in, ``rshared`` lets the container's out as well; the
source must then be on a mount that propagates at all (shared, or a
slave). ``--tmpfs /run`` mounts a fresh tmpfs, ``--read-only`` makes the
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

from mini_engine.base import mountinfo
from mini_engine.base.errors import ContainerError
from mini_engine.paths import Paths

NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
INIT_PATHS = ("/usr/bin/catatonit", "/usr/libexec/podman/catatonit", "/usr/bin/tini-static")


def volume_dir(paths: Paths, name: str) -> str:
    return os.path.join(paths.root, "volumes", name)


PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")


# [book:parse-volume]
def parse_volume(paths: Paths, spec: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """One ``-v SOURCE:DESTINATION[:ro|rw][,PROPAGATION]``: the config.json mount,
    and the record ``inspect`` shows.

    The mount is an ``rbind`` with the propagation (``rprivate`` unless
    given) and ``ro`` if asked; a SOURCE that is not an absolute path is a
    named volume, made on first use (``create(paths, name,
    quiet_if_there=True)``). The record's keys: Type (``bind`` or
    ``volume``), Name (the volume's, or ""), Source, Destination, RW,
    Propagation. Refused with ContainerError, each message starting
    ``-v SPEC: ``, in words the checks compare: ``expected
    SOURCE:DESTINATION[:OPTIONS]``; ``OPTION is neither ro nor rw nor a
    propagation (...)``; ``give ro or rw once, and one propagation at
    most``; ``the destination must be an absolute path other than /``;
    ``SOURCE does not exist on the host``; ``SOURCE is neither an absolute
    path nor a volume name``; ``PROPAGATION is for a directory of the
    host's; a named volume is the engine's own``. A host directory's
    propagation is checked by ``check_propagation``.
    """
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ContainerError(f"-v {spec}: expected SOURCE:DESTINATION[:OPTIONS]")
    source, destination = parts[0], parts[1]
    given = parts[2].split(",") if len(parts) == 3 else []
    for option in given:
        if option not in ("ro", "rw", *PROPAGATIONS):
            raise ContainerError(f"-v {spec}: {option} is neither ro nor rw nor a propagation "
                                 f"({', '.join(PROPAGATIONS)})")
    modes, propagations = [o for o in given if o in ("ro", "rw")], [o for o in given if o in PROPAGATIONS]
    if len(modes) > 1 or len(propagations) > 1:
        raise ContainerError(f"-v {spec}: give ro or rw once, and one propagation at most")
    read_only, propagation = modes == ["ro"], propagations[0] if propagations else "rprivate"
    if not os.path.isabs(destination) or os.path.normpath(destination) == "/":
        raise ContainerError(f"-v {spec}: the destination must be an absolute path other than /")
    if os.path.isabs(source):
        if not os.path.exists(source):
            raise ContainerError(f"-v {spec}: {source} does not exist on the host")
        check_propagation(spec, source, propagation)
        kind, name = "bind", ""
    else:
        if not NAME.match(source):
            raise ContainerError(f"-v {spec}: {source} is neither an absolute path nor a volume name")
        if propagations:
            raise ContainerError(f"-v {spec}: {propagation} is for a directory of the host's; "
                                 "a named volume is the engine's own")
        kind, name = "volume", source
        source = create(paths, name, quiet_if_there=True)
    options = ["rbind", propagation] + (["ro"] if read_only else [])
    mount = {"destination": os.path.normpath(destination), "type": "bind", "source": source,
             "options": options}
    record = {"Type": kind, "Name": name, "Source": source, "Destination": mount["destination"],
              "RW": not read_only, "Propagation": propagation}
    return mount, record
# [/book:parse-volume]


# [book:check-propagation]
def check_propagation(spec: str, source: str, propagation: str) -> None:
    """docker's rule: ``[r]shared`` needs a source on a shared mount, ``[r]slave`` on a
    shared or a slave one; on a private mount nothing would ever propagate."""
    if propagation.lstrip("r") not in ("shared", "slave"):
        return
    # The mount the source lies on, and its propagation tags in mountinfo
    # ("shared:N": in peer group N, "master:N": a slave of it).
    mount = mountinfo.mount_of(source)
    point, tags = mount.mount_point, mount.optional
    wanted = ("shared:",) if propagation.endswith("shared") else ("shared:", "master:")
    if not any(tag.startswith(wanted) for tag in tags):
        kind = "shared" if propagation.endswith("shared") else "shared or slave"
        raise ContainerError(f"-v {spec}: {source} is mounted on {point} but it is not a {kind} mount "
                             f"(mount --make-shared {point} makes it one)")
# [/book:check-propagation]


def parse_tmpfs(spec: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """One ``--tmpfs DESTINATION[:OPTIONS]``: nosuid and nodev, as docker mounts it."""
    destination, _, extra = spec.partition(":")
    if not os.path.isabs(destination) or os.path.normpath(destination) == "/":
        raise ContainerError(f"--tmpfs {spec}: the destination must be an absolute path other than /")
    options = ["nosuid", "nodev", *([o for o in extra.split(",") if o] or ["mode=1777"])]
    mount = {"destination": os.path.normpath(destination), "type": "tmpfs", "source": "tmpfs",
             "options": options}
    return mount, {"Type": "tmpfs", "Source": "", "Destination": mount["destination"], "RW": True}


def init_program() -> str:
    """``--init``: the host's catatonit (or tini), which config.json binds in read-only."""
    for path in INIT_PATHS:
        if os.path.exists(path):
            return path
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
    from mini_engine.containers import record as containers

    return [c.id[:12] for c in containers.all_containers(paths)
            if any(m.get("Name") == name for m in c.record.mounts)]


def remove(paths: Paths, name: str) -> None:
    """``volume rm``: refused while a container, running or not, uses it."""
    if name not in all_volumes(paths):
        raise ContainerError(f'volume "{name}" does not exist')
    using = users(paths, name)
    if using:
        raise ContainerError(f'volume "{name}" is in use by container {", ".join(using)}')
    shutil.rmtree(volume_dir(paths, name))


def inspected(paths: Paths, name: str) -> dict[str, Any]:
    """``volume inspect``: docker's fields for a local volume."""
    import datetime

    if name not in all_volumes(paths):
        raise ContainerError(f'volume "{name}" does not exist')
    made = datetime.datetime.fromtimestamp(os.stat(volume_dir(paths, name)).st_mtime, datetime.UTC)
    return {"Name": name, "Driver": "local", "Mountpoint": os.path.join(volume_dir(paths, name), "_data"),
            "CreatedAt": made.isoformat(timespec="seconds"), "Labels": {}, "Options": {}, "Scope": "local"}


def prune(paths: Paths) -> list[str]:
    """``volume prune``: remove every volume no container (running or not) uses, as podman's."""
    gone = []
    for name in all_volumes(paths):
        if not users(paths, name):
            shutil.rmtree(volume_dir(paths, name))
            gone.append(name)
    return gone
