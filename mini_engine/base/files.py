"""Files written whole or not at all: the records of the runtime and the engine.

Man pages: rename(2), fsync(2), open(2) (O_EXCL).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: see mini_engine/runtime/__init__.py
    from typing import Any


def write_json(path: str, data: Any, mode: int = 0o600) -> None:
    """Write ``path`` as JSON so that a crash leaves the old file or the new one, never half."""
    import json

    write_text(path, json.dumps(data, indent=2) + "\n", mode)


def write_text(path: str, text: str, mode: int = 0o600) -> None:
    """Write ``path`` through a temporary file, fsync and rename(2), which is atomic.

    0600 unless asked otherwise: what the runtime and the engine write down
    (a config.json, a container's record) holds the container's environment,
    which is nobody's business but its owner's.
    """
    # A random name next to it (rename works within one filesystem only),
    # made with O_EXCL so that it is surely ours.
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".tmp-{os.urandom(8).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), mode)  # exactly: the umask may have taken more
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
