"""``mini-runc``: the runtime on its own, with runc's command line.

Engines such as podman and containerd, and the OCI validation suite, drive
a runtime through this interface: ``create`` sets a container up and
returns while its process waits; ``start`` lets it run; ``state``, ``kill``
and ``delete`` find it again through ``--root``. ``mini-engine run`` uses
the same ``lifecycle`` functions in-process: one runtime, not two.
Spec: runtime.md ("Operations"); runc(8).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import socket
import sys
from typing import Any, NoReturn

from mini_engine.runtime import cgroups, lifecycle, process, state
from mini_engine.runtime.errors import ENGINE_FAILED, ContainerError

DEFAULT_ROOT = "/run/mini-runc"
COMMANDS = {"create", "run", "start", "state", "kill", "delete", "exec", "list", "ps", "pause",
            "resume", "features", "spec"}
OCI_VERSION = state.OCI_VERSION


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ContainerError(f"{message} (see '{self.prog} --help')")


def build_parser() -> Parser:
    p = Parser(prog="mini-runc", description="an OCI runtime, with runc's command line")
    p.add_argument("--root", default=DEFAULT_ROOT, help=f"state directory (default {DEFAULT_ROOT})")
    p.add_argument("--log", help="write errors to this file")
    p.add_argument("--log-format", choices=["text", "json"], default="text")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--cgroup-manager", choices=["cgroupfs", "disabled"], default="cgroupfs")
    p.add_argument("--systemd-cgroup", action="store_true")
    p.add_argument("-v", "--version", action="version", version=f"mini-runc 0.1.0\nspec: {OCI_VERSION}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    def with_create_flags(q: argparse.ArgumentParser) -> None:
        q.add_argument("-b", "--bundle", default=".", help="the bundle directory (default .)")
        q.add_argument("--pid-file", help="write the container's pid here")
        q.add_argument("--console-socket", help="send the pty master over this unix socket")
        q.add_argument("--no-pivot", action="store_true", help="accepted; pivot_root is always used")
        q.add_argument("--no-new-keyring", action="store_true", help="accepted")
        q.add_argument("--preserve-fds", type=int, default=0, metavar="N",
                       help="pass descriptors 3 .. 3+N-1 on to the container")
        q.add_argument("id")

    with_create_flags(sub.add_parser("create", help="set a container up, waiting for start"))
    run = sub.add_parser("run", help="create and start, and wait unless -d")
    run.add_argument("-d", "--detach", action="store_true")
    with_create_flags(run)
    sub.add_parser("start", help="let a created container run").add_argument("id")
    ex = sub.add_parser("exec", help="run a process in a running container")
    ex.add_argument("-p", "--process", help="a process.json (the config's process object)")
    ex.add_argument("-d", "--detach", action="store_true")
    ex.add_argument("-t", "--tty", action="store_true")
    ex.add_argument("--pid-file")
    ex.add_argument("--console-socket")
    ex.add_argument("--cwd")
    ex.add_argument("-e", "--env", action="append", default=[])
    ex.add_argument("-u", "--user", help="UID[:GID]")
    ex.add_argument("--no-new-privs", action="store_true")
    ex.add_argument("id")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND")
    sub.add_parser("state", help="print a container's state as JSON").add_argument("id")
    kill = sub.add_parser("kill", help="send a signal (default SIGTERM)")
    kill.add_argument("-a", "--all", action="store_true", help="to every process of the container")
    kill.add_argument("id")
    kill.add_argument("signal", nargs="?", default="SIGTERM")
    delete = sub.add_parser("delete", help="remove a stopped container")
    delete.add_argument("-f", "--force", action="store_true", help="kill it first if it runs")
    delete.add_argument("id")
    ps = sub.add_parser("ps", help="the processes of a container (its cgroup's)")
    ps.add_argument("-f", "--format", choices=["table", "json"], default="table")
    ps.add_argument("id")
    lst = sub.add_parser("list", help="list containers")
    lst.add_argument("-f", "--format", choices=["table", "json"], default="table")
    lst.add_argument("-q", "--quiet", action="store_true")
    for name in ("pause", "resume"):
        sub.add_parser(name, help=f"{name} every process (cgroup.freeze)").add_argument("id")
    sub.add_parser("features", help="what this runtime supports, as JSON")
    spec = sub.add_parser("spec", help="write a default config.json")
    spec.add_argument("-b", "--bundle", default=".")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    log, log_format = _log_options(argv)
    try:
        return _main(argv)
    except ContainerError as exc:
        _log_error(str(exc), log, log_format)
        return exc.exit_code if exc.exit_code != ENGINE_FAILED else 1
    except OSError as exc:
        _log_error(f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc), log, log_format)
        return 1
    except Exception as exc:
        # A bug of ours: still one line (and in the log), the traceback on request.
        if os.environ.get("MINI_ENGINE_DEBUG"):
            raise
        _log_error(f"internal error: {type(exc).__name__}: {exc}", log, log_format)
        return 1


def _log_options(argv: list[str]) -> tuple[str | None, str]:
    """--log and --log-format, read before parsing: a parse error must be logged too.

    Only the global options count: after the subcommand, `--log` may be a
    word of the container's command line.
    """
    log, fmt = None, "text"
    for i, arg in enumerate(argv):
        if arg in COMMANDS:
            break
        for name in ("--log", "--log-format"):
            value = None
            if arg == name and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith(name + "="):
                value = arg.split("=", 1)[1]
            if value is not None:
                if name == "--log":
                    log = value
                else:
                    fmt = value
    return log, fmt


def _log_error(message: str, log: str | None, log_format: str) -> None:
    """One line on stderr, and one line per failure in --log (JSON if asked)."""
    print(f"mini-runc: {message}", file=sys.stderr)
    if not log:
        return
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    if log_format == "json":
        line = json.dumps({"level": "error", "msg": message, "time": now})
    else:
        line = f'time="{now}" level=error msg="{message}"'
    with open(log, "a") as f:
        f.write(line + "\n")


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.systemd_cgroup:
        raise ContainerError("--systemd-cgroup is not supported: use --cgroup-manager cgroupfs")
    root = os.path.abspath(args.root)
    if args.command in ("create", "run"):
        return _create(args, root)
    if args.command == "start":
        lifecycle.start(args.id, root)
        return 0
    if args.command == "exec":
        return _exec(args, root)
    if args.command == "state":
        print(json.dumps(_state(root, args.id), indent=2))
        return 0
    if args.command == "kill":
        _kill(root, args.id, process.parse_signal(args.signal), args.all)
        return 0
    if args.command == "delete":
        directory = state.container_dir(root, args.id)
        if args.force and not os.path.exists(os.path.join(directory, "state.json")):
            # Missing, or half made by a create that was killed: forced, fine.
            shutil.rmtree(directory, ignore_errors=True)
            return 0
        lifecycle.delete(args.id, root, force=args.force)
        return 0
    if args.command == "list":
        return _list(root, args.format, args.quiet)
    if args.command == "ps":
        return _ps(root, args.id, args.format)
    if args.command in ("pause", "resume"):
        cgroups.freeze(lifecycle.cgroup_of(args.id, root), args.command == "pause")
        return 0
    if args.command == "features":
        print(json.dumps(features(), indent=2))
        return 0
    if args.command == "spec":
        return _spec(args.bundle)
    raise AssertionError(args.command)


def _create(args: argparse.Namespace, root: str) -> int:
    from mini_engine.runtime import config as configfile

    terminal = configfile.load(os.path.abspath(args.bundle))["process"].get("terminal", False)
    console = _console(terminal, args.console_socket)
    try:
        for fd in range(3, 3 + args.preserve_fds):
            try:
                os.fstat(fd)
            except OSError:
                raise ContainerError(f"--preserve-fds {args.preserve_fds}: "
                                     f"descriptor {fd} is not open") from None
        created = lifecycle.create(args.id, args.bundle, root,
                                   console=console.fileno() if console else None,
                                   preserve_fds=args.preserve_fds)
    finally:
        if console:
            console.close()
    if args.pid_file:
        state.write_text(args.pid_file, str(created.pid))
    if args.command == "create":
        return 0
    try:
        with process.forwarding_signals(created.pid):
            lifecycle.start(args.id, root)
            if args.detach:
                return 0
            created.wait_exec()
            return process.wait(created.pid)
    finally:
        if not args.detach:
            lifecycle.delete(args.id, root, force=True)  # run leaves nothing, failed or not


def _exec(args: argparse.Namespace, root: str) -> int:
    """runc exec: the container's own process settings, with what the flags change."""
    if args.process:
        with open(args.process) as f:
            proc = json.load(f)
    else:
        if not args.cmd:
            raise ContainerError("exec needs a command, or -p process.json")
        state.load(root, args.id)  # it exists, or a clear error
        proc = dict(state.config(root, args.id)["process"], args=args.cmd, terminal=args.tty)
        proc["env"] = list(proc.get("env", [])) + args.env
        if args.cwd:
            proc["cwd"] = args.cwd
        if args.user:
            uid, _, gid = args.user.partition(":")
            proc["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        if args.no_new_privs:
            proc["noNewPrivileges"] = True
    console = _console(proc.get("terminal", False), args.console_socket)
    try:
        running = lifecycle.exec_in(args.id, root, proc, console=console.fileno() if console else None)
    finally:
        if console:
            console.close()
    if args.pid_file:
        state.write_text(args.pid_file, str(running.pid))
    running.wait_exec()
    if args.detach:
        return 0
    with process.forwarding_signals(running.pid):
        return process.wait(running.pid)


def _console(terminal: bool, path: str | None) -> socket.socket | None:
    """The --console-socket, connected here on the host's side (inside, its path is gone)."""
    if not terminal:
        if path:
            raise ContainerError("--console-socket given, but process.terminal is false")
        return None
    if not path:
        raise ContainerError("process.terminal is true: --console-socket is needed to hand "
                             "the terminal over")
    console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        console.connect(path)
    except OSError as exc:
        console.close()
        raise ContainerError(f"--console-socket {path}: {exc.strerror}") from None
    return console


def _state(root: str, container_id: str) -> dict[str, Any]:
    current = state.load(root, container_id)
    if current["status"] in ("created", "running") and lifecycle.paused(container_id, root):
        current["status"] = "paused"
    if current["status"] == "stopped":
        current.pop("pid", None)  # the spec: pid only while the process exists
    return current


def _kill(root: str, container_id: str, sig: int, everyone: bool) -> None:
    if not everyone:
        lifecycle.kill(container_id, root, sig)
        return
    path = lifecycle.cgroup_of(container_id, root)
    with open(os.path.join(path, "cgroup.procs")) as f:
        for pid in f.read().split():
            try:
                os.kill(int(pid), sig)
            except ProcessLookupError:
                pass


def _ps(root: str, container_id: str, fmt: str) -> int:
    """Every process in the container's cgroup; without one, its PID 1 alone."""
    pids = lifecycle.processes(container_id, root)
    if fmt == "json":
        print(json.dumps(pids))
        return 0
    print(f"{'PID':<10}CMD")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        print(f"{pid:<10}{cmd}")
    return 0


def _list(root: str, fmt: str, quiet: bool) -> int:
    ids = sorted(os.listdir(root)) if os.path.isdir(root) else []
    states = []
    for container_id in ids:
        try:
            states.append(_state(root, container_id))
        except ContainerError:
            continue
    if fmt == "json":
        print(json.dumps(states))
    elif quiet:
        for s in states:
            print(s["id"])
    else:
        print(f"{'ID':<20}{'PID':<10}{'STATUS':<10}{'BUNDLE':<40}CREATED")
        for s in states:
            print(f"{s['id']:<20}{s.get('pid', 0):<10}{s['status']:<10}{s['bundle']:<40}{s['created']}")
    return 0


def features() -> dict[str, Any]:
    """The runtime spec's features document (features.md)."""
    from mini_engine.runtime.config import CAPABILITY_NAMES, NAMESPACE_FILES
    from mini_engine.runtime.mounts import MOUNT_FLAGS, PROPAGATION

    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart",
                  "poststop"],
        "mountOptions": sorted(set(MOUNT_FLAGS) | set(PROPAGATION)),
        "linux": {
            "namespaces": sorted(NAMESPACE_FILES),
            "capabilities": list(CAPABILITY_NAMES),
            "cgroup": {"v1": False, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True, "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO",
                                                     "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
                                                     "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP",
                                                     "SCMP_ACT_TRACE", "SCMP_ACT_LOG"],
                        "archs": ["SCMP_ARCH_X86_64"]},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runtime-spec.features.runtime": "mini-runc"},
    }


def default_spec() -> dict[str, Any]:
    """What `runc spec` writes: a shell on a read-only rootfs, in new namespaces."""
    from mini_engine.runtime.mounts import DEFAULT_MOUNTS

    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "mini-runc",
        "mounts": [dict(m, options=list(m["options"])) for m in DEFAULT_MOUNTS],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount",
                                                        "cgroup")]},
    }


def _spec(bundle: str) -> int:
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise ContainerError(f"{path} exists already; remove it first")
    state.write_json(path, default_spec())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
