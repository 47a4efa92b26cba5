"""Commands on containers that already exist: rm, kill, exec, stats, pause, prune.

Chapter 03 reads ``stats``, ``pause`` and ``prune``: they work on the
container's cgroup from a second terminal while ``run`` waits in the first.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from typing import Any

from mini_engine.base import procfs
from mini_engine.base.errors import ContainerError
from mini_engine.base.signals import parse_signal
from mini_engine.containers import events, runtime
from mini_engine.containers import record as containers
from mini_engine.paths import Paths


def _live(paths: Paths, container: containers.Container) -> runtime.State | None:
    """The runtime's state of a container, or None if the runtime has forgotten it."""
    return runtime.of(paths, container.record.runtime).state(container.id)


# [book:rm]
def rm(paths: Paths, name: str, force: bool = False) -> str:
    """``rm``: remove one container; its id. A running one (orphans too) only
    with ``-f``, which kills it first, as docker's ``rm`` does."""
    container = containers.load(paths, name)
    engine = containers.engine_alive(container.record)
    status, _ = containers.status(paths, container)
    if engine or status == "running":
        live = _live(paths, container)
        if not force:
            if live and live.status == "paused":
                why = "container is paused and must be unpaused first"
            else:
                now = live.status if live else "being created"
                why = f"container is {now}: stop the container before removing or force remove"
            raise ContainerError(f'cannot remove container "{name}": {why}')
        if engine:
            if live and live.status != "stopped":
                # Its engine (or monitor) then takes down what it set up, and restarts nothing.
                containers.mark_stopped(container)
                runtime.of(paths, container.record.runtime).kill(container.id, signal.SIGKILL)
            elif container.record.state.engine_pid:  # alive, so known
                # Still setting it up: stopped the way Ctrl-C stops it, its undo runs.
                os.kill(container.record.state.engine_pid, signal.SIGTERM)
            if not _wait_exited(paths, container, 30):
                raise ContainerError(f'container "{name}": its engine did not finish within 30 s')
        # An orphan has no engine to take anything down: that is left to us, below.
    if os.path.isdir(container.bundle):  # not removed by its engine already (--rm)
        take_down(paths, container)
        containers.remove(paths, container)
    return container.id
# [/book:rm]


def take_down(paths: Paths, container: containers.Container) -> None:
    """What the container's engine undoes when it ends, for one whose engine was killed:
    the runtime's container (an orphan's processes with it), its network, its overlay."""
    live = _live(paths, container)
    runtime.of(paths, container.record.runtime).delete(container.id, force=True)  # SIGKILL, cgroup, state
    # Until it has exited (its parent is init now, which reaps it), its network
    # namespace and its overlay are still in use.
    deadline = time.monotonic() + 10
    while live and live.status != "stopped" and time.monotonic() < deadline \
            and procfs.same_process(live.pid, live.started):
        time.sleep(0.01)
    settings = container.record.network_settings
    if settings:
        from mini_engine.network import networks

        try:
            network = networks.lookup(paths, settings.network)
        except ContainerError:
            network = None  # removed since (network rm refuses while a lease names it)
        netns = networks.netns_path(paths, container.id)
        if network and (os.path.exists(netns) or container.id in
                        (lease["container"] for lease in networks.containers_on(paths, network).values())):
            networks.disconnect(paths, networks.Connection(network, container.id, netns))
    containers.unmount_rootfs(container)


def kill(paths: Paths, name: str, sig: str) -> int:
    container = containers.load(paths, name)
    runtime.of(paths, container.record.runtime).kill(container.id, parse_signal(sig))
    events.of_container(paths, "kill", container.record, signal=str(parse_signal(sig)))
    print(container.id)
    return 0


def pause(paths: Paths, name: str, frozen: bool) -> int:
    container = containers.load(paths, name)
    runtime.of(paths, container.record.runtime).pause(container.id, frozen)
    events.of_container(paths, "pause" if frozen else "unpause", container.record)
    print(container.id)
    return 0


def stats(paths: Paths, names: list[str], as_json: bool, stream: bool = True) -> int:
    """``stats``: what containers use, from their cgroups' meters (chapter 03); without names,
    every running container. As docker's, it refreshes every second until interrupted
    (Ctrl-C) or until none of them runs; ``stream=False`` (``--no-stream``) prints once."""
    if names:
        shown = [(name, containers.load(paths, name)) for name in names]
    else:
        shown = [(c.id[:12], c) for c in containers.all_containers(paths)
                 if containers.status(paths, c)[0] == "running"]
    clear = stream and not as_json and sys.stdout.isatty()
    while True:
        frame = []
        for name, container in shown:
            try:
                frame.append((container, runtime.stats(runtime.read_config(container.bundle), name)))
            except (ContainerError, OSError):
                if not stream:
                    raise
        if stream and not frame:
            return 0  # every container it showed has exited
        if clear:
            sys.stdout.write("\033[2J\033[H")  # a terminal's screen cleared, as docker's stats does
        _print_stats(frame, as_json, stream)
        sys.stdout.flush()
        if not stream:
            return 0
        time.sleep(1.0)


def _print_stats(frame: list[tuple[containers.Container, dict[str, Any]]], as_json: bool, stream: bool) -> None:
    if as_json:
        for container, numbers in frame:
            # Streamed, one object a line (as docker's --format json), so that a reader can split them.
            print(json.dumps(dict(numbers, id=container.id), indent=None if stream else 2))
        return
    print(f"{'CONTAINER ID':<14}{'MEM USAGE / LIMIT':<26}{'CPU TIME':<12}{'PIDS':<10}BLOCK I/O")
    for container, numbers in frame:
        io_read = sum(d.get("rbytes", 0) for d in numbers["io"].values())
        io_write = sum(d.get("wbytes", 0) for d in numbers["io"].values())
        memory = (f"{_mib(numbers['memory_current'])} / {_mib(numbers['memory_max'])}"
                  if numbers["memory_current"] is not None else "-")
        cpu = f"{numbers['cpu_usage_usec'] / 1e6:.2f}s" if numbers["cpu_usage_usec"] is not None else "-"
        pids = "-" if numbers["pids_current"] is None else str(numbers["pids_current"])
        print(f"{container.id[:12]:<14}{memory:<26}{cpu:<12}{pids:<10}{_mib(io_read)} / {_mib(io_write)}")


def _mib(value: int | str | None) -> str:
    if value in (None, "max"):
        return "max" if value == "max" else "-"
    return f"{int(value) / (1 << 20):.1f}MiB"


# [book:prune]
def prune(paths: Paths) -> int:
    """Remove stopped containers, and running ones whose engine is gone, with their cgroups."""
    kept: set[str] = set()
    ours = set(containers.all_ids(paths))  # this engine root's containers, and the runtime's below
    ours |= set(runtime.InProcess(paths.runtime_state).ids())
    from mini_engine.containers import pod  # stage 10

    # A pod's containers go with the pod (pod rm), and its cgroup stays while the pod
    # does, stopped or not: it holds the pod's limits.
    pods = pod.all_pods(paths)  # stage 10
    kept |= {os.path.basename(p.cgroup) for p in pods if p.cgroup}  # stage 10
    in_pods = {p.id for p in pods}  # stage 10
    for container in containers.all_containers(paths):
        if containers.engine_alive(container.record) or container.record.pod in in_pods:
            kept.add(container.id)  # an engine is making it, or waits for it
            continue
        # Kills what is left (cgroup.kill), removes the cgroup and the state, the network, the overlay.
        take_down(paths, container)
        containers.remove(paths, container)
        print(container.id)
    # Bundles of engines killed before they wrote the record: nothing but a directory.
    for container_id in containers.unrecorded(paths):
        shutil.rmtree(os.path.join(paths.containers, container_id), ignore_errors=True)
    # What a crash can leave without a container record around it.
    in_process = runtime.InProcess(paths.runtime_state)
    for container_id in in_process.ids():
        if container_id not in kept:
            in_process.delete(container_id, force=True)
    # Networks of engines that were killed, whose containers are gone by now:
    # leases, veths, namespaces (chapter 07).
    from mini_engine.network import networks  # stage 7

    networks.reclaim(paths)  # stage 7
    runtime.sweep_cgroups(kept, ours)
    return 0
# [/book:prune]


def _exec_user(container: containers.Container, user: str, proc: dict[str, Any]) -> dict[str, Any]:
    """``exec -u``: resolved in the container's own /etc/passwd and /etc/group, as
    ``run -u`` is; a non-root user keeps only the bounding set, as in ``run``."""
    from mini_engine.base.rootpath import read_in_root
    from mini_engine.images import imageconfig

    files: list[str | None] = []
    for name in ("/etc/passwd", "/etc/group"):
        try:
            files.append(read_in_root(os.path.join(container.bundle, "rootfs"), name).decode(errors="replace"))
        except OSError:
            files.append(None)
    resolved = imageconfig.resolve_user(user, files[0], files[1])
    if "capabilities" in proc:
        from mini_engine.config.security import for_user

        proc["capabilities"] = for_user(proc["capabilities"], resolved.uid)
    return resolved.to_spec()


# [book:engine-exec]
def exec_command(paths: Paths, name: str, command: list[str], interactive: bool, tty: bool,
                 env: list[str], workdir: str | None, user: str | None, detach: bool = False) -> int:
    """``mini-engine exec``: another process in a running container; its exit code
    (``detach``, ``-d``: 0 once it runs, a monitor of its own waiting for it)."""
    from mini_engine.config import spec

    if detach and interactive:
        raise ContainerError("exec -d and -i conflict: a process in the background reads no input")
    if tty and interactive and not os.isatty(0):
        raise ContainerError("the input device is not a TTY: drop -t, or run from a terminal")
    if not command:
        raise ContainerError("exec needs a command")
    container = containers.load(paths, name)
    client = runtime.of(paths, container.record.runtime)
    if not client.running(container.id):
        # 1, docker's code when its daemon refuses (podman says 125 here).
        raise ContainerError(f'container "{name}" is not running', 1)
    proc = dict(runtime.read_config(container.bundle)["process"], args=command, terminal=tty)
    proc["env"] = spec.merge_env(proc.get("env", []), ["TERM=xterm"] if tty else [],
                                 spec.host_env(env))
    if workdir:
        proc["cwd"] = workdir
    if user:
        proc["user"] = _exec_user(container, user, proc)
    if detach:
        return _exec_detached(client, container, proc)
    stdin = 0 if interactive else os.open(os.devnull, os.O_RDONLY)
    try:
        running = client.exec(container.id, proc, (stdin, 1, 2))
    finally:
        if stdin != 0:
            os.close(stdin)
    try:
        with running.forwarding_signals():
            running.wait_exec()
            return running.wait(interactive)  # with -t, relaying the terminal meanwhile
    finally:
        running.close()
# [/book:engine-exec]


def _exec_detached(client: runtime.Runtime, container: containers.Container, proc: dict[str, Any]) -> int:
    """``exec -d``: the process started by a monitor (chapter 08's), which reaps it; its
    output goes nowhere, as docker's ``exec -d`` (whose daemon keeps none either)."""
    from mini_engine.containers import monitor

    def body(started: monitor.Started) -> int:
        null = os.open(os.devnull, os.O_RDWR)
        running = client.exec(container.id, proc, (null, null, null))
        os.close(null)
        try:
            running.wait_exec()
            started(container.id, container.bundle)  # the command line returns now
            return running.wait()
        finally:
            running.close()

    return monitor.detach(body, announce=False)


# [book:engine-diff]
def diff(paths: Paths, name: str) -> int:
    """``mini-engine diff``: what the container added, changed and deleted, from its upper dir."""
    from mini_engine.containers import overlay

    container = containers.load(paths, name)
    if container.record.lowers is None:
        raise ContainerError(f'container "{name}" has no overlay root (it ran at stage '
                             f'{container.record.stage}; diff needs stage 4 or above)')
    upper = os.path.join(container.bundle, "upper")
    for kind, path in overlay.diff(upper, containers.lower_dirs(paths, container)):
        print(f"{kind} {path}")
    return 0
# [/book:engine-diff]


def _wait_exited(paths: Paths, container: containers.Container, timeout: float | None) -> bool:
    """Wait until the engine (or monitor) that runs the container has exited, and with
    it taken down the container's mounts and network, and no orphan of it runs (one
    whose engine was killed); False on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            current = containers.load(paths, container.id)
        except ContainerError:
            return True  # gone already: run --rm removed it
        if not containers.engine_alive(current.record) and containers.status(paths, current)[0] != "running":
            container.record = current.record
            return True
        if deadline is not None and time.monotonic() > deadline:
            return False
        time.sleep(0.05)


# [book:stop]
def stop(paths: Paths, name: str, timeout: int | None) -> None:
    """The container's stop signal (SIGTERM unless ``--stop-signal`` or the image's StopSignal
    says otherwise), then SIGKILL after ``timeout`` seconds (its ``--stop-timeout``, or 10;
    -1: wait for ever), as docker stop. Its restart policy restarts it no more."""
    container = containers.load(paths, name)
    if containers.status(paths, container)[0] == "running":
        client = runtime.of(paths, container.record.runtime)
        config = container.record.config
        if timeout is None:
            timeout = config.stop_timeout if config and config.stop_timeout is not None else 10
        containers.mark_stopped(container)
        client.kill(container.id, parse_signal(config.stop_signal if config and config.stop_signal else "TERM"))
        if not _wait_exited(paths, container, None if timeout < 0 else timeout):
            client.kill(container.id, signal.SIGKILL)
            _wait_exited(paths, container, 30)
        events.of_container(paths, "stop", container.record)
# [/book:stop]


def wait(paths: Paths, names: list[str]) -> int:
    """Block until each container has exited; print its exit code."""
    for name in names:
        container = containers.load(paths, name)
        _wait_exited(paths, container, None)
        print(container.record.state.exit_code)
    return 0


def exit_code(paths: Paths, container_id: str) -> int:
    """Once the container has exited and its engine (or monitor) has recorded it: its exit code."""
    container = containers.load(paths, container_id)
    _wait_exited(paths, container, None)
    return container.record.state.exit_code


# [book:logs]
def logs(paths: Paths, name: str, follow: bool, tail: int | None, timestamps: bool,
         since: str | None = None, until: str | None = None) -> int:
    """What a container wrote, from its log (logfile.py); -f follows it until the container
    exits; ``since`` and ``until`` keep the lines of a time window (docker's times and durations)."""
    from mini_engine.containers import logfile

    start = logfile.parse_time(since, "--since") if since else None
    end = logfile.parse_time(until, "--until") if until else None
    container = containers.load(paths, name)
    path = os.path.join(container.bundle, "ctr.log")
    saved = container.record.run
    if not os.path.exists(path) and not (saved and saved.request.get("detach")):
        # As docker's --log-driver none: nothing to read, and it says so (exit 1).
        how = "with a terminal (-t)" if saved and saved.request.get("tty") else "(made by an older engine)"
        raise ContainerError(f'container "{name}" ran in the foreground {how}, where its output went to the '
                             "terminal alone: it keeps no log", 1)

    def wanted(entries: list[logfile.Entry]) -> list[logfile.Entry]:
        if start is None and end is None:
            return entries
        return [e for e in entries if (start is None or logfile.stamp_ns(e[0]) >= start)
                and (end is None or logfile.stamp_ns(e[0]) <= end)]

    def show(entries: list[logfile.Entry]) -> None:
        for stamp, stream, text in entries:
            out = sys.stdout if stream == "stdout" else sys.stderr
            out.write(f"{stamp} {text}\n" if timestamps else f"{text}\n")
            out.flush()

    entries = wanted(list(logfile.read(path)))
    show(entries[max(0, len(entries) - tail):] if tail is not None else entries)
    last = entries[-1][0] if entries else ""
    shown_at_last = sum(1 for e in entries if e[0] == last)
    while follow and (end is None or time.time_ns() <= end):
        running = containers.engine_alive(containers.load(paths, container.id).record)
        # What is newer than the last line shown; counted by time, not by position,
        # since rotation drops the oldest lines from under us.
        entries = wanted([e for e in logfile.read(path) if e[0] >= last])
        same = sum(1 for e in entries if e[0] == last)
        show(entries[shown_at_last:] if same else entries)
        if entries:
            last = entries[-1][0]
            shown_at_last = sum(1 for e in entries if e[0] == last)
        if not running:  # read after the look above: nothing written before the end is missed
            break
        time.sleep(0.1)
    return 0
# [/book:logs]


def inspect(paths: Paths, name: str) -> dict[str, Any]:
    """docker-like JSON for a container: State, Config, NetworkSettings, Mounts."""
    from mini_engine.containers import live

    container = containers.load(paths, name)
    r = container.record
    status, reason = containers.status(paths, container)
    client = runtime.of(paths, container.record.runtime)
    paused = status == "running" and client.paused(container.id)
    st, as_json = r.state, r.to_json()
    return {
        "Id": r.id, "Name": r.name or "", "Created": r.created, "Image": r.image,
        "ImageId": r.image_id or "",
        "State": {"Status": "paused" if paused else status, "Running": status == "running", "Paused": paused,
                  "Pid": st.pid or 0 if status == "running" else 0,
                  # podman's ConmonPid; an orphan has none
                  "MonitorPid": st.engine_pid or 0 if status == "running" and not reason else 0,
                  "ExitCode": st.exit_code, "OOMKilled": st.oom_killed,
                  "Error": reason, "StartedAt": st.started_at or "",
                  "FinishedAt": st.finished_at or ""},
        "RestartCount": r.restart_count,
        "HostConfig": live.host_config(r),  # its limits, as run or update set them
        "Config": as_json.get("Config", {}),
        "NetworkSettings": as_json.get("NetworkSettings", {}),
        "Mounts": r.mounts,
        "LogPath": os.path.join(container.bundle, "ctr.log"),
        "OCIRuntime": client.name,  # podman's: the runtime it was made with
    }


def top(paths: Paths, name: str) -> int:
    """The container's processes, as its runtime's ``ps`` lists them (every process of its cgroup)."""
    container = containers.load(paths, name)
    client = runtime.of(paths, container.record.runtime)
    if not client.running(container.id):
        raise ContainerError(f'container "{name}" is not running', 1)  # as exec's
    print(f"{'PID':<10}CMD")
    for pid in client.processes(container.id):
        cmd = procfs.command_line(pid)
        if cmd is not None:  # None: exited since
            print(f"{pid:<10}{cmd}")
    return 0
