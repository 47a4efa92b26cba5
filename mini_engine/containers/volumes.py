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

import csv
import hashlib
import os
import re
import shutil
import subprocess
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
def parse_volume(paths: Paths, spec: str, container_id: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """One ``-v SOURCE:DESTINATION[:ro|rw][,PROPAGATION]``: the config.json mount,
    and the record ``inspect`` shows. ``-v /data`` alone: an anonymous volume.

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
    if os.path.isabs(spec) and ":" not in spec:
        return anonymous_volume(paths, spec, container_id, f"-v {spec}")
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


# [book:anonymous-volume]
def anonymous_volume(paths: Paths, destination: str, container_id: str, flag: str
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    """A volume of the container's own at ``destination`` (``-v /data``, an image's VOLUME):
    named by 64 hex digits, as docker's, made when the container is (``make_anonymous``), and
    removed with it by ``--rm``. Its name comes from the container and the destination,
    so that ``start`` finds the same volume again."""
    if not os.path.isabs(destination) or os.path.normpath(destination) == "/":
        raise ContainerError(f"{flag}: the destination must be an absolute path other than /")
    destination = os.path.normpath(destination)
    name = anonymous_name(container_id, destination)
    source = os.path.join(volume_dir(paths, name), "_data")
    mount = {"destination": destination, "type": "bind", "source": source, "options": ["rbind", "rprivate"]}
    return mount, {"Type": "volume", "Name": name, "Source": source, "Destination": destination,
                   "RW": True, "Propagation": ""}
# [/book:anonymous-volume]


def anonymous_name(container_id: str, destination: str) -> str:
    return hashlib.sha256(f"{container_id}\0{destination}".encode()).hexdigest()


def anonymous(container_id: str, records: list[dict[str, Any]]) -> list[str]:
    """The names of the container's anonymous volumes, among its mounts' records."""
    return [r["Name"] for r in records
            if r.get("Type") == "volume" and r.get("Name") == anonymous_name(container_id, r["Destination"])]


def make_anonymous(paths: Paths, container_id: str, records: list[dict[str, Any]]) -> list[str]:
    """Make the container's anonymous volumes not made yet; their names."""
    made = []
    for name in anonymous(container_id, records):
        data = os.path.join(volume_dir(paths, name), "_data")
        if not os.path.isdir(data):
            os.makedirs(data, mode=0o755)
            made.append(name)
    return made


def copy_up(paths: Paths, rootfs: str, records: list[dict[str, Any]], names: list[str]) -> None:
    """A new anonymous volume starts with what the image has at its path, owners and modes kept,
    as docker's does (an image's VOLUME /var/lib/app with its default files). The image's
    directory is found inside ``rootfs`` without following a symlink out of it."""
    from mini_engine.base import rootpath

    for record in records:
        if record.get("Name") not in names:
            continue
        try:
            fd = rootpath.open_in_root(rootfs, record["Destination"])
        except OSError:
            continue  # the image has nothing there
        try:
            source = f"/proc/self/fd/{fd}"
            if not os.path.isdir(source):
                continue
            data = os.path.join(volume_dir(paths, record["Name"]), "_data")
            # cp -a: owners, then modes (a chown after would clear setuid
            # bits), hard links as links, xattrs and times. The descriptor is
            # handed on, so cp reads the same directory at the same number.
            done = subprocess.run(["cp", "-a", "--", f"{source}/.", data], pass_fds=(fd,),
                                  capture_output=True, text=True)
            if done.returncode != 0:
                why = (done.stderr.strip().splitlines() or ["failed"])[-1]
                raise ContainerError(f"volume {record['Destination']}: copying the image's files: {why}")
        finally:
            os.close(fd)


def remove_anonymous(paths: Paths, container_id: str, records: list[dict[str, Any]]) -> None:
    """``--rm`` (and ``rm -v``): the container's anonymous volumes go with it; named ones stay."""
    for name in anonymous(container_id, records):
        shutil.rmtree(volume_dir(paths, name), ignore_errors=True)


def image_volumes(paths: Paths, image_config: dict[str, Any], taken: list[str], container_id: str
                  ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The image's ``Volumes`` (its VOLUME lines) not covered by a mount of ``run``: each an
    anonymous volume, as docker gives it."""
    declared = (image_config.get("config") or {}).get("Volumes") or {}
    if not isinstance(declared, dict):
        raise ContainerError("the image config's Volumes is not an object")
    out = []
    for destination in sorted(declared):
        if os.path.normpath(destination) not in taken:
            out.append(anonymous_volume(paths, destination, container_id, f"the image's VOLUME {destination}"))
    return out


# [book:parse-mount]
def parse_mount(paths: Paths, spec: str, container_id: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """One ``--mount type=bind|volume|tmpfs,source=...,target=...[,readonly][,...]``: docker's
    longer spelling of ``-v`` and ``--tmpfs``, a comma-separated list of KEY[=VALUE]."""
    flag = f"--mount {spec}"
    fields: dict[str, str] = {}
    for item in next(csv.reader([spec])) if spec else []:
        key, sep, value = item.partition("=")
        key = MOUNT_KEYS.get(key.strip().lower(), key.strip().lower())
        if key not in MOUNT_FIELDS:
            raise ContainerError(f"{flag}: unknown key {key!r} (type, source, target, readonly, "
                                 "bind-propagation, volume-nocopy, tmpfs-size, tmpfs-mode)")
        if key in fields:
            raise ContainerError(f"{flag}: {key} is given twice")
        fields[key] = value if sep else ("true" if key in ("readonly", "volume-nocopy") else "")
    kind = fields.get("type", "volume")
    target = fields.get("target")
    if not target:
        raise ContainerError(f"{flag}: target is required (the path in the container)")
    read_only = fields.get("readonly", "false").lower()
    if read_only not in ("true", "false", "1", "0"):
        raise ContainerError(f"{flag}: readonly takes true or false")
    ro = read_only in ("true", "1")
    own = {"bind": {"bind-propagation"}, "volume": {"volume-nocopy"}, "tmpfs": {"tmpfs-size", "tmpfs-mode"}}
    if kind not in own:
        raise ContainerError(f"{flag}: type {kind!r}: expected bind, volume or tmpfs")
    for key in fields.keys() & (set().union(*own.values()) - own[kind]):
        raise ContainerError(f"{flag}: {key} is not an option of type={kind}")
    source = fields.get("source", "")
    if kind == "tmpfs":
        if source:
            raise ContainerError(f"{flag}: a tmpfs has no source")
        options = []
        if "tmpfs-size" in fields:
            from mini_engine.config.limits import parse_size

            options.append(f"size={parse_size(fields['tmpfs-size'], '--mount tmpfs-size') // 1024}k")
        mode = fields.get("tmpfs-mode", "1777")
        if not re.fullmatch(r"[0-7]{3,4}", mode):
            raise ContainerError(f"{flag}: tmpfs-mode {mode!r} is not an octal mode, e.g. 1777")
        mount, record = parse_tmpfs(f"{target}:{','.join([*options, f'mode={mode}'])}")
        return mount, record
    if kind == "bind":
        if not source:
            raise ContainerError(f"{flag}: type=bind needs a source (a path of the host's)")
        if not os.path.isabs(source):
            raise ContainerError(f"{flag}: the source of a bind mount must be an absolute path")
        if not os.path.exists(source):
            # docker's words: a bind mount, unlike -v, makes nothing that is missing.
            raise ContainerError(f"{flag}: bind source path does not exist: {source}")
    elif not source:
        return anonymous_volume(paths, target, container_id, flag)
    elif os.path.isabs(source) or not NAME.match(source):
        raise ContainerError(f"{flag}: the source of type=volume is a volume's name, not {source!r}")
    options = [*([fields["bind-propagation"]] if fields.get("bind-propagation") else []),
               *(["ro"] if ro else [])]
    return parse_volume(paths, f"{source}:{target}" + (f":{','.join(options)}" if options else ""))
# [/book:parse-mount]


MOUNT_KEYS = {"src": "source", "destination": "target", "dst": "target", "ro": "readonly",
              "read-only": "readonly"}
MOUNT_FIELDS = {"type", "source", "target", "readonly", "bind-propagation", "volume-nocopy", "tmpfs-size",
                "tmpfs-mode"}


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
