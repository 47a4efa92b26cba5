"""``containers.conf``: the engine's defaults, in podman's file format.

Chapter 08 reads this module. Man page: containers.conf(5). Three of its
settings mean something here, under the tables podman keeps them in:

    [containers]
    log_size_max = 1048576      # bytes of a detached container's log; -1: no limit (the default)

    [network]
    default_network = "front"  # what run uses without --network: bridge, none, host, or a network's name

    [engine]
    runtime = "runc"            # the OCI runtime without --runtime: a program on PATH, or a path

Any other key of podman's file is left alone, so the same file can serve
both. The environment still wins over the file, as it did before the file
existed: ``MINI_ENGINE_NETWORK`` and ``MINI_ENGINE_RUNTIME``; the command
line's flags win over both.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

from mini_engine.settings.files import config_path, fail, read_toml

# conmon reads a container's output 8 KiB at a time: a smaller limit could never be kept.
LOG_SIZE_MIN = 8192


@dataclass(frozen=True)
class Defaults:
    default_network: str | None = None
    log_size_max: int = -1
    runtime: str | None = None


def _table(path: str, data: dict[str, Any], name: str) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise fail(path, name, "must be a table, [" + name + "]")
    return table


@functools.cache
def defaults() -> Defaults:
    """What ``containers.conf`` says, read once per command."""
    path = config_path("containers.conf")
    data = read_toml(path)
    if data is None:
        return Defaults()
    network = _table(path, data, "network").get("default_network")
    if network is not None and (not isinstance(network, str) or not network):
        raise fail(path, "default_network", "must be a network's name, e.g. \"bridge\" or \"none\"")
    size = _table(path, data, "containers").get("log_size_max", -1)
    if not isinstance(size, int) or isinstance(size, bool) or (size >= 0 and size < LOG_SIZE_MIN):
        raise fail(path, "log_size_max", f"must be a number of bytes, {LOG_SIZE_MIN} or more, or -1 (no limit)")
    runtime = _table(path, data, "engine").get("runtime")
    if runtime is not None and (not isinstance(runtime, str) or not runtime):
        raise fail(path, "runtime", "must be a runtime's name or path, e.g. \"runc\"")
    return Defaults(network, -1 if size < 0 else size, runtime)


def default_network() -> str | None:
    """``run``'s network without ``--network``: ``MINI_ENGINE_NETWORK``, else the file's; None: the
    engine's own default (the bridge, or none rootless)."""
    return os.environ.get("MINI_ENGINE_NETWORK") or defaults().default_network


def runtime() -> str | None:
    """The OCI runtime without ``--runtime``: ``MINI_ENGINE_RUNTIME``, else the file's; None: in-process."""
    return os.environ.get("MINI_ENGINE_RUNTIME") or defaults().runtime


def log_size_max() -> int:
    """The most bytes a container's log may hold; -1: no limit."""
    return defaults().log_size_max
