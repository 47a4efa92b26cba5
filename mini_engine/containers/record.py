"""The engine's containers on disk: one OCI bundle per container.

Chapter 00 reads this module. ``<root>/containers/<id>/`` holds the bundle
(``config.json`` and, from stage 1 on, ``rootfs/``) and ``container.json``,
the engine's own record (image, command, status, exit code), which
``mini-engine ps`` lists.

Until the overlayfs chapter, each container gets a full copy of its image's
root filesystem, so that what it writes stays its own. From chapter 04 on,
``rootfs/`` is an overlay mount instead: the image's layers below, the
container's own ``upper/`` (and the kernel's ``work/``) above, mounted
before the runtime is called and unmounted when the container ends, as
podman does.
"""

from __future__ import annotations

import datetime
import fcntl
import functools
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, get_args, get_type_hints

from mini_engine.base import files, procfs
from mini_engine.base.errors import ContainerError
from mini_engine.paths import Paths, bundle_access
from mini_engine.stages import CHROOT, Stage

# container.json keeps docker's names: a field's name in CamelCase, but for these.
KEYS = {"oom_killed": "OOMKilled", "ip_address": "IPAddress"}


def _key(name: str) -> str:
    return KEYS.get(name) or "".join(part.capitalize() for part in name.split("_"))


@functools.cache
def _nested(kind: type) -> dict[str, type]:
    """The fields of ``kind`` that are records of their own (``State``), and their types."""
    hints = get_type_hints(kind)
    return {name: inner for name, hint in hints.items()
            for inner in (hint, *get_args(hint)) if isinstance(inner, type) and is_dataclass(inner)}


def _to_json(record: Any) -> dict[str, Any]:
    """A record as container.json has it: a field that is None is not known (yet), and left out."""
    return {_key(f.name): _to_json(value) if is_dataclass(value) else value
            for f in fields(record) if (value := getattr(record, f.name)) is not None}


def _from_json(kind: Any, data: dict[str, Any]) -> Any:
    """The record of ``kind`` in ``data``; a key not there (an older engine's record) keeps its default."""
    nested = _nested(kind)
    values = {}
    for f in fields(kind):
        if _key(f.name) in data:
            value = data[_key(f.name)]
            values[f.name] = _from_json(nested[f.name], value) if f.name in nested else value
    return kind(**values)


@dataclass
class State:
    """Where the container is in its life, and who runs it (docker's ``State``)."""

    status: str = "created"  # created, running, exited
    pid: int | None = None  # its process, from start on
    # The engine (or monitor) that runs it, by pid *and* start time (a pid is reused).
    engine_pid: int | None = None
    engine_started: int | None = None
    started_at: str | None = None
    exit_code: int = 0
    oom_killed: bool = False
    finished_at: str | None = None

    def stamp(self) -> None:
        """This process runs the container from now on."""
        self.engine_pid = os.getpid()
        self.engine_started = procfs.start_time(self.engine_pid)


@dataclass
class ContainerConfig:
    """What the container runs (docker's ``Config``), as ``inspect`` shows it."""

    cmd: list[str]
    image: str
    hostname: str
    restart_policy: str
    labels: dict[str, str] | None = None  # the image's, then run's --label
    stop_signal: str | None = None  # --stop-signal, or the image's StopSignal: what stop sends first
    stop_timeout: int | None = None  # --stop-timeout: stop's wait before SIGKILL, when stop has no -t


@dataclass
class NetworkSettings:
    """Stage 7: where the container is on its bridge network."""

    network: str
    ip_address: str
    gateway: str
    ports: list[str]  # 0.0.0.0:8080->80/tcp
    # Every network it is on, once `network connect` has joined it to another: name ->
    # IPAddress, Gateway, Interface, Aliases (docker's NetworkSettings.Networks).
    networks: dict[str, dict[str, Any]] | None = None


@dataclass
class SavedRun:
    """Stage 8: what ``run`` was asked for, so that ``start`` can run the container again."""

    request: dict[str, Any]  # containers/run.py's Request, as JSON
    stage: int


@dataclass
class Record:
    """The engine's record of a container: its ``container.json``."""

    id: str
    image: str  # as the user typed it; "" for --rootfs
    created: str
    stage: int
    state: State
    lowers: list[str] | None = None  # stage 4 on: its layers, top first
    image_id: str | None = None  # stage 5 on: rmi keeps what a container uses
    name: str | None = None
    mounts: list[dict[str, Any]] = field(default_factory=list)  # stage 8: as inspect shows them
    config: ContainerConfig | None = None
    run: SavedRun | None = None
    id_map: dict[str, Any] | None = None  # stage 6, --userns: uid and gid maps
    network_settings: NetworkSettings | None = None
    restart_count: int = 0
    runtime: dict[str, str] | None = None  # the OCI runtime it was made with (Name, Path); None: in-process
    pod: str | None = None  # stage 10: the id of the pod it belongs to (containers/pods.py)

    def to_json(self) -> dict[str, Any]:
        return _to_json(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        record: Record = _from_json(cls, data)
        return record


@dataclass
class Container:
    id: str
    bundle: str
    record: Record

    def save(self) -> None:
        files.write_json(os.path.join(self.bundle, "container.json"), self.record.to_json())


# What commands other than the container's own engine change while it runs: rename,
# update (its limits, in the saved run), network connect and disconnect.
CHANGED_BY_OTHERS = ("name", "run", "network_settings")


def reread(container: Container) -> None:
    """Take those fields from the record on disk, before the engine that runs the
    container writes its own copy of the record over it (the exit, a restart)."""
    try:
        with open(os.path.join(container.bundle, "container.json")) as f:
            current = Record.from_json(json.load(f))
    except (OSError, ValueError):
        return  # removed meanwhile (rm -f): nothing to keep
    for name in CHANGED_BY_OTHERS:
        setattr(container.record, name, getattr(current, name))


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def new_id() -> str:
    """64 hex digits, like docker's; the first 12 are the short id."""
    return secrets.token_hex(32)


def create(paths: Paths, container_id: str, image: str, source_rootfs: str | None,
           stage: Stage, lowers: list[str] | None = None) -> Container:
    """Make the bundle directory; copy the rootfs in (stages 1-3) or record
    the layers to mount (``lowers``, top first, relative to the engine's root)."""
    bundle = os.path.join(paths.containers, container_id)
    if not os.path.isdir(paths.containers):
        paths.secure()
    # 0700: the container's environment and output are its owner's
    # (write_config opens it to the container's root, with --userns).
    os.mkdir(bundle, 0o700)
    try:
        # The record first (written whole, by rename): a bundle without one was
        # never more than an empty directory, and prune may remove it.
        record = Record(container_id, image, now(), stage.number, State(), lowers=lowers)
        # The engine that makes it, from the first moment: until it is
        # done, nobody else may remove or prune the container.
        record.state.stamp()
        container = Container(container_id, bundle, record)
        container.save()
        if lowers is not None:
            for name in ("rootfs", "upper", "work"):
                os.mkdir(os.path.join(bundle, name), 0o755)
        elif source_rootfs is not None and stage.has(CHROOT):
            # symlinks=True: busybox's applets are links to /bin/busybox,
            # which must point into the container's root, not be followed here.
            shutil.copytree(source_rootfs, os.path.join(bundle, "rootfs"), symlinks=True)
    except BaseException:
        shutil.rmtree(bundle, ignore_errors=True)
        raise
    return container


# [book:mount-rootfs]
def mount_rootfs(paths: Paths, container: Container) -> str:
    """Mount the container's overlay on ``rootfs/`` (stage 4 on); return that path."""
    from mini_engine.containers import overlay

    target = os.path.join(container.bundle, "rootfs")
    if os.path.ismount(target):
        return target
    lowers, cwd = container.record.lowers or [], paths.root
    idmap = container.record.id_map  # stage 6
    if idmap:  # stage 6, --userns: the layers seen through the container's uid map
        from mini_engine.containers import idmap as idmapping

        # 0700: through these mounts the image's files belong to the container's
        # uid range; a host user with such a uid must not reach the layers.
        staging = os.path.join(container.bundle, "lowers")
        os.makedirs(staging, mode=0o700, exist_ok=True)
        os.chmod(staging, 0o700)
        mapped = idmapping.map_layers(lowers, paths.root, staging, {"linux": idmap})
        lowers, cwd = [os.path.relpath(m, container.bundle) for m in mapped], container.bundle
        root_uid, root_gid = idmap["uidMappings"][0]["hostID"], idmap["gidMappings"][0]["hostID"]
        os.chown(os.path.join(container.bundle, "upper"), root_uid, root_gid)
    init = os.path.join(container.bundle, "init")
    if os.path.isdir(init):  # stage 7: the engine's own layer, topmost of the lowers
        lowers = [os.path.relpath(init, cwd), *lowers]
    try:
        overlay.mount(lowers, os.path.join(container.bundle, "upper"),
                      os.path.join(container.bundle, "work"), target, cwd=cwd)
    except BaseException:
        unmount_rootfs(container)
        raise
    return target
# [/book:mount-rootfs]


# [book:init-layer]
def make_init_layer(container: Container, files: list[str]) -> None:
    """An empty file for each path the engine bind-mounts over (/etc/hosts...), in a
    layer of the container's own, below its upper: what docker calls the init layer.

    The mount points are then part of no image and of none of the container's
    own changes, so ``diff`` shows only what the container did.
    """
    init = os.path.join(container.bundle, "init")
    for name in files:
        path = os.path.join(init, name.lstrip("/"))
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with open(path, "w"):
            pass
        os.chmod(path, 0o644)
# [/book:init-layer]


def unmount_rootfs(container: Container) -> None:
    if container.record.lowers is not None:
        from mini_engine.containers import overlay

        overlay.unmount(os.path.join(container.bundle, "rootfs"))
    mapped = os.path.join(container.bundle, "lowers")
    if os.path.isdir(mapped):
        from mini_engine.containers import idmap

        idmap.unmap_layers([os.path.join(mapped, name) for name in os.listdir(mapped)])


def lower_dirs(paths: Paths, container: Container) -> list[str]:
    """The container's layers as absolute paths, top first."""
    return [os.path.join(paths.root, lower) for lower in container.record.lowers or []]


def write_config(container: Container, config: dict[str, Any]) -> None:
    """The bundle's config.json, 0600; the bundle open to whom the config says must walk in."""
    files.write_json(os.path.join(container.bundle, "config.json"), config)
    bundle_access(container.bundle, config)


def load(paths: Paths, name: str) -> Container:
    """The container whose id is ``name``, whose ``--name`` is ``name``, or whose id
    starts with ``name`` (docker's short ids), in that order."""
    ids = _ids(paths)
    matches = [name] if name in ids else []
    owner = name_owner(paths, name) if not matches else None
    if owner:
        matches = [owner]
    if not matches and name:
        matches = [c for c in ids if c.startswith(name)]
    if len(matches) != 1:
        why = "is ambiguous" if matches else "does not exist"
        raise ContainerError(f'container "{name}" {why}')
    bundle = os.path.join(paths.containers, matches[0])
    with open(os.path.join(bundle, "container.json")) as f:
        return Container(matches[0], bundle, Record.from_json(json.load(f)))


# [book:status]
def status(paths: Paths, container: Container) -> tuple[str, str]:
    """The container's status, as the kernel has it, and why nobody watches it, if nobody does.

    The record says "running" from start on; the engine (or the monitor)
    that waits for the container rewrites it when the container exits. If
    that engine was killed (the same pid *and* start time are gone), the
    record can no longer be believed, and the runtime's state decides: the
    container's process still runs (an orphan: nobody will log its exit or
    take its network down), or it has exited too, with no exit code known.
    """
    st = container.record.state
    if st.status != "running" or engine_alive(container.record):
        return st.status, ""
    orphaned = f"its engine (pid {st.engine_pid}) is gone"
    from mini_engine.containers import runtime

    # The runtime it was made with; if it has forgotten the container, nothing of it runs.
    running = runtime.of(paths, container.record.runtime).running(container.id)
    return ("running" if running else "exited"), orphaned
# [/book:status]


# [book:claim]
def claim(paths: Paths, name: str) -> Container:
    """Take an existing container for this engine (``start``); refused while
    another engine (or monitor) runs it or is starting it."""
    container = load(paths, name)
    bundle = os.open(container.bundle, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # Two `start`s at once: the second waits here, then finds the first's stamp.
        fcntl.flock(bundle, fcntl.LOCK_EX)
        container = load(paths, container.id)
        if engine_alive(container.record) or status(paths, container)[0] == "running":
            raise AlreadyRunning(container.id, f'container "{name}" is already running')
        # From now on prune and rm leave it alone, as they do a container being made.
        container.record.state.stamp()
        container.save()
        clear_stopped(container)  # started again: its restart policy holds again
    finally:
        os.close(bundle)
    return container
# [/book:claim]


# [book:stopped-by-user]
def mark_stopped(container: Container) -> None:
    """``stop`` (and ``rm -f``) says, before its signal, that the container's exit is wanted:
    its monitor restarts it no more, whatever ``--restart`` says (docker's HasBeenManuallyStopped).
    A file of its own, not a field of the record, which the monitor rewrites whole meanwhile."""
    with open(os.path.join(container.bundle, STOPPED), "w"):
        pass


def stopped_by_user(container: Container) -> bool:
    return os.path.exists(os.path.join(container.bundle, STOPPED))


def clear_stopped(container: Container) -> None:
    try:
        os.unlink(os.path.join(container.bundle, STOPPED))
    except FileNotFoundError:
        pass
# [/book:stopped-by-user]


STOPPED = "stopped-by-user"


class AlreadyRunning(ContainerError):
    """``claim`` of a running container: for ``start``, nothing to do (docker: HTTP 304)."""

    def __init__(self, container_id: str, message: str) -> None:
        super().__init__(message)
        self.container_id = container_id


def engine_alive(record: Record) -> bool:
    """Does the engine (or monitor) that ran this container still run?"""
    return procfs.same_process(record.state.engine_pid, record.state.engine_started)


ADJECTIVES = ("brave", "calm", "eager", "fond", "gentle", "keen", "lucid", "merry", "nifty", "quiet",
              "sharp", "sleepy", "tender", "vivid", "wise", "zealous")
PIONEERS = ("babbage", "bell", "cerf", "dijkstra", "hamilton", "hopper", "kahn", "knuth", "lamport",
            "liskov", "lovelace", "perlman", "ritchie", "thompson", "torvalds", "turing")


def generate_name(paths: Paths, container_id: str) -> str:
    """A free name like docker's, an adjective and a pioneer of computing; reserved."""
    for attempt in range(100):
        name = f"{secrets.choice(ADJECTIVES)}_{secrets.choice(PIONEERS)}"
        if attempt >= 50:
            name += f"_{secrets.token_hex(3)}"
        if reserve_name(paths, name, container_id):
            return name
    raise ContainerError("no free container name found")


NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")  # docker's rule for names


def check_name(paths: Paths, name: str) -> None:
    """A ``--name`` must be well formed and nobody else's."""
    if not NAME.match(name) or len(name) > 64:
        raise ContainerError(f'--name "{name}": use letters, digits, "_", "." and "-" '
                             "(first a letter or digit), at most 64")
    owner = name_owner(paths, name)
    if owner:
        raise ContainerError(f'the name "{name}" is in use by container {owner[:12]}; '
                             "remove it first (mini-engine rm)")


def _ids(paths: Paths) -> list[str]:
    try:
        return sorted(os.listdir(paths.containers))
    except FileNotFoundError:
        return []


def all_ids(paths: Paths) -> list[str]:
    return [c for c in _ids(paths) if not c.startswith(".")]


def unrecorded(paths: Paths) -> list[str]:
    """Bundle directories with no record in them (an engine killed in ``create``)."""
    return [c for c in all_ids(paths)
            if not os.path.exists(os.path.join(paths.containers, c, "container.json"))]


def all_containers(paths: Paths) -> list[Container]:
    out = []
    for container_id in _ids(paths):
        bundle = os.path.join(paths.containers, container_id)
        try:
            with open(os.path.join(bundle, "container.json")) as f:
                out.append(Container(container_id, bundle, Record.from_json(json.load(f))))
        except (OSError, ValueError):
            continue  # half made or half removed by another process
    return out


def images_in_use(paths: Paths, tags: dict[str, str]) -> dict[str, list[str]]:
    """Image id -> the containers that use it; ``tags`` (name -> id, the store's)
    places a container recorded by name only, as records before image ids were."""
    from mini_engine.images import reference

    used: dict[str, list[str]] = {}
    for container in all_containers(paths):
        image_id = container.record.image_id
        if image_id is None and container.record.image:
            try:
                image_id = tags.get(str(reference.parse(container.record.image)))
            except ContainerError:
                continue
        if image_id:
            used.setdefault(image_id, []).append(container.id)
    return used


# [book:reserve-name]
def reserve_name(paths: Paths, name: str, container_id: str) -> bool:
    """Claim ``name`` for the container: the file ``names/NAME`` holds its id.

    The file is written whole under a name of its own, then link(2)ed into
    place: link fails if ``names/NAME`` exists, so of two engines asked for
    one name at the same moment exactly one gets it, and nobody ever reads
    a claim half written. A claim whose container is gone (removed by hand,
    or by a crash halfway) is taken over. Returns False if the name is taken.
    """
    directory = os.path.join(paths.root, "names")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path, mine = os.path.join(directory, name), os.path.join(directory, f".claim-{container_id}")
    with open(mine, "w") as f:
        f.write(container_id)
    try:
        for _ in range(3):
            try:
                os.link(mine, path)
                return True
            except FileExistsError:
                if name_owner(paths, name):
                    return False
                try:
                    os.unlink(path)  # a claim nobody holds any more
                except FileNotFoundError:
                    pass
        return False
    finally:
        os.unlink(mine)


def name_owner(paths: Paths, name: str) -> str | None:
    """The id of the container that holds ``name``, if one does."""
    if not NAME.match(name):
        return None  # not a name: nor a path to read
    try:
        with open(os.path.join(paths.root, "names", name)) as f:
            owner = f.read()
    except FileNotFoundError:
        return None
    return owner if owner and os.path.isdir(os.path.join(paths.containers, owner)) else None
# [/book:reserve-name]


def release_name(paths: Paths, container: Container) -> None:
    name = container.record.name
    if not name:
        return
    path = os.path.join(paths.root, "names", name)
    try:
        with open(path) as f:
            if f.read() == container.id:
                os.unlink(path)
    except FileNotFoundError:
        pass


def remove(paths: Paths, container: Container) -> None:
    # Unmount first: removing files through a mounted overlay would only
    # add whiteouts, and through a mounted layer would delete the image.
    unmount_rootfs(container)
    if container.record.lowers is not None:
        # Mount points must be empty directories by now: rmdir, never rmtree,
        # so that a mount still there is an error and not a deleted layer.
        mapped = os.path.join(container.bundle, "lowers")
        for name in os.listdir(mapped) if os.path.isdir(mapped) else []:
            _rmdir_mount_point(os.path.join(mapped, name))
        _rmdir_mount_point(os.path.join(container.bundle, "rootfs"))
    shutil.rmtree(container.bundle)
    release_name(paths, container)
    from mini_engine.containers import events

    events.of_container(paths, "destroy", container.record)  # docker's name for rm


def _rmdir_mount_point(path: str) -> None:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ContainerError(f"{path} is still mounted or not empty ({exc.strerror}); "
                             "not removing the container") from None
