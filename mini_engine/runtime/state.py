"""The runtime's memory: a directory per container, ``<state root>/<id>/``.

Chapter 00 reads this module. Spec: runtime.md ("State"). Man pages: rename(2), fsync(2).

A second invocation of the runtime (``start``, ``state``, ``kill``,
``delete``) finds the container here. ``create`` writes, in this order:

- ``todo``: what ``start`` and ``delete`` will have to do, one step per line;
- ``exec.fifo``: the container waits on it until ``start`` (gone after);
- ``pid``: the container's process and when it started, ``PID TICKS``;
- ``config.json``: the bundle's config as it was at create;
- ``state.json``: id, bundle, creation time and annotations, last, so that
  a directory without it is a create that never finished.

The status is not stored but read off the kernel each time: a recorded pid
that is gone means "stopped", whoever killed it.

Why plain text for ``pid`` and ``todo``: ``start`` and ``delete``, the
commands an engine runs for every container, read nothing else, and so
never import ``json``. In Python that import costs more than runc takes
for a whole ``start`` (chapter "Plug your runtime into podman" measures it).
"""

from __future__ import annotations

import os

from mini_engine.base.errors import ContainerError
from mini_engine.base.files import write_text
from mini_engine.base.procfs import same_process, start_time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: see mini_engine/runtime/__init__.py
    from typing import Any



def container_dir(state_root: str, container_id: str) -> str:
    return os.path.join(state_root, container_id)


def save_pid(state_root: str, container_id: str, pid: int) -> None:
    """Record the container's process: ``PID TICKS``, its pid and when it started."""
    write_text(os.path.join(container_dir(state_root, container_id), "pid"), f"{pid} {start_time(pid)}\n")


def remove(state_root: str, container_id: str) -> None:
    """Remove a container's state directory (files only, no subdirectories)."""
    directory = container_dir(state_root, container_id)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    # These first, in the reverse of create's order: killed half-way, what
    # is left reads as a create that did not finish (delete --force clears it).
    first = [name for name in ("state.json", "config.json", "pid") if name in names]
    for name in first + [name for name in names if name not in first]:
        os.unlink(os.path.join(directory, name))
    os.rmdir(directory)


# [book:status]
def status(state_root: str, container_id: str) -> tuple[int, int | None, str]:
    """The container's status, read off the kernel now, with its pid and that pid's start time."""
    directory = container_dir(state_root, container_id)
    try:
        with open(os.path.join(directory, "pid")) as f:
            pid_text, started_text = f.read().split()
    except (FileNotFoundError, ValueError):
        raise ContainerError(f'container "{container_id}" does not exist') from None
    pid = int(pid_text)
    started = None if started_text == "None" else int(started_text)
    if not same_process(pid, started):
        return pid, started, "stopped"  # gone, or the pid was reused: this is someone else
    if os.path.exists(os.path.join(directory, "exec.fifo")):
        return pid, started, "created"  # waiting for start
    return pid, started, "running"
# [/book:status]


def todo(state_root: str, container_id: str) -> dict[str, str]:
    """The steps ``create`` left for ``start`` and ``delete``: step -> its argument ("" if none)."""
    steps = {}
    try:
        with open(os.path.join(container_dir(state_root, container_id), "todo")) as f:
            for line in f:
                step, _, argument = line.rstrip("\n").partition(" ")
                steps[step] = argument
    except FileNotFoundError:
        pass
    return steps


def load(state_root: str, container_id: str) -> dict[str, Any]:
    """The state of ``container_id`` as ``state`` prints it, its status read now."""
    import json

    pid, started, now = status(state_root, container_id)
    try:
        with open(os.path.join(container_dir(state_root, container_id), "state.json")) as f:
            record: dict[str, Any] = json.load(f)
    except FileNotFoundError:  # a create that did not finish
        raise ContainerError(f'container "{container_id}" does not exist') from None
    # In the spec's order: the status and the process come after the id.
    return {"ociVersion": record["ociVersion"], "id": container_id, "status": now, "pid": pid,
            "started": started} | record


def config(state_root: str, container_id: str) -> dict[str, Any]:
    """The config.json the container was created from (a copy kept at create), or {}."""
    import json

    try:
        with open(os.path.join(container_dir(state_root, container_id), "config.json")) as f:
            saved: dict[str, Any] = json.load(f)
            return saved
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
