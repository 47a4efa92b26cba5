"""Where the engine keeps things on disk.

- the engine's store (images, containers): ``/var/lib/mini-engine``,
  moved with ``--root`` or ``MINI_ENGINE_ROOT``;
- the runtime's state (``state.json`` per running container):
  ``/run/mini-engine``, moved with ``--runroot`` or ``MINI_ENGINE_RUNROOT``.

/run is a tmpfs: after a reboot no container runs, and no state claims one does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_ROOT = "/var/lib/mini-engine"
DEFAULT_RUNROOT = "/run/mini-engine"


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
    def bundled(self) -> str:
        """The bundled image's root filesystem, before it is an image in the store."""
        return os.path.join(self.root, "bundled")

    @property
    def runtime_state(self) -> str:
        return os.path.join(self.runroot, "runtime")
