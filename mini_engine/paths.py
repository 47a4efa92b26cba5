"""Where the engine keeps things on disk, and who may read them.

- the engine's store (images, containers): ``/var/lib/mini-engine``,
  moved with ``--root`` or ``MINI_ENGINE_ROOT``;
- the runtime's state (``state.json`` per running container):
  ``/run/mini-engine``, moved with ``--runroot`` or ``MINI_ENGINE_RUNROOT``.

/run is a tmpfs: after a reboot no container runs, and no state claims one does.

Chapter 02 reads ``Paths.secure``. Man pages: chmod(2), chown(2),
path_resolution(7), user_namespaces(7).

What a container was given is a secret: its environment sits in
``config.json`` and ``container.json``, its output in ``ctr.log``. So both
roots are closed to the host's users, as docker closes /var/lib/docker:
mode 0710, and each container's directory 0700, its records 0600. The
group bit is for one user only: with ``--userns auto`` the container's root
is an unprivileged host uid, and the runtime builds the container's
filesystem *as that uid*, after it entered the user namespace. To reach
``rootfs/`` it must search every directory on the way (path_resolution(7)),
so the roots and ``containers/`` belong to the group its gid maps to, and
so does the directory of each container that has a user namespace (docker's
userns-remap does the same). Rootless, everything is the user's own: 0700.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any

DEFAULT_ROOT = "/var/lib/mini-engine"
DEFAULT_RUNROOT = "/run/mini-engine"

PRIVATE = 0o700     # a directory of root's alone
PASSAGE = 0o710     # root's; its group may pass through, not list
SECRET = 0o600      # a file of root's alone: records, configs, logs


@dataclass(frozen=True)
class Paths:
    root: str
    runroot: str

    @classmethod
    def from_options(cls, root: str | None, runroot: str | None) -> Paths:
        default_root, default_runroot = DEFAULT_ROOT, DEFAULT_RUNROOT
        if os.geteuid() != 0:  # rootless (chapter 06): the user's own directories, as podman's
            home = os.path.expanduser("~")
            default_root = os.path.join(os.environ.get("XDG_DATA_HOME") or f"{home}/.local/share",
                                        "mini-engine")
            runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/mini-engine-{os.getuid()}"
            default_runroot = os.path.join(runtime_dir, "mini-engine")
        return cls(
            os.path.abspath(root or os.environ.get("MINI_ENGINE_ROOT") or default_root),
            os.path.abspath(runroot or os.environ.get("MINI_ENGINE_RUNROOT") or default_runroot),
        )

    @property
    def containers(self) -> str:
        return os.path.join(self.root, "containers")

    @property
    def pods(self) -> str:
        """Stage 10: one directory per pod, its record ``pod.json`` in it (containers/pod.py)."""
        return os.path.join(self.root, "pods")

    @property
    def bundled(self) -> str:
        """The bundled image's root filesystem, before it is an image in the store."""
        return os.path.join(self.root, "bundled")

    @property
    def runtime_state(self) -> str:
        return os.path.join(self.runroot, "runtime")

    # [book:secure]
    def secure(self) -> None:
        """Make the engine's directories, closed to other users; tighten an older install's."""
        group = mapped_root_group()
        for directory, passage in ((self.root, True), (self.containers, True),
                                   (self.runroot, True), (self.runtime_state, False)):
            try:
                os.makedirs(directory, mode=PRIVATE, exist_ok=True)
                st = os.stat(directory)
            except PermissionError:
                continue  # another user's engine (a look with --root): not ours to change
            if st.st_uid != os.geteuid():
                continue
            wanted = (PASSAGE, group) if passage and group is not None else (PRIVATE, st.st_gid)
            if (stat.S_IMODE(st.st_mode), st.st_gid) == wanted:
                continue
            if directory == self.root:
                # Made before this rule: close what is inside first (an engine
                # killed half-way here finds the root still open, and repeats).
                _tighten_old_install(self)
            os.chown(directory, -1, wanted[1])
            os.chmod(directory, wanted[0])
    # [/book:secure]


def mapped_root_group() -> int | None:
    """The host gid of the containers' root group under ``--userns auto`` (None rootless).

    It must search its way to a container's rootfs; nobody else needs the group bit.
    """
    from mini_engine.base import identity

    if identity.rootless():
        return None
    from mini_engine.base.identity import subordinate_range

    return subordinate_range("root", "/etc/subgid")[0]


def bundle_access(bundle: str, config: dict[str, Any]) -> None:
    """A container's directory: root's alone (0700), or, if the container has a user
    namespace, 0710 for the group its root is on the host, which must reach ``rootfs/``."""
    mappings = [m for m in config.get("linux", {}).get("gidMappings", []) if m["containerID"] == 0]
    if mappings and os.geteuid() == 0 and mapped_root_group() is not None:
        os.chown(bundle, -1, mappings[0]["hostID"])
        os.chmod(bundle, PASSAGE)
    else:
        os.chmod(bundle, PRIVATE)


# What an engine before the rule left readable: per container (the bundle and
# the runtime's copy), and the store's image records.
_RECORDS = ("config.json", "container.json", "ctr.log", "monitor.log", "state.json", "pid", "todo")


def _tighten_old_install(paths: Paths) -> None:
    """Close the records an older engine wrote 0644 in directories anybody could walk."""
    import json

    for base in (paths.containers, paths.runtime_state):
        for container_id in _listdir(base):
            directory = os.path.join(base, container_id)
            if not os.path.isdir(directory) or os.path.islink(directory):
                continue
            for name in _RECORDS:
                _chmod_if_there(os.path.join(directory, name), SECRET)
            if base == paths.containers:
                try:
                    with open(os.path.join(directory, "config.json")) as f:
                        config = json.load(f)
                except (OSError, ValueError):
                    config = {}
                bundle_access(directory, config)
            else:
                os.chmod(directory, PRIVATE)
    images = os.path.join(paths.root, "images")
    for name in _listdir(images):
        _chmod_if_there(os.path.join(images, name), SECRET)
    for name in ("repositories.json", "auth.json"):
        _chmod_if_there(os.path.join(paths.root, name), SECRET)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _chmod_if_there(path: str, mode: int) -> None:
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            os.chmod(path, mode)
    except FileNotFoundError:
        pass
