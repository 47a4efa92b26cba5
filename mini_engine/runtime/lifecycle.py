"""The runtime's operations: create, start, kill, delete (the OCI lifecycle).

Chapter 00 reads this module. Spec: runtime.md ("Lifecycle", "Operations").
Man pages: fork(2), mkfifo(3), kill(2), waitpid(2).

``create`` forks the container's process, answers its requests (the user
namespace maps), and returns once it waits, fully set up, for ``start``.
``start`` lets it exec. ``run`` in the engine is create + start + wait.
Every resource ``create`` makes has its undo registered where it is made,
so a failure at any step leaves nothing behind.
"""

from __future__ import annotations

import os
import sys

from mini_engine.base import files, procfs
from mini_engine.base.defaults import OCI_VERSION
from mini_engine.base.errors import ContainerError
from mini_engine.runtime import cgroups, state
from mini_engine.runtime import config as configfile

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: see mini_engine/runtime/__init__.py
    from contextlib import ExitStack
    from typing import Any


class Created:
    """A container waiting for ``start``, and the engine's line to it (a channel.Sync)."""

    def __init__(self, container_id: str, pid: int, config: dict[str, Any], sync: Any) -> None:
        self.id, self.pid, self.config, self.sync = container_id, pid, config, sync

    def wait_exec(self) -> None:
        """After ``start``: return once the command runs, raise if it could not start."""
        message = self.sync.recv()
        self.sync.close()
        if message is not None and message.get("type") == "error":
            _kill_and_reap(self.pid)
            raise ContainerError(message["message"], message["exit"])


# [book:create]
def create(
    container_id: str,
    bundle: str,
    state_root: str,
    stdio: tuple[int, int, int] = (0, 1, 2),
    console: int | None = None,
    preserve_fds: int = 0,
    no_pivot: bool = False,
    systemd_cgroup: bool = False,
) -> Created:
    """Set up the container of ``bundle`` and leave it waiting for ``start``
    (``no_pivot``: entered by MS_MOVE and chroot, not pivot_root: mounts.move_into;
    ``systemd_cgroup``: its cgroup is a scope that systemd makes, runtime/systemd.py)."""
    # Imported here: `state`, `start` and `delete` should not pay for them.
    import datetime
    import socket
    from contextlib import ExitStack

    from mini_engine.runtime import channel, init, process

    bundle = os.path.abspath(bundle)
    config = configfile.load(bundle)
    directory = state.container_dir(state_root, container_id)
    with ExitStack() as undo:
        os.makedirs(state_root, mode=0o700, exist_ok=True)
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            raise ContainerError(f'container "{container_id}" already exists') from None
        undo.callback(state.remove, state_root, container_id)
        cgroup = cgroups.path_of(config)                            # stage 3
        scope = None                                                # stage 3
        if systemd_cgroup and cgroup:                               # stage 3: systemd
            from mini_engine.runtime import systemd

            slice_name, scope, below = systemd.scope_of(config["linux"]["cgroupsPath"])
            cgroup = os.path.join(cgroups.mount_point(), below)
        # What start and delete will do: first, so that a delete --force
        # after a create killed half-way knows the cgroup to remove.
        # (systemd's scope only once it is ours: a name another container
        # holds must not be deleted with this one.)
        todo_path = os.path.join(directory, "todo")
        files.write_text(todo_path, "".join(f"{step}\n" for step in todo(
            config, bundle, None if scope else cgroup)))

        # The exec fifo: the container's process blocks reading it until
        # `start` writes a byte. Opened read-write so that open() does not
        # block; the child inherits the descriptor across fork.
        fifo = os.path.join(directory, "exec.fifo")
        os.mkfifo(fifo, 0o600)
        start_fd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
        undo.callback(os.close, start_fd)

        if cgroup and not scope:                                    # stage 3
            cgroups.create(cgroup, config["linux"].get("resources", {}))
            undo.callback(cgroups.destroy, cgroup)
        gate = None                                                 # stage 3
        if scope:                                                   # stage 3: systemd
            # Reached before anything is forked: no systemd here is one clear line.
            bus = undo.enter_context(systemd.Connection())
            gate = os.pipe()  # the child waits there until systemd has placed it

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        undo.callback(ours.close)
        undo.callback(theirs.close)
        if "pid" in configfile.namespaces(config):  # stage 2
            process.set_subreaper()

        sys.stdout.flush()
        sys.stderr.flush()
        child = os.fork()
        if child == 0:
            ours.close()
            if gate:                                                # stage 3
                os.close(gate[1])
                bus.close()  # systemd is the runtime's to talk to, not the container's
            init.container_process(container_id, with_cgroup(config, cgroup) if scope else config,
                                   bundle, channel.Sync(theirs),
                                   start_fd, stdio, console, preserve_fds, no_pivot,
                                   gate[0] if gate else None)
        reaped: set[int] = set()
        undo.callback(_kill_unless_reaped, child, reaped)
        if scope and gate and cgroup:                               # stage 3: systemd
            os.close(gate[0])
            try:
                resources = config["linux"].get("resources", {})
                systemd.start_scope(bus, scope, slice_name, child, resources)
                bus.close()
                undo.callback(end_scope, scope, cgroup)
                steps = todo(config, bundle, cgroup, scope)  # the scope is ours now
                files.write_text(todo_path, "".join(f"{step}\n" for step in steps))
                systemd.check_placed(child, cgroup)
                cgroups.update(cgroup, resources)  # all of them: not every file has a property
                os.write(gate[1], b"\1")
            finally:
                os.close(gate[1])

        theirs.close()  # so that recv() sees EOF once the container holds none
        sync = channel.Sync(ours)
        pid = _handshake(sync, child, config, undo, reaped)
        state.save_pid(state_root, container_id, pid)  # at once: it waits for start now
        if cgroup and "devices" in config["linux"].get("resources", {}):  # stage 6
            # Which devices it may open, as an eBPF program in its
            # cgroup. Only now, as runc does: setting up /dev made nodes
            # (mknod) that the rules need not allow.
            from mini_engine.runtime import devices

            devices.attach(cgroup, devices.rules_for(config))
        # The config as it was at create: the spec says later edits of the
        # bundle's config.json must not affect the container.
        files.write_json(os.path.join(directory, "config.json"), config)
        # Last: a directory without state.json is a create that did not finish.
        files.write_json(os.path.join(directory, "state.json"), {
            "ociVersion": OCI_VERSION,
            "id": container_id,
            "bundle": bundle,
            "created": datetime.datetime.now(datetime.UTC).isoformat(),
            "annotations": config.get("annotations", {}),
        })
        undo.pop_all()
    os.close(start_fd)
    return Created(container_id, pid, config, sync)
# [/book:create]


# [book:todo]
def todo(config: dict[str, Any], bundle: str, cgroup: str | None, scope: str | None = None) -> list[str]:
    """What ``start`` and ``delete`` will do besides the fifo and the state directory."""
    steps = []
    hooks = config.get("hooks", {})
    wanted = configfile.namespaces(config)
    for kind in ("prestart", "poststart"):
        if hooks.get(kind):
            steps.append(kind)                    # start runs them
    if "pid" not in wanted:
        # Nothing ends the container's other processes when its first one
        # exits. They share its session and process group (init.py called
        # setsid), so delete kills the group.
        steps.append("kill-group")
    root = configfile.root_path(config, bundle)
    if root and "mount" not in wanted:
        steps.append(f"unmount {root}")           # mounts made in the host's namespace
    if cgroup:
        steps.append(f"cgroup {cgroup}")          # kill what is left in it, remove it
    if scope:
        steps.append(f"scope {scope}")            # the cgroup is systemd's scope: stop it too
    if hooks.get("poststop"):
        steps.append("poststop")                  # delete runs them, last
    if any("\n" in step for step in steps):
        raise ContainerError(f"a path with a newline cannot be recorded: {steps!r}")
    return steps
# [/book:todo]


def hook_state(config: dict[str, Any], container_id: str, status: str, pid: int | None,
               bundle: str) -> dict[str, Any]:
    """The state a hook reads on its stdin (runtime.md, "State")."""
    current = {"ociVersion": OCI_VERSION, "id": container_id, "status": status,
               "bundle": bundle, "annotations": config.get("annotations", {})}
    if pid:
        current["pid"] = pid
    return current


def _handshake(sync: Any, child: int, config: dict[str, Any], undo: ExitStack,
               reaped: set[int] | None = None) -> int:
    """Serve the child's requests until it is ready; return the container's pid."""
    from mini_engine.runtime import namespaces

    pid = child
    while True:
        message = sync.recv()
        if message is None:
            raise ContainerError("the container's process exited during setup")
        kind = message["type"]
        if kind == "userns":
            namespaces.write_id_maps(child, config)
            sync.send(type="ack")
        elif kind == "hooks":
            # The container's namespaces exist and its root is not pivoted
            # yet: the moment of createRuntime, run out here.
            from mini_engine.runtime import hooks

            current = hook_state(config, message["id"], "creating", pid, message["bundle"])
            hooks.run(config, "createRuntime", current)
            sync.send(type="ack", state=current)
        elif kind == "pid":
            pid = message["pid"]
            if pid != child:
                os.waitpid(child, 0)  # the intermediate process, done after its fork
                if reaped is not None:
                    reaped.add(child)  # its pid may be anyone's now: never signal it again
                # PID 1 is ours now (we are its subreaper): if setup fails,
                # it must be reaped here, or it stays a zombie.
                undo.callback(_kill_and_reap, pid)
        elif kind == "ready":
            return pid
        elif kind == "error":
            raise ContainerError(message["message"], message["exit"])


# [book:start]
def start(container_id: str, state_root: str) -> None:
    """Let a created container exec its command."""
    fifo = os.path.join(state.container_dir(state_root, container_id), "exec.fifo")
    try:
        # Non-blocking: if no process holds the fifo open, this fails at once
        # (ENXIO) instead of waiting for a container that is gone.
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        _, _, status = state.status(state_root, container_id)
        raise ContainerError(f'container "{container_id}" is {status}, not created') from None
    except OSError:
        raise ContainerError(f'container "{container_id}" is not waiting to start') from None
    steps = state.todo(state_root, container_id)
    try:
        if "prestart" in steps:  # chapter oci-runtime
            _prestart(container_id, state_root)
        os.write(fd, b"\0")
    finally:
        os.close(fd)
    os.unlink(fifo)
    if "poststart" in steps:  # chapter oci-runtime: the command runs, a failure only warns
        from mini_engine.runtime import hooks

        hooks.warn(*_hook_input("poststart", container_id, state_root, "running"))
# [/book:start]


# [book:exec-in]
def exec_in(
    container_id: str,
    state_root: str,
    proc: dict[str, Any],
    stdio: tuple[int, int, int] = (0, 1, 2),
    console: int | None = None,
    preserve_fds: int = 0,
    sub_cgroup: str | None = None,
) -> Created:
    """Start ``proc`` inside a running container: its namespaces, cgroup and limits
    (``sub_cgroup``: an existing cgroup below the container's, instead of its own)."""
    import socket
    from contextlib import ExitStack

    from mini_engine.runtime import channel, init, process

    current = state.load(state_root, container_id)
    if current["status"] not in ("running", "created"):
        raise ContainerError(f'container "{container_id}" is {current["status"]}: nothing to exec into')
    config = state.config(state_root, container_id)
    configfile.validate(dict(config, process=proc))
    # The process joins the cgroup of linux.cgroupsPath first thing
    # (init.first_steps): it names a cgroup below the container's if asked,
    # and systemd's scope in place of "slice:prefix:name".
    steps = state.todo(state_root, container_id)                   # stage 3
    if sub_cgroup is not None:                                      # stage 3
        config = with_cgroup(config, _sub_cgroup(container_id, state_root, sub_cgroup))
    elif "scope" in steps:                                          # stage 3: systemd
        config = with_cgroup(config, steps["cgroup"])
    process.set_subreaper()  # the process is our grandchild when it joins a PID namespace
    with ExitStack() as undo:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        undo.callback(ours.close)
        undo.callback(theirs.close)
        sys.stdout.flush()
        sys.stderr.flush()
        child = os.fork()
        if child == 0:
            ours.close()
            init.joining_process(config, proc, current["pid"], channel.Sync(theirs), stdio, console,
                                 preserve_fds)
        reaped: set[int] = set()
        undo.callback(_kill_unless_reaped, child, reaped)
        theirs.close()
        sync = channel.Sync(ours)
        pid = _handshake(sync, child, config, undo, reaped)
        undo.pop_all()
    return Created(container_id, pid, config, sync)
# [/book:exec-in]


def end_scope(scope: str, cgroup: str) -> None:
    """Kill what is left in systemd's scope, then stop it; systemd removes the
    empty cgroup itself. (Stopped first, systemd would send SIGTERM, which a
    container's PID 1 may ignore, and wait up to its stop timeout, 90 s.)"""
    from mini_engine.runtime import systemd

    if os.path.isdir(cgroup):
        cgroups.kill_all(cgroup)
    systemd.stop_scope(scope)
    cgroups.destroy(cgroup)  # what systemd left: nothing, or a cgroup it did not know of


def with_cgroup(config: dict[str, Any], cgroup: str | None) -> dict[str, Any]:
    """``config`` with ``linux.cgroupsPath`` naming the host directory ``cgroup``,
    for the process that joins it (the config kept in the state is left as given)."""
    if not cgroup:
        return config
    below = os.path.relpath(cgroup, cgroups.mount_point())
    return dict(config, linux=dict(config["linux"], cgroupsPath=f"/{below}"))


def _sub_cgroup(container_id: str, state_root: str, sub: str) -> str:
    """The host path of ``sub``, a cgroup that exists below the container's own."""
    base = cgroup_of(container_id, state_root)
    path = os.path.normpath(os.path.join(base, sub.lstrip("/")))
    # A path that climbs out ("../..") would put the process in some other
    # cgroup, with other limits or none: only the container's subtree.
    if not path.startswith(base + "/"):
        raise ContainerError(f"--cgroup {sub}: not a cgroup below the container's")
    if not os.path.isfile(os.path.join(path, "cgroup.procs")):
        raise ContainerError(f"--cgroup {sub}: no such cgroup below the container's (make it first)")
    return path


def kill(container_id: str, state_root: str, sig: int) -> None:
    """Send ``sig`` to the container's process."""
    pid, _, status = state.status(state_root, container_id)
    if status == "stopped":
        # runc's own words: containerd's shim reads "container not running"
        # (or "no such process") in the error as "it has already exited",
        # and anything else as a failed kill (pkg/process/utils.go).
        raise ContainerError(f'container "{container_id}" has stopped: container not running')
    os.kill(pid, sig)


def cgroup_of(container_id: str, state_root: str) -> str:
    """The host path of a live container's cgroup."""
    state.status(state_root, container_id)  # it exists, or a clear error
    path = state.todo(state_root, container_id).get("cgroup")
    if not path:
        raise ContainerError(f'container "{container_id}" has no cgroup (it ran below stage 3)')
    return path


def update(container_id: str, state_root: str, resources: dict[str, Any]) -> dict[str, Any]:
    """``update``: ``resources`` over the container's own (a key given replaces that
    key, the rest stays), written to its cgroup and kept with its config.json, so
    that a later update of the swap alone still counts from the memory limit."""
    path = cgroup_of(container_id, state_root)
    config = state.config(state_root, container_id)
    merged = dict(config.get("linux", {}).get("resources", {}))
    for section, value in resources.items():
        if isinstance(value, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **value}
        else:
            merged[section] = value
    scope = state.todo(state_root, container_id).get("scope")
    if scope:  # stage 3: systemd keeps them too, or rewrites the files at its next reload
        from mini_engine.runtime import systemd

        systemd.set_properties(scope, merged)
    cgroups.update(path, merged)
    config.setdefault("linux", {})["resources"] = merged
    files.write_json(os.path.join(state.container_dir(state_root, container_id), "config.json"), config)
    return merged


def paused(container_id: str, state_root: str) -> bool:
    """Is the container's cgroup frozen (``pause``)? False without a cgroup."""
    try:
        return bool(cgroups.read_events(cgroup_of(container_id, state_root)).get("frozen"))
    except ContainerError:
        return False  # no cgroup: it cannot be paused


def processes(container_id: str, state_root: str) -> list[int]:
    """Every process in the container's cgroup; without one, its PID 1 alone."""
    pid, _, status = state.status(state_root, container_id)
    cgroup = state.todo(state_root, container_id).get("cgroup")
    if cgroup:
        try:
            with open(os.path.join(cgroup, "cgroup.procs")) as f:
                return sorted(int(p) for p in f.read().split())
        except FileNotFoundError:
            pass  # removed already
    return [pid] if status != "stopped" else []


# [book:delete]
def delete(container_id: str, state_root: str, force: bool = False) -> None:
    """Forget a stopped container (``force``: kill it first; and if there is
    none, succeed, as the spec's ``delete --force`` does)."""
    directory = state.container_dir(state_root, container_id)
    if force and not os.path.exists(os.path.join(directory, "pid")):
        # No container, or a create killed before it was ready: nothing here
        # but a file or two. (Its child, which was setting the container up,
        # ends by itself: its line to the runtime is closed.)
        state.remove(state_root, container_id)
        return
    pid, started, status = state.status(state_root, container_id)
    if status != "stopped":
        if not force:
            raise ContainerError(f'container "{container_id}" is {status}: stop it first')
        _kill_and_reap(pid)
    steps = state.todo(state_root, container_id)
    if "kill-group" in steps and procfs.start_time(pid) in (None, started):
        # Its other processes go as a group (unless the pid now names
        # another process: then the group is not ours).
        import signal

        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if "unmount" in steps:
        from mini_engine.runtime import mounts

        mounts.detach_mounts_under(steps["unmount"])
    if "scope" in steps:  # stage 3: systemd
        end_scope(steps["scope"], steps["cgroup"])
    elif "cgroup" in steps:  # stage 3
        cgroups.destroy(steps["cgroup"])  # kills whatever is left in it, then removes it
    # What the poststop hooks read, read before the directory goes.
    poststop = _hook_input(  # chapter oci-runtime
        "poststop", container_id, state_root, "stopped") if "poststop" in steps else None
    state.remove(state_root, container_id)
    if poststop:  # chapter oci-runtime
        from mini_engine.runtime import hooks

        hooks.warn(*poststop)
# [/book:delete]


def _hook_input(kind: str, container_id: str, state_root: str,
                status: str) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """hooks.run's arguments: the config, ``kind``, and the state the hooks read on stdin."""
    config, current = state.config(state_root, container_id), state.load(state_root, container_id)
    pid = current["pid"] if status != "stopped" else None
    return config, kind, hook_state(config, container_id, status, pid, current["bundle"])


def _prestart(container_id: str, state_root: str) -> None:
    """config.md's prestart hooks: out here in the runtime's namespaces; a failure stops the container."""
    from mini_engine.runtime import hooks

    config, kind, current = _hook_input("prestart", container_id, state_root, "created")
    try:
        hooks.run(config, kind, current)
    except ContainerError:
        _kill_and_reap(current["pid"])
        raise


def _kill_unless_reaped(pid: int, reaped: set[int]) -> None:
    if pid not in reaped:
        _kill_and_reap(pid)


def _kill_and_reap(pid: int) -> None:
    import signal

    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
