"""Everyday docker habits on mini-engine's command line (issue 21), typed as a docker user types them.

``rm -f $(ps -aq)``, ``ps --filter``, ``--format '{{.Names}}'``, ``inspect -f``,
``run --label``, ``--env-file``, ``--cidfile``, ``--pull``, ``container ls``, ``image ls``,
``version``, ``info``, and ``--help`` for every option. Each test runs the engine as a
command and checks what it prints, to the byte where docker's output is fixed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import Engine, ImageFiles, ok

from mini_engine.stages import STAGES

pytestmark = [pytest.mark.stage(8), pytest.mark.root]


def lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return ok(result).splitlines()


def shell(engine: Engine, script: str) -> subprocess.CompletedProcess[str]:
    """``script`` in sh, with ``mini-engine`` the engine under test, as a user's shell has it."""
    me = shlex.join(engine.argv())
    return subprocess.run(["sh", "-c", f"mini_engine() {{ {me} \"$@\"; }}; {script}"], env=engine.env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def three(engine: Engine) -> Any:
    """web (running, team=blue), job (exited 0, team=red), bare (exited 3, no label), made in that order."""
    assert ok(engine("ps", "-aq")) == "", "the engine has containers left by another test"
    ids = {"web": ok(engine("run", "-d", "--name", "web", "-l", "team=blue", "--label", "tier",
                            "busybox", "sleep", "100")).strip()}
    assert engine("run", "--name", "job", "--label", "team=red", "busybox", "true").returncode == 0
    assert engine("run", "--name", "bare", "busybox", "sh", "-c", "exit 3").returncode == 3
    for name in ("job", "bare"):
        ids[name] = json.loads(ok(engine("inspect", name)))[0]["Id"]
    yield {name: cid[:12] for name, cid in ids.items()}
    engine("rm", "-f", *ids.values())


def test_rm_f_of_ps_aq_removes_everything(engine: Engine, three: dict[str, str]) -> None:
    assert lines(engine("ps", "-q")) == [three["web"]]
    assert sorted(lines(engine("ps", "-aq"))) == sorted(three.values())
    removed = shell(engine, "mini_engine rm -f $(mini_engine ps -aq)")
    assert removed.returncode == 0, removed.stderr
    assert len(removed.stdout.split()) == 3
    assert ok(engine("ps", "-aq")) == ""
    assert os.listdir(engine.root / "containers") == []


@pytest.mark.parametrize(("filters", "expected"), [
    (["name=web"], ["web"]),
    (["name=^b"], ["bare"]),  # docker's name filter is a regular expression
    (["status=exited"], ["bare", "job"]),
    (["status=running"], ["web"]),
    (["status=running", "status=exited"], ["bare", "job", "web"]),  # one key twice: either
    (["label=team"], ["job", "web"]),
    (["label=team=red"], ["job"]),
    (["label=tier"], ["web"]),
    (["label=team", "status=exited"], ["job"]),  # two keys: both
    (["ancestor=busybox"], ["bare", "job", "web"]),
    (["ancestor=busybox:latest"], ["bare", "job", "web"]),
    (["ancestor=busybox:1.0"], []),
    (["ancestor=nosuch"], []),
])
def test_ps_filter(engine: Engine, three: dict[str, str], filters: list[str], expected: list[str]) -> None:
    argv = [word for f in filters for word in ("--filter", f)]
    # A status filter looks at every container, as docker's; the others, with -a.
    found = lines(engine("ps", "-a", *argv, "--format", "{{.Names}}"))
    assert sorted(found) == expected
    short = lines(engine("ps", "-a", *[w.replace("--filter", "-f") for w in argv], "-q"))
    assert sorted(short) == sorted(three[name] for name in expected)


def test_ps_filter_by_id_and_by_image_id(engine: Engine, three: dict[str, str]) -> None:
    assert lines(engine("ps", "-a", "--filter", f"id={three['job'][:6]}", "-q")) == [three["job"]]
    image_id = json.loads(ok(engine("inspect", "web")))[0]["ImageId"]
    assert len(lines(engine("ps", "-aq", "--filter", f"ancestor={image_id[7:19]}"))) == 3


def test_ps_last_and_latest_are_the_newest_first(engine: Engine, three: dict[str, str]) -> None:
    assert lines(engine("ps", "-n", "2", "--format", "{{.Names}}")) == ["bare", "job"]
    assert lines(engine("ps", "-l", "-q")) == [three["bare"]]
    assert lines(engine("ps", "--last", "5", "--format", "{{.Names}}")) == ["bare", "job", "web"]
    assert lines(engine("ps", "-n", "-1", "-q")) == [three["web"]]  # docker's default, -1: as if not given


@pytest.mark.parametrize(("argv", "message"), [
    (["--filter", "colour=red"],
     'invalid filter "colour=red": expected KEY=VALUE, KEY one of name, status, label, ancestor, id'),
    (["--filter", "status"],
     'invalid filter "status": expected KEY=VALUE, KEY one of name, status, label, ancestor, id'),
    (["--filter", "status=sleeping"],
     'invalid filter "status=sleeping": a status is one of created, running, paused, exited'),
    (["--format", "{{.Nmes}}"],
     "template: can't evaluate field Nmes: the fields are Command, CreatedAt, ID, Image, Label, Labels, "
     "Mounts, Names, Networks, Ports, RunningFor, Stage, State, Status"),
    (["--format", "{{.Names"], "template: unclosed action: {{.Names"),
    (["--bogus"], "unknown flag: --bogus (see 'mini-engine ps --help')"),
])
def test_ps_bad_input_is_one_line_and_125(engine: Engine, three: dict[str, str], argv: list[str],
                                         message: str) -> None:
    result = engine("ps", "-a", *argv)
    assert (result.returncode, result.stdout, result.stderr) == (125, "", f"mini-engine: {message}\n")


def test_ps_format(engine: Engine, three: dict[str, str]) -> None:
    fmt = '{{.Names}} {{.State}} {{.Label "team"}}'
    assert ok(engine("ps", "-a", "--filter", "name=job", "--format", fmt)) == "job exited red\n"
    # docker's table: a header of the fields' headers, columns three spaces apart and ten wide at least.
    assert ok(engine("ps", "-a", "--filter", "label=team", "--format",
                     "table {{.Names}}\\t{{.Image}}\\t{{.State}}\\t{{.Command}}")) in (
        'NAMES     IMAGE     STATE     COMMAND\n'
        'job       busybox   exited    "true"\n'
        'web       busybox   running   "sleep 100"\n',
        'NAMES     IMAGE     STATE     COMMAND\n'
        'web       busybox   running   "sleep 100"\n'
        'job       busybox   exited    "true"\n')  # in the order of their (random) ids
    row = json.loads(ok(engine("ps", "--format", "{{json .}}")))
    assert sorted(row) == ["Command", "CreatedAt", "ID", "Image", "Labels", "Mounts", "Names", "Networks",
                           "Ports", "RunningFor", "Stage", "State", "Status"]
    assert (row["ID"], row["Names"], row["Image"], row["State"], row["Command"], row["Stage"]) == (
        three["web"], "web", "busybox", "running", '"sleep 100"', STAGES[-1].number)
    assert {"team=blue", "tier="} <= set(row["Labels"].split(","))
    assert re.fullmatch(r"Up (Less than a second|\d+ seconds?)", row["Status"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000 UTC", row["CreatedAt"])
    exited = ok(engine("ps", "-a", "--filter", "name=bare", "--format", "{{.Status}}"))
    assert re.fullmatch(r"Exited \(3\) (Less than a second|\d+ seconds?) ago\n", exited)
    # --format json is the records, as before.
    records = json.loads(ok(engine("ps", "--format", "json")))
    assert [r["Name"] for r in records] == ["web"]


def test_paused_shows_in_a_template(engine: Engine, three: dict[str, str]) -> None:
    ok(engine("pause", "web"))
    try:
        assert ok(engine("ps", "--format", "{{.State}}")) == "paused\n"
        assert ok(engine("ps", "-a", "--filter", "status=paused", "-q")) == f"{three['web']}\n"
        assert ok(engine("container", "inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "web")) == \
            "paused true\n"
    finally:
        ok(engine("unpause", "web"))


def test_inspect_format(engine: Engine, three: dict[str, str]) -> None:
    out = ok(engine("inspect", "-f", '{{.Name}} {{.State.Status}} {{.State.ExitCode}} '
                                     '{{index .Config.Labels "team"}}', "web", "job", "bare"))
    assert out == "web running 0 blue\njob exited 0 red\nbare exited 3 <no value>\n"
    assert ok(engine("inspect", "--format", "{{json .Config.Cmd}}", "web")) == '["sleep","100"]\n'
    assert ok(engine("inspect", "-f", "{{.Config.Labels.tier}}|{{len .Mounts}}", "web")) == "|0\n"
    whole = json.loads(ok(engine("inspect", "web")))[0]
    assert json.loads(ok(engine("inspect", "-f", "{{json .}}", "web"))) == whole
    # An image: the same flag.
    image = json.loads(ok(engine("inspect", "busybox")))[0]
    assert ok(engine("image", "inspect", "-f", "{{.Id}} {{len .RootFS.Layers}}", "busybox")) == \
        f"{image['Id']} {len(image['RootFS']['Layers'])}\n"


def test_images_format(engine: Engine) -> None:
    image_id = ok(engine("inspect", "-f", "{{.Id}}", "busybox")).strip()
    assert f"localhost/busybox:latest {image_id[7:19]}" in lines(
        engine("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"))
    table = lines(engine("image", "ls", "--format", "table {{.Repository}}\\t{{.Tag}}\\t{{.Layers}}"))
    assert table[0].split() == ["REPOSITORY", "TAG", "LAYERS"]
    assert table[0].index("TAG") == table[0].index("REPOSITORY") + max(len(r.split()[0]) for r in table) + 3
    assert any(row.split() == ["localhost/busybox", "latest", "1"] for row in table[1:])
    row = json.loads(next(line for line in lines(engine("image", "list", "--format", "{{json .}}"))
                          if '"localhost/busybox"' in line))
    assert sorted(row) == ["CreatedAt", "CreatedSince", "Digest", "ID", "Layers", "Repository", "Size", "Tag"]
    assert row["Digest"].startswith("sha256:") and row["Size"].endswith("MB")


def test_volume_and_network_format(engine: Engine) -> None:
    ok(engine("volume", "create", "habits"))
    ok(engine("network", "create", "--subnet", "10.97.3.0/24", "habitnet"))
    try:
        mountpoint = engine.root / "volumes" / "habits" / "_data"
        assert ok(engine("volume", "ls", "--format", "{{.Name}} {{.Driver}} {{.Mountpoint}}")) == \
            f"habits local {mountpoint}\n"
        assert ok(engine("volume", "ls", "-q")) == "habits\n"
        assert ok(engine("volume", "inspect", "-f", "{{.Mountpoint}}", "habits")) == f"{mountpoint}\n"
        assert ok(engine("volume", "ls", "--format", "table {{.Name}}\\t{{.Driver}}")) == (
            "VOLUME NAME   DRIVER\nhabits        local\n")
        assert ok(engine("network", "ls", "--format", "{{.Name}} {{.Subnet}} {{.Containers}}")) == (
            "bridge 10.88.0.0/16 0\nhabitnet 10.97.3.0/24 0\n")
        assert ok(engine("network", "ls", "-q")) == "bridge\nhabitnet\n"
    finally:
        ok(engine("network", "rm", "habitnet"))
    # volume prune: what no container uses.
    assert ok(engine("volume", "prune", "-f")) == "habits\n"
    assert ok(engine("volume", "ls", "-q")) == ""
    # No volume: the table's header alone.
    empty = ok(engine("volume", "ls", "--format", "table {{.Name}}\\t{{.Mountpoint}}"))
    assert empty == "VOLUME NAME   MOUNTPOINT\n"


def test_labels_env_file_and_cidfile(engine: Engine, tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text('# settings\n\nGREETING=hello world\n  QUOTED="kept as is"\nFROM_HOST\nA=from-file\n')
    cidfile = tmp_path / "cid"
    env = dict(engine.env, FROM_HOST="the host's")
    result = engine("run", "--name", "envy", "--env-file", str(env_file), "-e", "A=from-flag",
                    "--cidfile", str(cidfile), "-l", "app=habits", "busybox", "sh", "-c",
                    'echo "$GREETING|$QUOTED|$FROM_HOST|$A"', env=env)
    try:
        assert ok(result) == 'hello world|"kept as is"|the host\'s|from-flag\n'
        record = json.loads(ok(engine("inspect", "envy")))[0]
        assert cidfile.read_text() == record["Id"]
        assert record["Config"]["Labels"]["app"] == "habits"
        assert ok(engine("ps", "-a", "--filter", "label=app=habits", "-q")) == f"{record['Id'][:12]}\n"
        # A cidfile that exists: refused before anything is made (docker's guard against two runs).
        again = engine("run", "--cidfile", str(cidfile), "busybox", "true")
        assert (again.returncode, again.stderr) == (
            125, f"mini-engine: --cidfile {cidfile}: the file exists; a container may be using it "
                 "(remove it first)\n")
        assert lines(engine("ps", "-aq")) == [record["Id"][:12]]
        # start runs it with what it was given, though the file has gone since.
        env_file.unlink()
        ok(engine("start", "envy"))
        assert ok(engine("wait", "envy")) == "0\n"
        # Its log: the foreground run's line, then start's (docker's log keeps both).
        assert ok(engine("logs", "envy")) == 'hello world|"kept as is"|the host\'s|from-flag\n' * 2
    finally:
        ok(engine("rm", "-f", "envy"))
    missing = engine("run", "--env-file", str(env_file), "busybox", "true")
    assert (missing.returncode, missing.stderr) == (
        125, f"mini-engine: --env-file {env_file}: No such file or directory\n")
    bad = tmp_path / "bad.env"
    bad.write_text("OK=1\nNOT OK=2\n")
    refused = engine("run", "--env-file", str(bad), "busybox", "true")
    assert (refused.returncode, refused.stderr) == (
        125, f'mini-engine: --env-file {bad}, line 2: "NOT OK" is no variable name\n')
    assert ok(engine("ps", "-aq")) == ""


def test_exec_env_file(engine: Engine, tmp_path: Path) -> None:
    env_file = tmp_path / "exec.env"
    env_file.write_text("WHO=exec\nB=file\n")
    ok(engine("run", "-d", "--name", "execenv", "busybox", "sleep", "100"))
    try:
        assert ok(engine("exec", "--env-file", str(env_file), "-e", "B=flag", "execenv",
                         "sh", "-c", 'echo "$WHO $B"')) == "exec flag\n"
    finally:
        ok(engine("rm", "-f", "execenv"))


def test_pull_policy(engine: Engine, test_images: ImageFiles, tmp_path: Path) -> None:
    from fixtures.registry import Registry

    def manifest_requests(registry: Registry) -> int:
        registry.log.flush()
        return (registry.work / "registry.log").read_text().count("/manifests/")

    # The image's entrypoint is sh: its command, -c true.
    with Registry(tmp_path) as registry:
        registry.push(f"oci:{test_images.layout}:single", "habits/pull:1")
        image = f"{registry.host}/habits/pull:1"
        pushed = manifest_requests(registry)
        never = engine("run", "--rm", "--pull", "never", image, "-c", "true")
        assert never.returncode == 125
        assert never.stderr.startswith(f'mini-engine: image "{image}" is not here')
        assert never.stderr.endswith("; --pull never: pull it first (mini-engine pull), or drop --pull never\n")
        assert manifest_requests(registry) == pushed
        try:
            ok(engine("run", "--rm", image, "-c", "true"))  # missing, the default: pulled
            pulled = manifest_requests(registry)
            assert pulled > pushed
            ok(engine("run", "--rm", "--pull", "missing", image, "-c", "true"))
            ok(engine("run", "--rm", "--pull", "never", image, "-c", "true"))
            assert manifest_requests(registry) == pulled  # here: not asked for again
            ok(engine("run", "--rm", "--pull", "always", image, "-c", "true"))
            assert manifest_requests(registry) > pulled  # asked again, though here
            registry.stop()
            gone = engine("run", "--rm", "--pull", "always", image, "-c", "true")
            assert gone.returncode == 125 and "pulling it failed" in gone.stderr
            ok(engine("run", "--rm", "--pull", "missing", image, "-c", "true"))
        finally:
            engine("rmi", image)
    assert ok(engine("ps", "-aq")) == ""


def test_management_commands_are_the_same_commands(engine: Engine, three: dict[str, str]) -> None:
    assert ok(engine("container", "ls", "-q")) == ok(engine("ps", "-q"))
    assert ok(engine("container", "list", "-a", "--format", "{{.Names}}")) == \
        ok(engine("ps", "-a", "--format", "{{.Names}}"))
    logs, same = engine("container", "logs", "job"), engine("logs", "job")
    assert (logs.returncode, logs.stdout, logs.stderr) == (same.returncode, same.stdout, same.stderr)

    def pid() -> str:
        return ok(engine("container", "inspect", "-f", "{{.State.Pid}}", "web"))

    before = pid()
    ok(engine("container", "start", "web"))  # running already: nothing changes
    assert pid() == before
    ok(engine("container", "restart", "-t", "1", "web"))  # restart, not start: stopped, then started
    assert pid() != before
    assert ok(engine("image", "ls", "-q")) == ok(engine("images", "-q"))
    assert ok(engine("container", "rm", "bare")).startswith(three["bare"])
    assert three["bare"] not in ok(engine("ps", "-aq"))
    unknown = engine("container", "ls", "--bogus")
    assert (unknown.returncode, unknown.stderr) == (
        125, "mini-engine: unknown flag: --bogus (see 'mini-engine container ls --help')\n")


def test_version_and_info(engine: Engine, three: dict[str, str]) -> None:
    assert ok(engine("version", "--format", "{{.Client.Version}} {{.Server.Version}}")) == "0.1.0 0.1.0\n"
    assert ok(engine("version", "-f", "{{.Server.KernelVersion}}")) == f"{os.uname().release}\n"
    version = json.loads(ok(engine("version", "--format", "json")))
    assert version["Server"]["Runtime"] == "mini-runc (in-process)"
    info = json.loads(ok(engine("info", "--format", "json")))
    assert (info["Containers"], info["ContainersRunning"], info["ContainersStopped"]) == (3, 1, 2)
    assert info["DockerRootDir"] == str(engine.root)
    assert info["NCPU"] == os.cpu_count()
    cgroup2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    assert ok(engine("info", "-f", "{{.CgroupVersion}}")) == ("2\n" if cgroup2 else "1\n")
    # What doctor found, in info's shape.
    doctor = json.loads(ok(engine("doctor", "--json")))
    assert info["Kernel"] == {f["name"]: f["ok"] for f in doctor["features"]}
    assert info["Stages"] == {f"{s['number']} {s['slug']}": s["works"] for s in doctor["stages"]}
    text = ok(engine("info"))
    assert " Containers:         3\n ContainersRunning:  1\n" in text
