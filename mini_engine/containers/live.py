"""A container changed while it lives, after ``run``: ``port``, ``rename``, ``update``, network connect.

Chapter 08 mentions this module ("Docker's habits"). Man pages: cgroups(7)
(``update`` writes the limits' files of a running container's cgroup, as
``runc update`` does; chapter 03 says which file each limit is).

Each changes, or reads, what the container's record (``container.json``)
keeps, while the container may be running: the engine (or monitor) that
runs it keeps a copy of that record, and takes these fields from the disk
again before it writes its copy back (``record.reread``).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from typing import Any

from mini_engine.base.errors import ContainerError
from mini_engine.config.limits import Limits, resources
from mini_engine.containers import events, runtime
from mini_engine.containers import record as containers
from mini_engine.paths import Paths


@contextmanager
def _locked(container: containers.Container) -> Iterator[containers.Container]:
    """The container's bundle locked (as ``claim`` locks it), and its record read again inside."""
    bundle = os.open(container.bundle, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(bundle, fcntl.LOCK_EX)
        with open(os.path.join(container.bundle, "container.json")) as f:
            record = containers.Record.from_json(json.load(f))
        yield containers.Container(container.id, container.bundle, record)
    finally:
        os.close(bundle)


def published(paths: Paths, name: str) -> list[tuple[str, str]]:
    """What a running container publishes: (its port/protocol, the host's address:port)."""
    container = containers.load(paths, name)
    settings = container.record.network_settings
    if settings is None or containers.status(paths, container)[0] != "running":
        return []  # an exited container holds no port (docker's port, and ps)
    out = []
    for mapping in settings.ports:  # 0.0.0.0:8080->80/tcp
        host, _, inside = mapping.partition("->")
        out.append((inside, host))
    return out


def port(paths: Paths, name: str, wanted: str | None) -> int:
    """``port CONTAINER [PORT[/PROTO]]``: docker's lines, ``80/tcp -> 0.0.0.0:8080``."""
    mappings = published(paths, name)
    if wanted is None:
        for inside, host in mappings:
            print(f"{inside} -> {host}")
        return 0
    number, _, protocol = wanted.partition("/")
    if not number.isdigit() or protocol not in ("", "tcp", "udp", "sctp"):
        raise ContainerError(f'invalid port "{wanted}": expected PORT or PORT/PROTO (tcp, udp)')
    key = f"{int(number)}/{protocol or 'tcp'}"
    hosts = [host for inside, host in mappings if inside == key]
    if not hosts:  # docker's words, and its exit code 1
        raise ContainerError(f"no public port '{key}' published for {name}", 1)
    for host in hosts:
        print(host)
    return 0


# [book:rename]
def rename(paths: Paths, old: str, new: str) -> int:
    """``rename OLD NEW``: the new name claimed first (link(2), as ``run --name``
    claims one), then the record, then the names its networks answer by DNS
    and in their hosts files; the old name let go last."""
    container = containers.load(paths, old)
    if new == container.record.name:
        raise ContainerError(f'renaming container "{old}": it already has the name "{new}"')
    containers.check_name(paths, new)
    if not containers.reserve_name(paths, new, container.id):
        raise ContainerError(f'the name "{new}" is in use by another container; remove it first '
                             "(mini-engine rm)")
    try:
        with _locked(container) as current:
            before = current.record.name
            current.record.name = new
            current.save()
            if current.record.network_settings is not None:
                from mini_engine.network import networks

                networks.rename(paths, current.id, before, new)
    except BaseException:
        _release(paths, new, container.id)
        raise
    if before:
        _release(paths, before, container.id)
    events.of_container(paths, "rename", current.record, oldName=before or "")
    return 0
# [/book:rename]


def _release(paths: Paths, name: str, container_id: str) -> None:
    """Let ``name`` go, if this container holds it."""
    path = os.path.join(paths.root, "names", name)
    try:
        with open(path) as f:
            if f.read() == container_id:
                os.unlink(path)
    except FileNotFoundError:
        pass


# [book:update]
def update(paths: Paths, names: list[str], limits: Limits) -> int:
    """``update``: new limits for containers, running or not, as docker's.

    A running container's cgroup gets them at once, through its runtime's
    ``update`` (runc's, or mini-runc's ``lifecycle.update``). Its bundle's
    config.json and its saved ``run`` get them too, so that ``inspect``
    shows them and a restart (``--restart``, or ``start``) runs with them.
    """
    new = resources(limits)
    given = {f.name: getattr(limits, f.name) for f in fields(Limits)
             if getattr(limits, f.name) != getattr(Limits(), f.name)}
    if not new:
        raise ContainerError("update needs a limit to change: --memory, --memory-swap, --cpus, --cpu-shares, "
                             "--pids-limit, --blkio-weight...")
    runtime.refuse_missing_controllers(new)  # before anything changes
    failed = 0
    for name in names:
        try:
            _update_one(paths, name, new, given)
            print(name)
        except ContainerError as exc:
            print(f"mini-engine: {exc}", file=sys.stderr)
            failed = 1
    return failed


def _update_one(paths: Paths, name: str, new: dict[str, Any], given: dict[str, Any]) -> None:
    container = containers.load(paths, name)
    if container.record.run is None:
        raise ContainerError(f'container "{name}" was made before stage 8: it keeps no limits to update')
    with _locked(container) as current:
        client = runtime.of(paths, current.record.runtime)
        if client.running(current.id):
            client.update(current.id, new)
        config_path = os.path.join(current.bundle, "config.json")
        if os.path.exists(config_path):
            from mini_engine.base import files

            config = runtime.read_config(current.bundle)
            config.setdefault("linux", {})["resources"] = merged(config["linux"].get("resources", {}), new)
            files.write_json(config_path, config)
        assert current.record.run is not None
        saved = current.record.run.request.setdefault("limits", asdict(Limits()))
        saved.update(given)
        if "memory" in given and "memory_swap" not in given:
            saved["memory_swap"] = None  # docker's default for the new limit: as much swap again
        current.save()
    events.of_container(paths, "update", current.record)
# [/book:update]


def merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """linux.resources with ``new``'s sections over ``old``'s, key by key (runc update's rule)."""
    out = dict(old)
    for section, value in new.items():
        out[section] = {**out[section], **value} if isinstance(value, dict) and isinstance(out.get(section),
                                                                                            dict) else value
    return out


def host_config(record: containers.Record) -> dict[str, Any]:
    """inspect's ``HostConfig`` limits, docker's names and units, from the saved run."""
    saved = (record.run.request.get("limits") if record.run else None) or {}
    limits = Limits(**{f.name: saved[f.name] for f in fields(Limits) if f.name in saved})
    try:
        given = resources(limits)
    except ContainerError:
        given = {}
    cpu = given.get("cpu", {})
    return {"Memory": given.get("memory", {}).get("limit", 0),
            "MemorySwap": given.get("memory", {}).get("swap", 0),
            "NanoCpus": cpu["quota"] * 10**9 // cpu["period"] if "quota" in cpu else 0,
            "CpuShares": cpu.get("shares", 0),
            "PidsLimit": given.get("pids", {}).get("limit", 0),
            "BlkioWeight": given.get("blockIO", {}).get("weight", 0)}


# [book:network-connect]
def network_connect(paths: Paths, network_name: str, name: str, aliases: list[str], address: str | None) -> int:
    """``network connect NETWORK CONTAINER``: a running container joins one more network
    (network/networks.py's ``join``), reachable there by its name and ``--alias``es."""
    from mini_engine.network import networks

    container = containers.load(paths, name)
    record = container.record
    if containers.status(paths, container)[0] != "running" or record.state.engine_pid is None:
        raise ContainerError(f'container "{name}" is not running: network connect joins a running container')
    if address is not None:
        networks.check_address(networks.lookup(paths, network_name), address)
    names = list(dict.fromkeys(n for n in (record.name, container.id[:12], *aliases) if n))
    granted, inside = networks.join(paths, container.id, network_name, names, address,
                                    (record.state.engine_pid, record.state.engine_started))
    network = networks.lookup(paths, network_name)
    with _locked(container) as current:
        settings = current.record.network_settings
        if settings is not None:
            if settings.networks is None:  # the first network, as run made it
                settings.networks = {settings.network: {"IPAddress": settings.ip_address,
                                                        "Gateway": settings.gateway, "Interface": "eth0"}}
            settings.networks[network.name] = {"IPAddress": granted, "Gateway": network.gateway,
                                               "Interface": inside, "Aliases": aliases}
            current.save()
    events.emit(paths, "connect", network.name, {"container": container.id, "name": network.name,
                                                 "type": "bridge"}, kind="network")
    return 0


def network_disconnect(paths: Paths, network_name: str, name: str) -> int:
    """``network disconnect NETWORK CONTAINER``: what ``network connect`` (or ``run``) made there."""
    from mini_engine.network import networks

    container = containers.load(paths, name)
    networks.leave(paths, container.id, network_name)
    with _locked(container) as current:
        settings = current.record.network_settings
        if settings is not None and settings.networks:
            settings.networks.pop(network_name, None)
            current.save()
    events.emit(paths, "disconnect", network_name, {"container": container.id, "name": network_name,
                                                    "type": "bridge"}, kind="network")
    return 0
# [/book:network-connect]
