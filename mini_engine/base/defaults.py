"""What a container gets when nothing says otherwise: the OCI world's defaults.

Man pages: mount(8), environ(7), execvp(3).

``runc spec`` writes these mounts into every config.json it makes, and
the engine starts each container's from the same list; a command found
through $PATH is looked up in docker's default PATH when the image names
none, by the engine when it writes ``process.env`` and by the runtime when
a config.json has no PATH at all. One list, one PATH, for both sides.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: see mini_engine/runtime/__init__.py
    from typing import Any

# The version of the OCI runtime spec the engine writes and the runtime reads.
OCI_VERSION = "1.0.2"

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The filesystems every container gets, as `runc spec` writes them; the
# engine's config.json and `mini-runc spec` start from this list.
DEFAULT_MOUNTS: list[dict[str, Any]] = [
    {"destination": "/proc", "type": "proc", "source": "proc",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
]
