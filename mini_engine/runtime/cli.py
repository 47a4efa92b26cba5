"""``mini-runc``: the runtime on its own, with runc's command line.

Engines such as podman and containerd, and the OCI validation suite, drive
a runtime through this interface: ``create`` sets a container up and
returns while its process waits; ``start`` lets it run; ``state``, ``kill``
and ``delete`` find it again through ``--root``. ``mini-engine run`` uses
the same ``lifecycle`` functions in-process: one runtime, not two.
Spec: runtime.md ("Operations"); runc(8).

Every call of a runtime is a new process, and an engine makes several per
container: runc answers ``start`` or ``delete`` in a few milliseconds. So
each command imports only what it uses, inside it, and the command line
is read by the few lines below rather than argparse, which would cost
every call more than the whole of ``start``.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

from mini_engine.base import files, procfs
from mini_engine.base.defaults import OCI_VERSION
from mini_engine.base.errors import ENGINE_FAILED, ContainerError
from mini_engine.runtime import lifecycle, state

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: see mini_engine/runtime/__init__.py
    import socket
    from typing import Any

DEFAULT_ROOT = "/run/mini-runc"
VERSION = "0.1.0"

# [book:command-line]
# runc's command line: mini-runc [GLOBAL OPTIONS] COMMAND [OPTIONS] ARGUMENTS.
# An option is `--name VALUE`, `--name=VALUE` or a short `-n VALUE`; a flag
# (default False) takes no value. Each table maps an option to its default.
GLOBAL_OPTIONS: dict[str, Any] = {"root": DEFAULT_ROOT, "log": None, "log-format": "text", "debug": False,
                  "cgroup-manager": "cgroupfs", "systemd-cgroup": False, "version": False, "help": False}
GLOBAL_SHORT = {"v": "version", "h": "help"}
CHOICES = {"log-format": ("text", "json"), "cgroup-manager": ("cgroupfs", "systemd", "disabled"),
           "format": ("table", "json")}
CREATE_OPTIONS: dict[str, Any] = {"bundle": ".", "pid-file": None, "console-socket": None, "no-pivot": False,
                  "no-new-keyring": False, "preserve-fds": "0"}
# update's flags: where each goes in linux.resources, and how its value reads.
UPDATE_FLAGS: dict[str, tuple[str, str, str]] = {
    "memory": ("memory", "limit", "bytes"), "memory-swap": ("memory", "swap", "bytes"),
    "memory-reservation": ("memory", "reservation", "bytes"),
    "cpu-period": ("cpu", "period", "number"), "cpu-quota": ("cpu", "quota", "number"),
    "cpu-shares": ("cpu", "shares", "number"), "pids-limit": ("pids", "limit", "number"),
    "blkio-weight": ("blockIO", "weight", "number"),
}
# command: (what it does, its arguments, its options, its short options)
COMMANDS: dict[str, tuple[str, str, dict[str, Any], dict[str, str]]] = {
    "create": ("set a container up, waiting for start", "ID", CREATE_OPTIONS, {"b": "bundle"}),
    "run": ("create and start, and wait unless -d", "ID", {**CREATE_OPTIONS, "detach": False},
            {"b": "bundle", "d": "detach"}),
    "start": ("let a created container run", "ID", {}, {}),
    "state": ("print a container's state as JSON", "ID", {}, {}),
    "kill": ("send a signal (default SIGTERM; --all: to every process)", "ID [SIGNAL]",
             {"all": False}, {"a": "all"}),
    "delete": ("remove a stopped container (--force: kill it first)", "ID", {"force": False},
               {"f": "force"}),
    "exec": ("run a process in a running container", "ID [COMMAND...]",
             {"process": None, "detach": False, "tty": False, "pid-file": None, "console-socket": None,
              "cwd": None, "env": [], "user": None, "additional-gids": [], "cap": [], "no-new-privs": False,
              "preserve-fds": "0", "cgroup": [], "ignore-paused": False},
             {"p": "process", "d": "detach", "t": "tty", "e": "env", "u": "user", "g": "additional-gids",
              "c": "cap"}),
    "events": ("the container's resource use and OOM kills, as JSON lines", "ID",
               {"interval": "5s", "stats": False}, {}),
    "ps": ("the processes of a container (its cgroup's)", "ID", {"format": "table"}, {"f": "format"}),
    "list": ("list containers", "", {"format": "table", "quiet": False}, {"f": "format", "q": "quiet"}),
    "update": ("change a running container's limits (-r: linux.resources as JSON, - for stdin)", "ID",
               {"resources": None, **dict.fromkeys(UPDATE_FLAGS)}, {"r": "resources"}),
    "pause": ("pause every process (cgroup.freeze)", "ID", {}, {}),
    "resume": ("resume every process (cgroup.freeze)", "ID", {}, {}),
    "features": ("what this runtime supports, as JSON", "", {}, {}),
    "spec": ("write a default config.json", "", {"bundle": "."}, {"b": "bundle"}),
}
# What each option does, for --help: one line each, whichever command takes it.
DESCRIPTIONS = {
    "root": "the directory of the containers' state (best on a tmpfs)",
    "log": "append errors to this file too (default: stderr only)",
    "log-format": "the --log file's format: text or json",
    "debug": "accepted for runc's sake; changes nothing",
    "cgroup-manager": "cgroupfs (cgroup v2 files), or systemd (as --systemd-cgroup); disabled is ignored",
    "systemd-cgroup": 'a scope from systemd for each container; cgroupsPath reads "slice:prefix:name"',
    "version": "print the version and exit",
    "help": "print this help and exit",
    "bundle": "the bundle: the directory of config.json",
    "pid-file": "write the process's host pid to this file",
    "console-socket": "an AF_UNIX socket to send the terminal's master end to",
    "no-pivot": "enter the root with MS_MOVE and chroot, not pivot_root (for a rootfs on ramfs)",
    "no-new-keyring": "accepted for runc's sake: no session keyring is made anyway",
    "preserve-fds": "pass descriptors 3 to 3+N-1 on to the process",
    "detach": "return once the process runs; do not wait for it",
    "all": "send the signal to every process of the container's cgroup",
    "force": "kill the container first if it still runs",
    "process": ("the process as a JSON file (config.json's process), instead of COMMAND and "
                "-t, --cwd, -e, -u, -g, -c, --no-new-privs"),
    "tty": "give the process a terminal (needs --console-socket)",
    "cwd": "the working directory in the container",
    "env": "add VAR=VALUE to the environment (repeatable)",
    "user": "the user, as uid[:gid] in numbers",
    "additional-gids": "add a supplementary group, by number (repeatable)",
    "cap": "add a capability, e.g. CAP_NET_ADMIN (repeatable)",
    "no-new-privs": "set no_new_privs: execve grants no privilege",
    "cgroup": "run the process in this existing sub-cgroup of the container's",
    "ignore-paused": "exec into a paused container too (the process waits for resume)",
    "interval": "how often to print the stats, a duration such as 5s or 500ms",
    "stats": "print the stats once and exit",
    "format": "table or json",
    "quiet": "the ids alone",
    "resources": "linux.resources as a JSON file, - for stdin",
    "memory": "memory limit, e.g. 512m (-1: none)",
    "memory-swap": "memory and swap together, e.g. 1g (-1: no limit on swap)",
    "memory-reservation": "memory the kernel reclaims last (memory.low), e.g. 256m",
    "cpu-period": "the cpu.max period, in microseconds",
    "cpu-quota": "the CPU time allowed per period, in microseconds (-1: no limit)",
    "cpu-shares": "the relative CPU weight, as cgroup v1 shares (1024 is the default)",
    "pids-limit": "the most processes at once (-1: no limit)",
    "blkio-weight": "the relative I/O weight, 10 to 1000",
}


def parse(argv: list[str]) -> SimpleNamespace:
    """Read runc's command line into ``args.root``, ``args.pid_file``, ``args.id``...

    Raise a one-line error, or print the help and exit.
    """
    words = list(argv)
    values: dict[str, Any] = dict(GLOBAL_OPTIONS)
    take_options(words, values, GLOBAL_SHORT, stop_at_argument=True)
    if values["version"]:
        print(f"mini-runc {VERSION}\nspec: {OCI_VERSION}")
        raise SystemExit(0)
    if values["help"]:
        print(usage())
        raise SystemExit(0)
    if not words or words[0] not in COMMANDS:
        what = f"unknown command {words[0]!r}" if words else "a command is needed"
        raise ContainerError(f"{what} (see 'mini-runc --help')")
    command = words.pop(0)
    _, arguments, options, short = COMMANDS[command]
    values.update({name: list(v) if isinstance(v, list) else v for name, v in options.items()},
                  command=command, help=False)
    # exec's COMMAND is the container's own: its options are not ours.
    take_options(words, values, {**short, "h": "help"}, stop_at_argument=command == "exec")
    if values["help"]:
        print(usage(command))
        raise SystemExit(0)
    names = arguments.split()
    least = sum(1 for name in names if not name.startswith("["))
    if len(words) < least or (len(words) > len(names) and not arguments.endswith("...]")):
        raise ContainerError(f"{command} takes {arguments or 'no arguments'}, not {' '.join(words) or 'none'} "
                             f"(see 'mini-runc {command} --help')")
    if words:
        values["id"] = words[0]
    if command == "kill":
        values["signal"] = words[1] if len(words) > 1 else "SIGTERM"
    if command == "exec":
        values["cmd"] = words[2:] if words[1:2] == ["--"] else words[1:]
    if command in ("create", "run", "exec"):
        text = values["preserve-fds"]
        if not text.isdigit():
            raise ContainerError("--preserve-fds takes a number")
        values["preserve-fds"] = int(text)
    if command == "exec":
        for gid in values["additional-gids"]:
            if not gid.isdigit():
                raise ContainerError(f"--additional-gids {gid}: a group is a number, 0 or more")
        values["additional-gids"] = [int(gid) for gid in values["additional-gids"]]
    if command == "events":
        values["interval"] = seconds(values["interval"])
    return SimpleNamespace(**{name.replace("-", "_"): value for name, value in values.items()})


def seconds(duration: str) -> float:
    """A Go duration, as runc's --interval takes it: 5s, 500ms, 1m30s, 1.5h."""
    import re

    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", duration)
    if not duration or "".join(number + unit for number, unit in parts) != duration:
        raise ContainerError(f"--interval {duration}: a duration such as 5s, 500ms or 1m30s")
    total = sum(float(number) * units[unit] for number, unit in parts)
    if total <= 0:
        raise ContainerError("--interval: the interval must be greater than 0")
    return total


def take_options(words: list[str], values: dict[str, Any], short: dict[str, str],
                 stop_at_argument: bool = False) -> None:
    """Move the options in ``words`` into ``values`` (up to the first argument, if ``stop_at_argument``)."""
    flags = {name for name, default in values.items() if isinstance(default, bool)}
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":  # the end of the options
            del words[i]
            return
        if not word.startswith("-") or word == "-":  # an argument
            if stop_at_argument:
                return
            i += 1
            continue
        del words[i]
        option, equals, value = word.partition("=")
        # Go's flag package, which runc's command line is built on, takes
        # `-bundle` for `--bundle` too.
        name = option[2:] if option.startswith("--") else short.get(option[1:], option[1:])
        if name not in values or name == "command":
            raise ContainerError(f"unknown option {option} (see 'mini-runc --help')")
        if name in flags:  # on, or as Go's flags allow, --name=true or --name=false
            if value not in ("", "true", "false"):
                raise ContainerError(f"{option} takes no value, or =true or =false")
            values[name] = value != "false"
            continue
        if not equals:
            if i == len(words):
                raise ContainerError(f"{option} needs a value")
            value = words.pop(i)
        if value not in CHOICES.get(name, (value,)):
            raise ContainerError(f"{option} takes {' or '.join(CHOICES[name])}, not {value!r}")
        if isinstance(values[name], list):
            values[name].append(value)  # -e, again and again
        else:
            values[name] = value
# [/book:command-line]


def usage(command: str | None = None) -> str:
    """The help text, made from the tables above."""
    def option_lines(options: dict[str, Any], short: dict[str, str]) -> list[str]:
        letters = {long: f"-{letter}, " for letter, long in short.items()}
        width = max(len(f"{letters.get(name, '')}--{name} VALUE") for name in options) + 2
        lines = []
        for name, default in options.items():
            # A default worth saying: a value, not "unset" (None), off (False) or none yet ([]).
            said = f" (default: {default})" if default not in (None, False, [], "0") else ""
            option = f"{letters.get(name, '')}--{name}{'' if default is False else ' VALUE'}"
            lines.append(f"  {option:<{width}}{DESCRIPTIONS[name]}{said}")
        return lines

    if command:
        what, arguments, options, short = COMMANDS[command]
        return "\n".join([f"usage: mini-runc {command} [OPTIONS] {arguments}".rstrip(), "", what, "",
                          *option_lines({**options, "help": False}, {**short, "h": "help"})])
    return "\n".join(["usage: mini-runc [GLOBAL OPTIONS] COMMAND [OPTIONS] ARGUMENTS", "",
                      "an OCI runtime, with runc's command line", "", "commands:",
                      *(f"  {name:<10}{what}" for name, (what, *_) in COMMANDS.items()),
                      "", "global options:", *option_lines(GLOBAL_OPTIONS, GLOBAL_SHORT),
                      "", "'mini-runc COMMAND --help' lists the options of a command."])


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
    """--log and --log-format, read before the rest: a mistake in the rest must be logged too."""
    values = dict(GLOBAL_OPTIONS)
    try:
        take_options(list(argv), values, {}, stop_at_argument=True)
    except ContainerError:
        pass  # parse() will say what is wrong
    return values["log"], values["log-format"]


def _log_error(message: str, log: str | None, log_format: str) -> None:
    """One line on stderr, and one line per failure in --log (JSON if asked)."""
    print(f"mini-runc: {message}", file=sys.stderr)
    if not log:
        return
    import datetime
    import json

    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    if log_format == "json":
        line = json.dumps({"level": "error", "msg": message, "time": now})
    else:
        line = f'time="{now}" level=error msg="{message}"'
    with open(log, "a") as f:
        f.write(line + "\n")


def _main(argv: list[str]) -> int:
    args = parse(argv)
    root = os.path.abspath(args.root)
    if args.command in ("create", "run"):
        return _create(args, root)
    if args.command == "start":
        lifecycle.start(args.id, root)
        return 0
    if args.command == "exec":
        return _exec(args, root)
    if args.command == "state":
        import json

        print(json.dumps(_state(root, args.id), indent=2))
        return 0
    if args.command == "kill":
        from mini_engine.base.signals import parse_signal

        _kill(root, args.id, parse_signal(args.signal), args.all)
        return 0
    if args.command == "delete":
        lifecycle.delete(args.id, root, force=args.force)
        return 0
    if args.command == "events":
        return _events(root, args.id, args.interval, args.stats)
    if args.command == "list":
        return _list(root, args.format, args.quiet)
    if args.command == "ps":
        return ps(root, args.id, args.format)
    if args.command == "update":
        lifecycle.update(args.id, root, _resources(args))
        return 0
    if args.command in ("pause", "resume"):
        from mini_engine.runtime import cgroups

        cgroups.freeze(lifecycle.cgroup_of(args.id, root), args.command == "pause")
        return 0
    if args.command == "features":
        import json

        print(json.dumps(features(), indent=2))
        return 0
    if args.command == "spec":
        return _spec(args.bundle)
    raise AssertionError(args.command)


def _create(args: SimpleNamespace, root: str) -> int:
    from mini_engine.runtime import config as configfile
    from mini_engine.runtime import process

    terminal = configfile.load(os.path.abspath(args.bundle))["process"].get("terminal", False)
    console = _console(terminal, args.console_socket)
    try:
        _check_preserved(args.preserve_fds)
        created = lifecycle.create(args.id, args.bundle, root,
                                   console=console.fileno() if console else None,
                                   preserve_fds=args.preserve_fds, no_pivot=args.no_pivot,
                                   systemd_cgroup=args.systemd_cgroup or args.cgroup_manager == "systemd")
    finally:
        if console:
            console.close()
    if args.pid_file:
        files.write_text(args.pid_file, str(created.pid))
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


def _resources(args: SimpleNamespace) -> dict[str, Any]:
    """update's new limits: -r's JSON, then the flags over it (as runc: a flag wins)."""
    import json

    resources: dict[str, Any] = {}
    if args.resources:
        try:
            if args.resources == "-":
                resources = json.load(sys.stdin)
            else:
                with open(args.resources) as f:
                    resources = json.load(f)
        except ValueError as exc:
            raise ContainerError(f"-r {args.resources}: not JSON ({exc})") from None
        if not isinstance(resources, dict):
            raise ContainerError(f"-r {args.resources}: linux.resources is a JSON object")
    for option, (section, key, kind) in UPDATE_FLAGS.items():
        text = getattr(args, option.replace("-", "_"))
        if text is not None:
            value = _bytes(text) if kind == "bytes" else _number(text)
            if value is None:
                raise ContainerError(f"--{option} {text}: " + ("a size such as 512m, or -1 for no limit"
                                                              if kind == "bytes" else "a whole number"))
            resources.setdefault(section, {})[key] = value
    return resources


def _number(text: str) -> int | None:
    sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
    return int(sign + digits) if digits.isdigit() else None


def _bytes(text: str) -> int | None:
    """A size as runc reads it (Docker's go-units): 512, 512k, 64m, 1g (powers of 1024), -1."""
    digits = text.lower().removesuffix("b")
    scale = 1024 ** ("kmgt".index(digits[-1]) + 1) if digits[-1:] in ("k", "m", "g", "t") else 1
    number = _number(digits[:-1] if scale > 1 else digits)
    if number is None:
        return None
    return -1 if number < 0 else number * scale


# [book:exec-flags]
def _exec(args: SimpleNamespace, root: str) -> int:
    """runc exec: the container's own process settings, with what the flags change."""
    import json

    from mini_engine.runtime import process

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
            # The runtime reads no /etc/passwd: names are the engine's business (runc's too).
            uid, _, gid = args.user.partition(":")
            if not uid.isdigit() or not (gid or "0").isdigit():
                raise ContainerError(f"-u {args.user}: a uid[:gid] in numbers; the runtime does not "
                                     "look names up in the container's /etc/passwd")
            proc["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        if args.additional_gids:
            user = proc["user"] = dict(proc.get("user", {}))
            user["additionalGids"] = list(user.get("additionalGids", [])) + args.additional_gids
        if args.cap and proc.get("capabilities") is not None:
            # As runc: into the bounding, effective and permitted sets (the
            # ambient set only if the config has inheritable ones). Without
            # a capabilities object the process keeps all of root's anyway.
            caps = proc["capabilities"] = dict(proc["capabilities"])
            kinds = ["bounding", "effective", "permitted"] + (["ambient"] if "inheritable" in caps else [])
            for kind in kinds:
                caps[kind] = list(caps.get(kind, [])) + args.cap
        if args.no_new_privs:
            proc["noNewPrivileges"] = True
    if lifecycle.paused(args.id, root) and not args.ignore_paused:
        # Its first step, joining the frozen cgroup, would freeze it until resume.
        raise ContainerError("cannot exec in a paused container (use --ignore-paused to override)")
    _check_preserved(args.preserve_fds)
    console = _console(proc.get("terminal", False), args.console_socket)
    try:
        running = lifecycle.exec_in(args.id, root, proc, console=console.fileno() if console else None,
                                    preserve_fds=args.preserve_fds, sub_cgroup=_sub_cgroup(args.cgroup))
    finally:
        if console:
            console.close()
    if args.pid_file:
        files.write_text(args.pid_file, str(running.pid))
    running.wait_exec()
    if args.detach:
        return 0
    with process.forwarding_signals(running.pid):
        return process.wait(running.pid)


def _sub_cgroup(given: list[str]) -> str | None:
    """--cgroup: runc's [CONTROLLER[,CONTROLLER]:]PATH. cgroup v2 is one tree, so a
    path alone, or the same path for every controller named."""
    paths = {value.partition(":")[2] if ":" in value else value for value in given}
    if len(paths) > 1:
        raise ContainerError(f"--cgroup {' '.join(given)}: cgroup v2 is one tree; a process is "
                             "in one cgroup, not one per controller")
    return paths.pop() if paths else None
# [/book:exec-flags]


def _check_preserved(count: int) -> None:
    """--preserve-fds N: descriptors 3 to 3+N-1 must be open here, to be passed on."""
    for fd in range(3, 3 + count):
        try:
            os.fstat(fd)
        except OSError:
            raise ContainerError(f"--preserve-fds {count}: descriptor {fd} is not open") from None


def _console(terminal: bool, path: str | None) -> socket.socket | None:
    """The --console-socket, connected here on the host's side (inside, its path is gone)."""
    if not terminal:
        if path:
            raise ContainerError("--console-socket given, but process.terminal is false")
        return None
    if not path:
        raise ContainerError("process.terminal is true: --console-socket is needed to hand "
                             "the terminal over")
    import socket

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


def ps(root: str, container_id: str, fmt: str = "table") -> int:
    """Every process in the container's cgroup; without one, its PID 1 alone.
    (The engine's ``top`` prints the same table.)"""
    pids = lifecycle.processes(container_id, root)
    if fmt == "json":
        import json

        print(json.dumps(pids))
        return 0
    print(f"{'PID':<10}CMD")
    for pid in pids:
        cmd = procfs.command_line(pid)
        if cmd is not None:  # None: exited since
            print(f"{pid:<10}{cmd}")
    return 0


def _events(root: str, container_id: str, interval: float, once: bool) -> int:
    """runc events: one JSON object a line, as Go's json.Encoder writes them."""
    import json
    import signal

    from mini_engine.runtime import events

    # A reader that stops (`| head -2`) ends the stream quietly, as it ends runc:
    # Python ignores SIGPIPE, and would raise BrokenPipeError instead.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    def emit(event: dict[str, Any]) -> None:
        print(json.dumps(event, separators=(",", ":")), flush=True)

    _, _, status = state.status(root, container_id)
    if status == "stopped":
        raise ContainerError(f'container "{container_id}" is stopped: no events to show')
    path = lifecycle.cgroup_of(container_id, root)
    if once:
        emit({"type": "stats", "id": container_id, "data": events.stats(path)})
    else:
        events.watch(container_id, path, interval, emit)
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
        import json

        print(json.dumps(states))
    elif quiet:
        for s in states:
            print(s["id"])
    else:
        rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
        rows += [[s["id"], str(s.get("pid", 0)), s["status"], s["bundle"], s["created"],
                  _owner(os.path.join(root, s["id"]))] for s in states]
        # runc's table, laid out by Go's text/tabwriter (minwidth 12, padding
        # 3): a column is as wide as its widest cell and three spaces, at
        # least 12, so a long id or bundle never runs into the next column.
        widths = [max(12, *(len(row[i]) + 3 for row in rows)) for i in range(len(rows[0]) - 1)]
        for row in rows:
            print("".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + row[-1])
    return 0


def _owner(path: str) -> str:
    """Who made the container: the owner of its state directory, as runc shows it."""
    import pwd

    uid = os.stat(path).st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


# [book:features]
def features() -> dict[str, Any]:
    """The runtime spec's features document (features.md), read from the tables
    the code acts on: what it lists is what a config.json may ask for."""
    from mini_engine.base.capabilities import CAPABILITY_NAMES
    from mini_engine.base.syscall_table import SCMP_ARCH
    from mini_engine.runtime import seccomp
    from mini_engine.runtime.config import HOOK_KINDS, NAMESPACE_FILES
    from mini_engine.runtime.mounts import MOUNT_FLAGS, PROPAGATION

    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": sorted(set(MOUNT_FLAGS) | set(PROPAGATION)),
        "linux": {
            "namespaces": sorted(NAMESPACE_FILES),
            "capabilities": list(CAPABILITY_NAMES),
            # cgroup v2 only; --systemd-cgroup as root, through systemd's private socket.
            "cgroup": {"v1": False, "v2": True, "systemd": True, "systemdUser": False},
            "seccomp": {"enabled": True, "actions": sorted(seccomp.ACTIONS),
                        "operators": sorted(seccomp.OPERATORS),
                        # The filter checks the architecture it runs on, which must be one of these.
                        "archs": sorted(SCMP_ARCH[machine] for machine in seccomp.AUDIT_ARCH)},
            # config.json's apparmorProfile, selinuxLabel and intelRdt are refused (config.UNSUPPORTED).
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runtime-spec.features.runtime": "mini-runc",
                        "org.opencontainers.runtime-spec.features.version": VERSION},
    }
# [/book:features]


def default_spec() -> dict[str, Any]:
    """What `runc spec` writes: a shell on a read-only rootfs, in new namespaces."""
    from mini_engine.base.defaults import DEFAULT_MOUNTS

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
    files.write_json(path, default_spec())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
