"""The command line's tables (cli.COMMANDS, run's flags in mini_engine/flags.py) and the typed
container record.

No root, no container: the parsers, the stage check and the record on disk, read
as the engine reads them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from mini_engine import cli, flags
from mini_engine.base import identity
from mini_engine.base.errors import ContainerError
from mini_engine.containers import record as containers
from mini_engine.containers.run import Request, check_flags
from mini_engine.paths import Paths
from mini_engine.stages import STAGES


def leaves(kind: type) -> list[tuple[str, dataclasses.Field[Any]]]:
    """(owner, field) for every flag of ``kind``, groups opened."""
    out = []
    for f in dataclasses.fields(kind):
        if "group" in f.metadata:
            out += leaves(f.metadata["group"])
        else:
            out.append((kind.__name__, f))
    return out


def parse(*argv: str) -> Request:
    """``mini-engine run ARGV`` as the command line reads it."""
    return flags.from_namespace(Request, cli.build_parser("run").parse_args(["run", *argv]))


def describe(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """A parser as data: each argument's names, destination, default, help... and its subcommands'."""
    out: dict[str, Any] = {"prog": parser.prog, "description": parser.description, "actions": []}
    for action in parser._actions:
        entry = {"names": action.option_strings, "dest": action.dest, "kind": type(action).__name__,
                 "default": action.default, "help": action.help, "metavar": action.metavar,
                 "nargs": action.nargs, "type": action.type, "required": action.required,
                 "choices": action.choices}
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            entry["choices"] = {name: dict(describe(p), help=helps[name]) for name, p in action.choices.items()}
        out["actions"].append(entry)
    return out


def test_the_parser_of_one_command_is_the_whole_parsers_part() -> None:
    """Only the command named gets its parser built (start-up time), and it is the same."""
    whole = describe(cli.build_parser())
    commands = whole["actions"][-1]["choices"]
    assert list(commands) == list(cli.COMMANDS)
    for name in cli.COMMANDS:
        alone = describe(cli.build_parser(name))
        assert list(alone["actions"][-1]["choices"]) == [name]
        assert alone["actions"][-1]["choices"][name] == commands[name]
    # A word that is no command: every parser, for argparse's error message.
    assert describe(cli.build_parser("frobnicate")) == whole


def test_every_run_flag_declares_the_stage_it_needs() -> None:
    fields = leaves(Request)
    assert len(fields) == 54
    for owner, f in fields:
        assert "flag" in f.metadata, f"{owner}.{f.name}"
        assert f.metadata["flag"].since in STAGES


def test_a_field_that_is_not_declared_as_a_flag_is_an_error() -> None:
    @dataclasses.dataclass
    class Careless:
        rm: bool = flags.flag("--rm", since=STAGES[0], action="store_true")
        forgotten: int = 0

    message = "Careless.forgotten is not a flag: declare it with flag() or group()"
    with pytest.raises(TypeError, match=re.escape(message)):
        flags.add_arguments(argparse.ArgumentParser(), Careless)
    with pytest.raises(TypeError, match=re.escape(message)):
        flags.given(Careless(forgotten=1))


def _an_argument(declared: flags.Flag) -> list[str]:
    """The flag, given with a value it accepts."""
    options = declared.options
    if options.get("action") == "store_true":
        return [declared.name]
    value = ({"--restart": "always", "--log-opt": "max-size=1m", "--stop-signal": "TERM"}.get(declared.name)
             or ("1" if options.get("type") is int else "x"))
    return [declared.name, options["choices"][-1] if "choices" in options else value]


@pytest.mark.parametrize("owner_field", leaves(Request)[:-1], ids=lambda of: of[1].name)
def test_each_flag_is_refused_below_its_stage_and_taken_from_it_on(
        owner_field: tuple[str, dataclasses.Field[Any]]) -> None:
    declared: flags.Flag = owner_field[1].metadata["flag"]
    request = parse(*_an_argument(declared), "busybox", "true")
    assert [f.name for f in flags.given(request)] == [declared.name, "args"]
    if declared.root_only and identity.rootless():
        with pytest.raises(ContainerError, match=f"^{declared.name} is not available rootless"):
            check_flags(request, STAGES[-1])
        return
    check_flags(request, declared.since)
    if declared.since.number > 0:
        below = STAGES[declared.since.number - 1]
        with pytest.raises(ContainerError) as refused:
            check_flags(request, below)
        assert str(refused.value) == (f"{declared.name} needs stage {declared.since.number} or above "
                                      f"(this is stage {below.number}, {below.slug})")


# A record as the engine wrote it before the record was typed: `run -d --name web -p 8080:80
# --restart on-failure:2 -v data:/data -e SECRET=x --userns auto --cap-add NET_ADMIN busybox
# sleep 100`, on the bridge, at 62e4de0.
OLD_RECORD = {
    "Id": "0c1bc9274225283acffd0e5960baa5ddade9fc4008a2bd95066aeca5edda1a0c", "Image": "busybox",
    "Created": "2026-12-04T04:51:59.997231+00:00", "Stage": 8,
    "State": {"Status": "running", "Pid": 16, "EnginePid": 12, "EngineStarted": 2179850,
              "StartedAt": "2026-12-04T04:52:00.371959+00:00"},
    "Lowers": ["l/a0f0eeedb5"],
    "ImageId": "sha256:2d29fc788ff2e5c393be732a89f8c79548e92c2ceee8567ff57333c3fb02aa22", "Name": "web",
    "Mounts": [{"Type": "volume", "Name": "data", "Source": "/var/lib/mini-engine/volumes/data/_data",
                "Destination": "/data", "RW": True, "Propagation": "rprivate"}],
    "Config": {"Cmd": ["sleep", "100"], "Image": "busybox", "Hostname": "0c1bc9274225",
               "RestartPolicy": "on-failure:2"},
    "Run": {"Request": {
        "args": ["busybox", "sleep", "100"], "rootfs": None, "rm": False, "interactive": False, "tty": False,
        "hostname": None, "env": ["SECRET=x"], "workdir": None, "userns": "auto", "time_offset": None,
        "limits": {"memory": None, "memory_swap": None, "cpus": None, "cpu_shares": None, "pids_limit": None,
                   "blkio_weight": None, "device_read_bps": [], "device_write_bps": []},
        "entrypoint": None, "user": None,
        "security": {"cap_add": ["NET_ADMIN"], "cap_drop": [], "privileged": False, "security_opt": []},
        "network": None, "name": "web", "publish": ["8080:80"], "publish_all": False, "detach": True,
        "restart": "on-failure:2", "volumes": ["data:/data"], "tmpfs": [], "read_only": False, "init": False},
        "Stage": 8},
    "IdMap": {"uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
              "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]},
    "NetworkSettings": {"Network": "bridge", "IPAddress": "10.88.0.2", "Gateway": "10.88.0.1",
                        "Ports": ["0.0.0.0:8080->80/tcp"]},
}


def test_a_record_written_before_the_record_was_typed_loads_and_saves_the_same(tmp_path: Path) -> None:
    paths = Paths(str(tmp_path / "lib"), str(tmp_path / "run"))
    bundle = Path(paths.containers) / OLD_RECORD["Id"]
    bundle.mkdir(parents=True)
    (bundle / "container.json").write_text(json.dumps(OLD_RECORD, indent=2))

    container = containers.load(paths, "0c1bc9274225")
    r = container.record
    assert (r.id, r.name, r.stage, r.lowers, r.image_id) == (
        OLD_RECORD["Id"], "web", 8, ["l/a0f0eeedb5"], OLD_RECORD["ImageId"])
    assert r.state == containers.State("running", 16, 12, 2179850, "2026-12-04T04:52:00.371959+00:00")
    assert r.config == containers.ContainerConfig(["sleep", "100"], "busybox", "0c1bc9274225", "on-failure:2")
    assert r.network_settings == containers.NetworkSettings("bridge", "10.88.0.2", "10.88.0.1",
                                                            ["0.0.0.0:8080->80/tcp"])
    assert r.id_map == OLD_RECORD["IdMap"] and r.mounts == OLD_RECORD["Mounts"] and r.restart_count == 0
    # `start` runs it again from the request it saved: the same as the command line's.
    assert r.run is not None and r.run.stage == 8
    assert flags.from_json(Request, r.run.request) == parse(
        "-d", "--name", "web", "-p", "8080:80", "--restart", "on-failure:2", "-v", "data:/data",
        "-e", "SECRET=x", "--userns", "auto", "--cap-add", "NET_ADMIN", "busybox", "sleep", "100")

    container.save()
    saved = json.loads((bundle / "container.json").read_text())
    # The same keys and values; what the old engine left unsaid now has its value said.
    assert saved == dict(OLD_RECORD, State=dict(OLD_RECORD["State"], ExitCode=0, OOMKilled=False),
                         RestartCount=0)
    assert containers.load(paths, OLD_RECORD["Id"]).record == r


def _every_command(commands: dict[str, cli.Command], prefix: str = "") -> list[tuple[str, cli.Command]]:
    out = []
    for name, command in commands.items():
        out.append((f"{prefix}{name}", command))
        out += _every_command(command.subcommands, f"{prefix}{name} ")
    return out


EVERY_COMMAND = _every_command(cli.COMMANDS)


@pytest.mark.parametrize(("words", "command"), EVERY_COMMAND, ids=[words for words, _ in EVERY_COMMAND])
def test_help_has_a_line_for_every_option(words: str, command: cli.Command) -> None:
    """Each argument of each command (run's flags too) says what it is for, in the command's own --help."""
    declared = [(a.names, a.options.get("help")) for a in command.args]
    if command.build is not None:  # run's flags (or some: pod create's limits), from mini_engine/flags.py
        parser = argparse.ArgumentParser(add_help=False)
        command.build(parser)
        added = {option for action in parser._actions for option in action.option_strings}
        run_flags = [f.metadata["flag"] for _, f in leaves(Request)]
        declared += [(f.names, f.options.get("help")) for f in run_flags if f.names[0] in added]
    assert [names for names, text in declared if not text] == []
    if not command.add_help:
        return  # handed on unparsed (mini-runc's, the course's): their own --help says the rest
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        cli.build_parser(words.split()[0]).parse_args([*words.split(), "--help"])
    assert done.value.code == 0
    shown = " ".join(out.getvalue().split())
    for names, text in declared:
        assert " ".join(str(text).split()) in shown, names
