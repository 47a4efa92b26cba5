"""The runtime client: the one way the engine drives an OCI runtime.

The runtime chapter ("Plug your runtime into podman") reads this module.
Spec: runtime.md ("Operations"); man page: runc(8).

The engine hands a runtime a bundle and asks it for the lifecycle's steps:
create, start, state, kill, delete, and exec, ps, pause and resume. Two
runtimes answer here, behind the same methods:

- ``InProcess``, the default: the engine calls ``mini_engine.runtime``'s
  functions itself, one process, no exec (``run --rm`` pays for nothing);
- ``Exec``: any program with runc's command line (``runc``, ``crun``,
  ``bin/mini-runc``), as podman's ``--runtime`` runs it. Its state lives
  under a root of its own (``RUNROOT/runtimes/NAME``).

A container records the runtime it was made with (``container.json``'s
``Runtime``), and every later command on it (ps, stop, exec, rm...) asks
that one. Nothing else in the engine imports the runtime package
(tests/test_architecture.py checks it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mini_engine.base import procfs
from mini_engine.base.errors import CANNOT_INVOKE, ENGINE_FAILED, NOT_FOUND, ContainerError
from mini_engine.paths import Paths

IN_PROCESS = "mini-runc"  # the default's name, as `inspect` shows it


@dataclass
class State:
    """What the runtime says of a container now."""

    pid: int
    started: int | None   # the pid's start time (procfs): a reused pid is someone else
    status: str           # created, running, paused or stopped


class Process:
    """A process the runtime started for us (a container's first, or an exec's):
    ours to wait for, as the runtime's parent or as its subreaper."""

    def __init__(self, pid: int, master: int | None = None, created: Any = None) -> None:
        self.pid, self.master, self._created = pid, master, created

    def wait_exec(self) -> None:
        """Once started: return when the command runs, raise if it could not."""
        if self._created is not None:
            self._created.wait_exec()

    @contextmanager
    def forwarding_signals(self) -> Iterator[None]:
        """Signals sent to the engine go to the container's process meanwhile."""
        from mini_engine.runtime import process

        with process.forwarding_signals(self.pid):
            yield

    def wait(self, interactive: bool = False) -> int:
        """Its exit code, once it has exited; with a terminal, relayed to ours until then."""
        from mini_engine.runtime import process, terminal

        if self.master is None:
            return process.wait(self.pid)
        return terminal.relay(self.master, self.pid, interactive)

    def close(self) -> None:
        if self.master is not None:
            os.close(self.master)
            self.master = None


class Runtime:
    """The lifecycle's operations on a runtime, by container id."""

    name = IN_PROCESS
    path: str | None = None

    def describe(self) -> dict[str, Any]:
        """What a container's record keeps, to find this runtime again."""
        return {"Name": self.name, "Path": self.path}

    def create(self, container_id: str, bundle: str, stdio: tuple[int, int, int], tty: bool) -> Process:
        raise NotImplementedError

    def start(self, container_id: str) -> None:
        raise NotImplementedError

    def state(self, container_id: str) -> State | None:
        """None if the runtime does not know the container (any more)."""
        raise NotImplementedError

    def kill(self, container_id: str, sig: int) -> None:
        raise NotImplementedError

    def delete(self, container_id: str, force: bool = False) -> None:
        raise NotImplementedError

    def exec(self, container_id: str, proc: dict[str, Any], stdio: tuple[int, int, int]) -> Process:
        raise NotImplementedError

    def processes(self, container_id: str) -> list[int]:
        raise NotImplementedError

    def pause(self, container_id: str, frozen: bool) -> None:
        raise NotImplementedError

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        """New limits (OCI ``linux.resources``) for a running container's cgroup (runc update)."""
        raise NotImplementedError

    def ids(self) -> list[str]:
        """Every container the runtime keeps state for."""
        raise NotImplementedError

    def running(self, container_id: str) -> bool:
        current = self.state(container_id)
        return current is not None and current.status in ("running", "paused")

    def paused(self, container_id: str) -> bool:
        current = self.state(container_id)
        return current is not None and current.status == "paused"


class InProcess(Runtime):
    """mini_engine.runtime, called in this process: mini-runc without the exec."""

    def __init__(self, state_root: str) -> None:
        self.root = state_root

    # [book:client-in-process]
    def create(self, container_id: str, bundle: str, stdio: tuple[int, int, int], tty: bool) -> Process:
        import socket

        from mini_engine.runtime import lifecycle, terminal

        # The container opens its pty in its own devpts and sends us the
        # master over this socket pair (the console socket of runc).
        ours, theirs = socket.socketpair() if tty else (None, None)
        try:
            created = lifecycle.create(container_id, bundle, self.root, stdio,
                                       theirs.fileno() if theirs else None)
            if ours is not None and theirs is not None:
                theirs.close()
                return Process(created.pid, _master(terminal.receive_master(ours)), created)
            return Process(created.pid, None, created)
        finally:
            for sock in (ours, theirs):
                if sock is not None:
                    sock.close()

    def start(self, container_id: str) -> None:
        from mini_engine.runtime import lifecycle

        lifecycle.start(container_id, self.root)
    # [/book:client-in-process]

    def state(self, container_id: str) -> State | None:
        from mini_engine.runtime import lifecycle, state

        try:
            pid, started, status = state.status(self.root, container_id)
        except ContainerError:
            return None
        if status == "running" and lifecycle.paused(container_id, self.root):
            status = "paused"
        return State(pid, started, status)

    def kill(self, container_id: str, sig: int) -> None:
        from mini_engine.runtime import lifecycle

        lifecycle.kill(container_id, self.root, sig)

    def delete(self, container_id: str, force: bool = False) -> None:
        from mini_engine.runtime import lifecycle

        lifecycle.delete(container_id, self.root, force)

    def exec(self, container_id: str, proc: dict[str, Any], stdio: tuple[int, int, int]) -> Process:
        import socket

        from mini_engine.runtime import lifecycle, terminal

        ours, theirs = socket.socketpair() if proc.get("terminal") else (None, None)
        try:
            running = lifecycle.exec_in(container_id, self.root, proc, stdio,
                                        theirs.fileno() if theirs else None)
            if ours is not None and theirs is not None:
                theirs.close()
                return Process(running.pid, _master(terminal.receive_master(ours)), running)
            return Process(running.pid, None, running)
        finally:
            for sock in (ours, theirs):
                if sock is not None:
                    sock.close()

    def processes(self, container_id: str) -> list[int]:
        from mini_engine.runtime import lifecycle

        return lifecycle.processes(container_id, self.root)

    def pause(self, container_id: str, frozen: bool) -> None:
        from mini_engine.runtime import cgroups, lifecycle

        cgroups.freeze(lifecycle.cgroup_of(container_id, self.root), frozen)

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        from mini_engine.runtime import lifecycle

        lifecycle.update(container_id, self.root, resources)

    def ids(self) -> list[str]:
        return sorted(os.listdir(self.root)) if os.path.isdir(self.root) else []


class Exec(Runtime):
    """Any OCI runtime binary, run with runc's command line, as podman runs it."""

    def __init__(self, name: str, path: str, state_root: str) -> None:
        self.name, self.path, self.root = name, path, state_root

    def _argv(self, *args: str) -> list[str]:
        assert self.path is not None
        return [self.path, "--root", self.root, *args]

    def _run(self, *args: str, stdio: tuple[int, int, int] | None = None,
             capture: bool = False) -> str:
        """Run one command of the runtime; its stdout if ``capture``; its error as ours."""
        import subprocess
        import tempfile

        # Its error, from its --log, one JSON line per failure: a create's
        # stderr is the container's own, and may be a pipe to its log.
        with tempfile.NamedTemporaryFile(prefix="mini-engine-runtime-log-") as log:
            argv = [self.path or "", "--root", self.root, "--log", log.name, "--log-format", "json", *args]
            if stdio is not None:
                done = subprocess.run(argv, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2])
            else:
                done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True)
            if done.returncode != 0:
                raise ContainerError(*_error_of(self.name, args[0], log.read().decode(errors="replace"),
                                                (done.stderr or b"").decode(errors="replace")))
        return done.stdout.decode() if capture and done.stdout is not None else ""

    # [book:client-exec]
    def create(self, container_id: str, bundle: str, stdio: tuple[int, int, int], tty: bool) -> Process:
        from mini_engine.runtime import process

        # runc create exits once the container waits for start: its process
        # is then an orphan, and the kernel hands orphans to the nearest
        # subreaper: us, so that we can wait for it (conmon does the same).
        process.set_subreaper()
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        pid_file = os.path.join(bundle, "runtime.pid")
        args = ["create", "--bundle", bundle, "--pid-file", pid_file]
        with _ConsoleSocket(bundle) if tty else _nothing() as console:
            if console is not None:
                args += ["--console-socket", console.path]
            self._run(*args, container_id, stdio=stdio)
            with open(pid_file) as f:
                pid = int(f.read())
            os.unlink(pid_file)
            return Process(pid, console.receive() if console is not None else None)

    def start(self, container_id: str) -> None:
        self._run("start", container_id)
    # [/book:client-exec]

    def state(self, container_id: str) -> State | None:
        import json

        try:
            current = json.loads(self._run("state", container_id, capture=True))
        except ContainerError:
            return None
        pid = current.get("pid") or 0
        return State(pid, procfs.start_time(pid) if pid else None, current["status"])

    def kill(self, container_id: str, sig: int) -> None:
        self._run("kill", container_id, str(sig))

    def delete(self, container_id: str, force: bool = False) -> None:
        self._run("delete", *(["--force"] if force else []), container_id)

    def exec(self, container_id: str, proc: dict[str, Any], stdio: tuple[int, int, int]) -> Process:
        from mini_engine.base import files
        from mini_engine.runtime import process

        process.set_subreaper()  # exec --detach leaves the process to us, as create does
        directory = os.path.join(self.root, f".exec-{os.getpid()}")
        os.makedirs(directory, mode=0o700, exist_ok=True)
        try:
            files.write_json(os.path.join(directory, "process.json"), proc)
            pid_file = os.path.join(directory, "pid")
            args = ["exec", "--detach", "--pid-file", pid_file, "--process",
                    os.path.join(directory, "process.json")]
            with _ConsoleSocket(directory) if proc.get("terminal") else _nothing() as console:
                if console is not None:
                    args += ["--console-socket", console.path]
                self._run(*args, container_id, stdio=stdio)
                with open(pid_file) as f:
                    pid = int(f.read())
                return Process(pid, console.receive() if console is not None else None)
        finally:
            for name in os.listdir(directory):
                os.unlink(os.path.join(directory, name))
            os.rmdir(directory)

    def processes(self, container_id: str) -> list[int]:
        import json

        return sorted(json.loads(self._run("ps", "--format", "json", container_id, capture=True)))

    def pause(self, container_id: str, frozen: bool) -> None:
        self._run("pause" if frozen else "resume", container_id)

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        import json
        import tempfile

        # runc update -r FILE: the resources as the spec's JSON, which runc reads whole.
        with tempfile.NamedTemporaryFile("w", prefix="mini-engine-resources-", suffix=".json") as f:
            json.dump(resources, f)
            f.flush()
            self._run("update", "-r", f.name, container_id)

    def ids(self) -> list[str]:
        import json

        if not os.path.isdir(self.root):
            return []
        listed = json.loads(self._run("list", "--format", "json", capture=True) or "null")
        return sorted(entry["id"] for entry in listed or [])


def _error_of(name: str, command: str, log: str, stderr: str) -> tuple[str, int]:
    """The runtime's last error, from its JSON log (or its stderr), and docker's code for it."""
    import json

    message = ""
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("error", "fatal"):
            message = str(entry.get("msg", ""))
    message = message or (stderr.strip().splitlines() or [f"{command} failed"])[-1]
    # runc says why a command cannot start in words only; podman reads them too.
    lowered = message.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        code = NOT_FOUND
    elif "permission denied" in lowered:
        code = CANNOT_INVOKE
    else:
        code = ENGINE_FAILED
    return f"{name} {command}: {message}", code


class _ConsoleSocket:
    """runc's --console-socket: a unix socket the runtime connects to, to send the pty master."""

    def __init__(self, directory: str) -> None:
        import socket

        self.path = os.path.join(directory, "console.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)

    def __enter__(self) -> _ConsoleSocket:
        return self

    def receive(self) -> int:
        from mini_engine.runtime import terminal

        connection, _ = self.sock.accept()
        with connection:
            return _master(terminal.receive_master(connection))

    def __exit__(self, *_exc: object) -> None:
        self.sock.close()
        os.unlink(self.path)


def _master(master: int) -> int:
    """The pty master the container sent us, as large as our own terminal."""
    from mini_engine.runtime import terminal

    terminal.copy_window_size(0, master)
    return master


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


# [book:choose-runtime]
def choose(paths: Paths, name: str | None) -> Runtime:
    """The runtime ``--runtime NAME`` names: a program on PATH (``runc``), or a path
    (``bin/mini-runc``); none, or ``mini-runc``: the in-process runtime."""
    import shutil

    from mini_engine.settings import engine  # containers.conf's runtime, or MINI_ENGINE_RUNTIME

    name = name or engine.runtime()
    if name is None or name == IN_PROCESS:
        return InProcess(paths.runtime_state)
    found = shutil.which(name)
    if found is None:
        raise ContainerError(f'runtime "{name}" not found: give a program with runc\'s command line, '
                             "on PATH or by its path (e.g. --runtime runc)")
    path = os.path.abspath(found)
    base = os.path.basename(path)
    return Exec(base, path, os.path.join(paths.runroot, "runtimes", base))
# [/book:choose-runtime]


def of(paths: Paths, made_with: dict[str, str] | None) -> Runtime:
    """The runtime a container was made with, as its record says (``Record.runtime``)."""
    if not made_with or not made_with.get("Path"):
        return InProcess(paths.runtime_state)
    return Exec(made_with["Name"], made_with["Path"],
                os.path.join(paths.runroot, "runtimes", made_with["Name"]))


def of_id(paths: Paths, container_id: str) -> Runtime:
    """The runtime of the container ``container_id`` (the in-process one if it has no record)."""
    import json

    try:
        with open(os.path.join(paths.containers, container_id, "container.json")) as f:
            return of(paths, json.load(f).get("Runtime"))
    except (OSError, ValueError):
        return InProcess(paths.runtime_state)


# Cgroups: the engine reads its containers' cgroups itself (stats, the OOM
# killer's count), as podman does, whichever runtime made them: the path is
# the one the engine wrote in config.json (linux.cgroupsPath).

def refuse_missing_controllers(resources: dict[str, Any]) -> None:
    """A limit this host cannot apply is refused before anything is made."""
    from mini_engine.runtime import cgroups

    cgroups.refuse_missing(cgroups.controllers_needed(cgroups.files_for(resources)), cgroups.mount_point())


# [book:pod-cgroup]
def make_parent_cgroup(relative: str, resources: dict[str, Any]) -> None:
    """A pod's cgroup, ``relative`` to the cgroup2 mount, with the pod's limits: the
    parent of its containers' cgroups, holding no process itself (cgroups(7): a
    cgroup that hands controllers down holds none). Made once; kept if there."""
    from mini_engine.runtime import cgroups

    path = os.path.join(cgroups.mount_point(), relative.lstrip("/"))
    if not os.path.isdir(path):
        cgroups.create(path, resources)


def remove_cgroup(relative: str) -> None:
    """A pod's cgroup, once its containers' are gone (anything left in it is killed)."""
    from mini_engine.runtime import cgroups

    try:
        cgroups.destroy(os.path.join(cgroups.mount_point(), relative.lstrip("/")))
    except ContainerError:
        pass  # no cgroup2 here: nothing was made
# [/book:pod-cgroup]


def cgroup_path(config: dict[str, Any]) -> str | None:
    from mini_engine.runtime import cgroups

    return cgroups.path_of(config)


def oom_killed(cgroup: str) -> bool:
    from mini_engine.runtime import cgroups

    return cgroups.oom_killed(cgroup)


def stats(config: dict[str, Any], name: str) -> dict[str, Any]:
    """Memory, CPU, pids and IO of a container's cgroup."""
    from mini_engine.runtime import cgroups

    path = cgroups.path_of(config)
    if not path or not os.path.isdir(path):
        raise ContainerError(f'container "{name}" has no cgroup (it ran below stage 3, or is not running)')
    return cgroups.stats(path)


def sweep_cgroups(kept: set[str], ours: set[str]) -> None:
    """prune: the cgroups of containers that are gone, under the engine's parent cgroup."""
    from mini_engine.runtime import cgroups

    try:
        parent = os.path.join(cgroups.mount_point(), "mini-engine")
        for container_id in os.listdir(parent):
            path = os.path.join(parent, container_id)
            # A populated cgroup is removed (its processes killed) only if it is
            # one of ours: another engine root's container may be running in it.
            if container_id not in kept and os.path.isdir(path) \
                    and (container_id in ours or not cgroups.read_events(path).get("populated")):
                cgroups.destroy(path)
    except (ContainerError, FileNotFoundError):
        pass  # no cgroup2 here, or we never made a cgroup


def read_config(bundle: str) -> dict[str, Any]:
    """A bundle's config.json, read and checked as the runtime reads it."""
    from mini_engine.runtime import config

    return config.load(bundle)
