"""The container's side of ``create``: from a forked child to a waiting PID 1.

Every chapter adds a step here; chapter 00 introduces the pipeline.
Man pages: fork(2), setsid(2), fifo(7), unix(7).

The engine forks; the child runs ``container_process`` and never returns.
It reports each milestone to the engine over a socket (one JSON message
per datagram), finishes every namespace and mount step, then blocks on the
exec fifo until ``start``: setting up a container and running its command
are two steps, as the OCI runtime spec's lifecycle demands.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from mini_engine.base import identity, syscall_table, syscalls
from mini_engine.base.errors import ENGINE_FAILED, ContainerError
from mini_engine.runtime import (
    cgroups,
    chroot,
    hooks,
    mounts,
    namespaces,
    process,
    seccomp,
    security,
    terminal,
)
from mini_engine.runtime.channel import Sync
from mini_engine.runtime.config import namespaces as listed_namespaces
from mini_engine.runtime.config import root_path

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: see mini_engine/runtime/__init__.py
    from collections.abc import Callable, Iterator
    from typing import Any, NoReturn


@contextmanager
def step(what: str) -> Iterator[None]:
    """Name the step in the one-line error if a system call in it fails."""
    try:
        yield
    except OSError as exc:
        where = f"{what}: {exc.filename}" if exc.filename else what
        raise ContainerError(f"{where}: {exc.strerror}") from None


def first_steps(config: dict[str, Any], stdio: tuple[int, int, int], gate: int | None = None) -> bytes | None:
    """Take our stdio, join the container's cgroup, compile its seccomp filter
    (``gate``: a pipe to wait on until systemd has moved us into our scope)."""
    # Non-dumpable until execve: a process of the container may not open
    # /proc/<us>/exe, our interpreter on the host, to overwrite it later
    # (CVE-2019-5736). Without CAP_SYS_PTRACE, ptrace access checks fail on
    # a non-dumpable process; the kernel sets the flag back at execve.
    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
    if gate is not None:  # stage 3: systemd places us; a closed pipe means the runtime gave up
        with step("waiting for systemd's scope"):
            placed = os.read(gate, 1)
        os.close(gate)
        if not placed:
            raise ContainerError("the runtime gave up before systemd placed the container in its scope")
    cgroup = cgroups.path_of(config)
    if cgroup:
        # First, before any namespace: a cgroup namespace made below is
        # rooted at the cgroup we are in when we make it.
        with step(f"joining the cgroup {cgroup}"):
            cgroups.join(cgroup)
    profile = config.get("linux", {}).get("seccomp")
    # The syscall table read now, while the host's files are in reach: the
    # filter is compiled from it, and capset and seccomp are called by its
    # numbers after the root has changed.
    numbers = syscall_table.native_numbers()
    return seccomp.compile_filter(profile, numbers) if profile else None


def fork_into_pid_namespace(engine: Sync) -> None:
    """Fork; the parent reports the child's pid and leaves, the child returns."""
    told_r, told_w = os.pipe()
    pid = os.fork()
    if pid:
        # Only we know its pid as the host sees it (inside it is 1, or
        # another small number). Our part is done; the engine adopts it
        # as a subreaper.
        engine.send(type="pid", pid=pid)
        os._exit(0)
    # Both of us write to the engine's socket: the child says nothing until
    # the pid is sent (our parent's exit closes the pipe), or on a busy host
    # its "ready" could come first and the engine would wait for the wrong
    # process.
    os.close(told_w)
    os.read(told_r, 1)
    os.close(told_r)


# [book:pipeline]
def container_process(
    container_id: str,
    config: dict[str, Any],
    bundle: str,
    engine: Sync,
    start_fd: int,
    stdio: tuple[int, int, int],
    console: int | None,
    preserve_fds: int = 0,
    no_pivot: bool = False,
    gate: int | None = None,
) -> NoReturn:
    """Run in the child of ``fork``: set up, wait for start, exec. Never returns."""
    try:
        bpf = first_steps(config, stdio, gate)                    # stages 3 and 6
        proc = config["process"]
        if "oomScoreAdj" in proc:
            with step("setting oom_score_adj"):                  # stage 0
                process.set_oom_score_adj(proc["oomScoreAdj"])
        wanted = listed_namespaces(config)
        if wanted:  # stage 2 (none before it, whose code may not be written yet)
            with step("entering namespaces"):
                namespaces.enter_namespaces(config, engine)
        if "pid" in wanted:                                      # stage 2
            # unshare(CLONE_NEWPID) puts our *children* in the new PID
            # namespace, so the container is the child we fork now: its PID 1.
            fork_into_pid_namespace(engine)
        else:
            engine.send(type="pid", pid=os.getpid())
        # A session of its own: the container's process group can be killed
        # as a whole, and it may take a terminal as its controlling one.
        os.setsid()
        root = root_path(config, bundle)
        own_dev = bool(root) and "mount" in wanted
        if console is not None and not own_dev:
            with step("opening a terminal"):                     # stage 0: -t
                terminal.open_and_send(console)
        hook_state = None                                        # chapter oci-runtime: hooks
        if any(config.get("hooks", {}).get(k) for k in ("createRuntime", "createContainer",
                                                         "startContainer")):  # chapter oci-runtime
            # The engine runs createRuntime now, out in its namespaces, and
            # hands back the state for ours.
            engine.send(type="hooks", id=container_id, bundle=bundle)
            reply = engine.recv() or {}
            hook_state = reply.get("state")

        def create_container_hooks() -> None:                   # chapter oci-runtime
            if hook_state is not None:
                hooks.run(config, "createContainer", hook_state)

        if own_dev and root:                                     # stage 2
            with step("preparing the root filesystem"):
                mounts.prepare_rootfs(config, root, bundle,
                                      "user" in wanted or identity.in_user_namespace(),
                                      before_pivot=create_container_hooks, no_pivot=no_pivot)
            if console is not None:
                with step("opening a terminal"):                 # in the container's devpts
                    terminal.open_and_send(console)
                    mounts.bind_console(os.ttyname(0))
        elif root:                                               # stage 1
            create_container_hooks()                             # chapter oci-runtime
            with step(f"chroot to {root}"):
                chroot.enter_chroot(root)
        else:
            create_container_hooks()                             # chapter oci-runtime
        linux = config.get("linux", {})
        with step("setting sysctls"):                            # stage 2
            namespaces.apply_sysctl(linux.get("sysctl", {}))
        with step("masking paths"):                              # stage 6
            security.mask_paths(linux.get("maskedPaths", []))
            security.readonly_paths(linux.get("readonlyPaths", []))
        with step("setting the hostname"):                       # stage 2
            namespaces.set_hostname(config)
        with step(f"changing to the working directory {proc.get('cwd', '/')}"):
            process.change_directory(proc.get("cwd", "/"))

        def wait_for_start_signal() -> None:
            engine.send(type="ready")
            wait_for_start(start_fd)
            if hook_state is not None:                           # chapter oci-runtime
                hooks.run(config, "startContainer", dict(hook_state, status="created"))

        become_the_process(proc, bpf, wait_for_start_signal, preserve_fds)
    except BaseException as exc:
        report(engine, exc)
# [/book:pipeline]


# [book:become-the-process]
def become_the_process(proc: dict[str, Any], bpf: bytes | None,
                       last_wait: Callable[[], None], preserve_fds: int = 0) -> NoReturn:
    """The tail a container's first process and every exec share: limits, privileges, exec."""
    with step("setting resource limits"):
        process.set_rlimits(proc.get("rlimits", []))             # stage 0
    # Without no_new_privs, loading a filter takes CAP_SYS_ADMIN, which the
    # process may be about to lose: then it goes on before the capabilities
    # are dropped (as runc does), and the profile must allow what follows.
    early = bpf is not None and not proc.get("noNewPrivileges")  # stage 6
    if early and bpf is not None:                                # stage 6
        process.prepare_exec(preserve_fds)
        with step("loading the seccomp filter"):
            seccomp.load(bpf)                                    # stage 6
    capabilities = proc.get("capabilities")                      # stage 6
    with step("dropping capabilities"):                          # stage 6
        if capabilities is not None:
            # Last things that need root's full power: the bounding set
            # (CAP_SETPCAP) and the user switch (CAP_SETUID, CAP_SETGID).
            security.drop_bounding(capabilities, security.last_cap())
            security.keep_capabilities_across_setuid()
    with step("switching to the container's user"):
        process.set_user(proc.get("user", {}))                   # stage 0
        # A uid change sets "dumpable" back to fs.suid_dumpable: clear it again.
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
    with step("setting capabilities"):                           # stage 6
        if capabilities is not None:
            security.set_capabilities(capabilities)
        if proc.get("noNewPrivileges"):
            security.set_no_new_privs()
    last_wait()
    if not early:
        process.prepare_exec(preserve_fds)                       # stage 0
        if bpf is not None:                                      # stage 6: the very last step
            with step("loading the seccomp filter"):
                seccomp.load(bpf)
    process.exec_process(proc)                                   # stage 0
    raise AssertionError("exec_process returned")
# [/book:become-the-process]


# [book:exec-child]
def joining_process(
    config: dict[str, Any],
    proc: dict[str, Any],
    target: int,
    engine: Sync,
    stdio: tuple[int, int, int],
    console: int | None,
    preserve_fds: int = 0,
) -> NoReturn:
    """``exec``: join the running container ``target`` (its cgroup, every namespace), then exec."""
    try:
        bpf = first_steps(config, stdio)
        with step("joining the container's namespaces"):
            joined = namespaces.join_namespaces_of(target)
        if "pid" in joined:
            # setns into a PID namespace, like unshare, moves only our children.
            fork_into_pid_namespace(engine)
        else:
            engine.send(type="pid", pid=os.getpid())
        os.setsid()
        if console is not None:
            with step("opening a terminal"):
                terminal.open_and_send(console)
        with step(f"changing to the working directory {proc.get('cwd', '/')}"):
            # setns into the mount namespace moved us to its root
            process.change_directory(proc.get("cwd", "/"))
        become_the_process(proc, bpf, lambda: engine.send(type="ready"), preserve_fds)
    except BaseException as exc:
        report(engine, exc)
# [/book:exec-child]


def wait_for_start(start_fd: int) -> None:
    """Block until ``start`` writes one byte into the exec fifo."""
    # We opened the fifo for reading *and* writing (Linux allows it on a
    # fifo), so the open never blocked and read() waits for a byte, not EOF.
    os.read(start_fd, 1)
    os.close(start_fd)


def report(engine: Sync, exc: BaseException) -> NoReturn:
    """Tell the engine what went wrong, in one line, and exit."""
    if isinstance(exc, ContainerError):
        message, code = str(exc), exc.exit_code
    elif isinstance(exc, OSError):
        message, code = f"{exc.strerror}: {exc.filename or ''}".rstrip(": "), ENGINE_FAILED
    else:
        message, code = f"{type(exc).__name__}: {exc}", ENGINE_FAILED
    try:
        engine.send(type="error", message=message, exit=code)
    except OSError:
        print(f"mini-engine: {message}", file=sys.stderr)
    os._exit(code)

