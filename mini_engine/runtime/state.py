"""The runtime's memory: ``<state root>/<id>/state.json``, as the OCI runtime spec shapes it.

Chapter 00 reads this module. Spec: runtime.md ("State"). Man pages: rename(2), fsync(2).

A second invocation of the runtime (``state``, ``kill``, ``delete``) finds
the container here. The status is not stored but read off the kernel each
time: a recorded pid that is gone means "stopped", whoever killed it.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from mini_engine.runtime.errors import ContainerError

OCI_VERSION = "1.0.2"


def container_dir(state_root: str, container_id: str) -> str:
    return os.path.join(state_root, container_id)


def write_json(path: str, data: Any) -> None:
    """Write ``path`` as JSON so that a crash leaves the old file or the new one, never half."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_text(path: str, text: str) -> None:
    """Write ``path`` through a temporary file, fsync and rename(2), which is atomic."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save(state_root: str, state: dict[str, Any]) -> None:
    write_json(os.path.join(container_dir(state_root, state["id"]), "state.json"), state)


def load(state_root: str, container_id: str) -> dict[str, Any]:
    """The state of ``container_id`` with its status as the kernel sees it now."""
    path = os.path.join(container_dir(state_root, container_id), "state.json")
    try:
        with open(path) as f:
            state = json.load(f)
    except FileNotFoundError:
        raise ContainerError(f'container "{container_id}" does not exist') from None
    state["status"] = status(state_root, state)
    return state


def start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (field 22 of /proc/PID/stat).

    None if there is no such process, or only its zombie: it has ended and
    waits for its parent to reap it (a parent that may take its time). runc
    counts a zombie as stopped too.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def config(state_root: str, container_id: str) -> dict[str, Any]:
    """The config.json the container was created from (a copy kept at create), or {}."""
    try:
        with open(os.path.join(container_dir(state_root, container_id), "config.json")) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def status(state_root: str, state: dict[str, Any]) -> str:
    """created (waiting for start), running, or stopped."""
    if not _alive(state.get("pid", 0)):
        return "stopped"
    if state.get("started") is not None and start_time(state["pid"]) != state["started"]:
        return "stopped"  # the pid was reused: ours is gone, this is someone else
    fifo = os.path.join(container_dir(state_root, state["id"]), "exec.fifo")
    return "created" if os.path.exists(fifo) else "running"


def _alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie waiting to be reaped."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The state letter follows the command name, which is in parentheses.
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
