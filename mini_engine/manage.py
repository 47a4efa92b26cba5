"""Commands on containers that already exist: rm, kill, exec, stats, pause, prune.

Chapter 03 reads ``stats``, ``pause`` and ``prune``: they work on the
container's cgroup from a second terminal while ``run`` waits in the first.
"""

from __future__ import annotations

import json
import os
import socket
import sys

from mini_engine import containers
from mini_engine.paths import Paths
from mini_engine.runtime import cgroups, lifecycle, process, state
from mini_engine.runtime.errors import ContainerError


def _live(paths: Paths, container_id: str) -> dict | None:
    """The runtime's state of a container, or None if the runtime has forgotten it."""
    try:
        return state.load(paths.runtime_state, container_id)
    except ContainerError:
        return None


def rm(paths: Paths, ids: list[str]) -> int:
    failed = 0
    for name in ids:
        try:
            container = containers.load(paths, name)
            live = _live(paths, container.id)
            if live and live["status"] != "stopped":
                raise ContainerError(f'container "{name}" is {live["status"]}: it cannot be removed now')
            containers.remove(paths, container)
            print(container.id)
        except ContainerError as exc:
            print(f"mini-engine: {exc}", file=sys.stderr)
            failed = 1
    return failed


def kill(paths: Paths, name: str, sig: str) -> int:
    container = containers.load(paths, name)
    lifecycle.kill(container.id, paths.runtime_state, process.parse_signal(sig))
    print(container.id)
    return 0


def pause(paths: Paths, name: str, frozen: bool) -> int:
    container = containers.load(paths, name)
    cgroups.freeze(lifecycle.cgroup_of(container.id, paths.runtime_state), frozen)
    print(container.id)
    return 0


def stats(paths: Paths, name: str, as_json: bool) -> int:
    container = containers.load(paths, name)
    numbers = cgroups.stats(lifecycle.cgroup_of(container.id, paths.runtime_state))
    if as_json:
        print(json.dumps(dict(numbers, id=container.id), indent=2))
        return 0
    io_read = sum(d.get("rbytes", 0) for d in numbers["io"].values())
    io_write = sum(d.get("wbytes", 0) for d in numbers["io"].values())
    print(f"{'CONTAINER ID':<14}{'MEM USAGE / LIMIT':<26}{'CPU TIME':<12}{'PIDS':<10}BLOCK I/O")
    memory = (f"{_mib(numbers['memory_current'])} / {_mib(numbers['memory_max'])}"
              if numbers["memory_current"] is not None else "-")
    cpu = f"{numbers['cpu_usage_usec'] / 1e6:.2f}s" if numbers["cpu_usage_usec"] is not None else "-"
    pids = "-" if numbers["pids_current"] is None else str(numbers["pids_current"])
    print(f"{container.id[:12]:<14}{memory:<26}{cpu:<12}{pids:<10}{_mib(io_read)} / {_mib(io_write)}")
    return 0


def _mib(value: int | str | None) -> str:
    if value in (None, "max"):
        return "max" if value == "max" else "-"
    return f"{int(value) / (1 << 20):.1f}MiB"


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


# [book:prune]
def prune(paths: Paths) -> int:
    """Remove stopped containers, and running ones whose engine is gone, with their cgroups."""
    kept: set[str] = set()
    for container in containers.all_containers(paths):
        live = _live(paths, container.id)
        running = live is not None and live["status"] != "stopped"
        if running and _alive(container.record["State"].get("EnginePid")):
            kept.add(container.id)  # an engine still waits for it
            continue
        if live is not None:
            # Kills what is left (cgroup.kill), removes the cgroup and the state.
            lifecycle.delete(container.id, paths.runtime_state, force=True)
        containers.remove(paths, container)
        print(container.id)
    # Networks of engines that were killed: leases, veths, namespaces (chapter 07).
    from mini_engine import networks

    networks.reclaim(paths)
    # What a crash can leave without a container record around it.
    if os.path.isdir(paths.runtime_state):
        for container_id in os.listdir(paths.runtime_state):
            if container_id not in kept:
                lifecycle.delete(container_id, paths.runtime_state, force=True)
    try:
        parent = os.path.join(cgroups.mount_point(), "mini-engine")
        for container_id in os.listdir(parent):
            path = os.path.join(parent, container_id)
            # Only an empty one: a populated cgroup that no container of
            # ours owns may be another engine root's, running.
            if container_id not in kept and os.path.isdir(path) \
                    and not cgroups.read_events(path).get("populated"):
                cgroups.destroy(path)
    except (ContainerError, FileNotFoundError):
        pass  # no cgroup2 here, or we never made a cgroup
    return 0
# [/book:prune]


def _exec_user(container: containers.Container, user: str, proc: dict) -> dict:
    """``exec -u``: resolved in the container's own /etc/passwd and /etc/group, as
    ``run -u`` is; a non-root user keeps only the bounding set, as in ``run``."""
    from mini_engine import imageconfig
    from mini_engine.runtime.mounts import resolve_in_root

    files = []
    for name in ("/etc/passwd", "/etc/group"):
        try:
            with open(resolve_in_root(os.path.join(container.bundle, "rootfs"), name)) as f:
                files.append(f.read(1 << 20))
        except OSError:
            files.append(None)
    resolved = imageconfig.resolve_user(user, files[0], files[1])
    if "capabilities" in proc:
        from mini_engine.security import for_user

        proc["capabilities"] = for_user(proc["capabilities"], resolved.uid)
    return resolved.to_spec()


# [book:engine-exec]
def exec_command(paths: Paths, name: str, command: list[str], interactive: bool, tty: bool,
                 env: list[str], workdir: str | None, user: str | None) -> int:
    """``mini-engine exec``: another process in a running container; its exit code."""
    from mini_engine import spec
    from mini_engine.runtime import config as configfile
    from mini_engine.runtime import terminal

    if tty and interactive and not os.isatty(0):
        raise ContainerError("the input device is not a TTY: drop -t, or run from a terminal")
    if not command:
        raise ContainerError("exec needs a command")
    container = containers.load(paths, name)
    live = _live(paths, container.id)
    if live is None or live["status"] != "running":
        raise ContainerError(f'container "{name}" is not running')
    proc = dict(configfile.load(container.bundle)["process"], args=command, terminal=tty)
    proc["env"] = spec.merge_env(proc.get("env", []), ["TERM=xterm"] if tty else [],
                                 spec.host_env(env))
    if workdir:
        proc["cwd"] = workdir
    if user:
        proc["user"] = _exec_user(container, user, proc)
    ours = theirs = None
    if tty:
        ours, theirs = socket.socketpair()
    stdin = 0 if interactive else os.open(os.devnull, os.O_RDONLY)
    try:
        running = lifecycle.exec_in(container.id, paths.runtime_state, proc, (stdin, 1, 2),
                                    theirs.fileno() if theirs else None)
    finally:
        if stdin != 0:
            os.close(stdin)
        if theirs is not None:
            theirs.close()
    master = terminal.receive_master(ours) if ours is not None else None
    try:
        with process.forwarding_signals(running.pid):
            running.wait_exec()
            if master is None:
                return process.wait(running.pid)
            terminal.copy_window_size(0, master)
            return terminal.relay(master, running.pid, interactive)
    finally:
        if master is not None:
            os.close(master)
        if ours is not None:
            ours.close()
# [/book:engine-exec]


# [book:engine-diff]
def diff(paths: Paths, name: str) -> int:
    """``mini-engine diff``: what the container added, changed and deleted, from its upper dir."""
    from mini_engine import overlay

    container = containers.load(paths, name)
    if "Lowers" not in container.record:
        raise ContainerError(f'container "{name}" has no overlay root (it ran at stage '
                             f'{container.record["Stage"]}; diff needs stage 4 or above)')
    upper = os.path.join(container.bundle, "upper")
    for kind, path in overlay.diff(upper, containers.lower_dirs(paths, container)):
        print(f"{kind} {path}")
    return 0
# [/book:engine-diff]
