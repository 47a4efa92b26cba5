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
        return cls(
            os.path.abspath(root or os.environ.get("MINI_ENGINE_ROOT") or DEFAULT_ROOT),
            os.path.abspath(runroot or os.environ.get("MINI_ENGINE_RUNROOT") or DEFAULT_RUNROOT),
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
