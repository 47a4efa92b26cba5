"""Everyday docker habits with containers (issue 21, item 6), typed as a docker user types them.

``events`` (followed, and from the journal with ``--since``/``--until``/``--filter``/
``--format``), ``rename``, ``update`` (its refusal here, its cgroup files in the test
VM), ``system df`` and ``system prune``. ``port`` and ``network connect`` need a
bridge: they are in test_stage7_connect.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Engine, ok

from mini_engine.labkit import wait_until
from mini_engine.runtime import cgroups

pytestmark = [pytest.mark.stage(8), pytest.mark.root]

needs_v2 = pytest.mark.skipif(not cgroups.on_v2("memory", "cpu", "pids"),
                              reason="needs memory, cpu and pids on cgroup v2: runs in the test VM")


def fails(result: subprocess.CompletedProcess[str], message: str, code: int = 125) -> None:
    assert (result.returncode, result.stdout, result.stderr) == (code, "", f"mini-engine: {message}\n")


@pytest.fixture
def own(tmp_path: Path) -> Iterator[Engine]:
    """An engine with roots of its own: what it counts and prunes is this test's alone."""
    engine = Engine(tmp_path / "lib", tmp_path / "run")
    yield engine
    left = engine("ps", "-aq").stdout.split()
    if left:  # a test that failed half-way: its containers go, for the leak check's sake
        engine("rm", "-f", *left)


@pytest.fixture
def own_on_tmpfs(tmp_path: Path) -> Iterator[Engine]:
    """``own``, its roots on a tmpfs of their own: in the test VM /tmp is an overlay, which
    overlayfs cannot take as its upper directory (a container's root above stage 3)."""
    fs = tmp_path / "fs"
    fs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(fs)], check=True)
    try:
        engine = Engine(fs / "lib", fs / "run")
        yield engine
        left = engine("ps", "-aq").stdout.split()
        if left:
            engine("rm", "-f", *left)
    finally:
        subprocess.run(["umount", str(fs)], check=True)


class Follower:
    """``mini-engine events ...`` running, its lines read as they come."""

    def __init__(self, engine: Engine, *args: str) -> None:
        self.proc = engine.popen("events", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[str] = []

    def until(self, last: str, timeout: float = 60) -> list[str]:
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), True)
        deadline = time.monotonic() + timeout
        while last not in self.lines and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip("\n"))
        return self.lines

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.wait(timeout=30) == 130  # Ctrl-C, as docker events ends


def gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture
def follower(own: Engine) -> Iterator[Any]:
    made: list[Follower] = []

    def start(*args: str) -> Follower:
        made.append(Follower(own, *args))
        time.sleep(1)  # without --since it shows what happens from its start on
        return made[-1]

    yield start
    for f in made:
        if f.proc.poll() is None:
            f.proc.kill()
            f.proc.wait()


def test_events_are_followed_as_they_happen_and_kept(own: Engine, follower: Any) -> None:
    t0 = time.time()
    watching = follower("--filter", "label=team=blue", "--format", "{{.Action}} {{.Actor.Attributes.name}}")
    cid = ok(own("run", "-d", "--name", "web", "-l", "team=blue", "busybox", "sleep", "100")).strip()
    ok(own("run", "--rm", "busybox", "true"))  # not team blue: filtered out
    ok(own("pause", "web"))
    ok(own("unpause", "web"))
    ok(own("rename", "web", "web2"))
    ok(own("stop", "-t", "1", "web2"))
    ok(own("rm", "web2"))
    expected = ["create web", "start web", "pause web", "unpause web", "rename web2", "die web2", "stop web2",
                "destroy web2"]
    assert watching.until("destroy web2") == expected
    watching.stop()
    # The journal keeps them: --since and --until read it back, and stop there.
    since, until = str(int(t0)), f"{time.time():.3f}"
    history = ok(own("events", "--since", since, "--until", until, "--filter", f"container={cid[:12]}",
                     "--format", "{{.Action}}")).split()
    assert history == [line.split()[0] for line in expected]
    died = json.loads(ok(own("events", "--since", "5m", "--until", "0s", "--filter", "event=die",
                             "--filter", "label=team", "--format", "json")))
    assert (died["Type"], died["Action"], died["Actor"]["ID"]) == ("container", "die", cid)
    attributes = died["Actor"]["Attributes"]
    attributes.pop("org.mini-engine.bundled")  # the bundled image's own label
    assert attributes == {"team": "blue", "image": "busybox", "name": "web2", "exitCode": "137"}
    # docker's default line: the time to the nanosecond, type, action, id, attributes in order.
    line = ok(own("events", "--since", since, "--until", until, "--filter", "event=rename")).strip()
    stamp, rest = line.split(" ", 1)
    assert stamp.endswith("Z") and len(stamp) == len("2024-01-31T10:00:00.123456789Z")
    assert rest.startswith(f"container rename {cid} (image=busybox, name=web2, oldName=web, ")
    # Root's alone, as the containers' records are.
    journal = own.runroot / "events.jsonl"
    assert (journal.stat().st_mode & 0o777, journal.stat().st_uid) == (0o600, 0)


def test_events_of_many_engines_at_once_and_of_a_killed_ones_successor(own: Engine, follower: Any) -> None:
    watching = follower("--format", "{{.Action}} {{.Actor.Attributes.name}}")
    runs = [own.popen("run", "--rm", "--name", f"c{i}", "busybox", "true") for i in range(4)]
    assert [proc.wait(timeout=120) for proc in runs] == [0] * 4
    # A detached container whose monitor is killed: the next engine (rm -f) says what became of it.
    ok(own("run", "-d", "--name", "orphan", "busybox", "sleep", "100"))
    monitor = json.loads(ok(own("inspect", "orphan")))[0]["State"]["MonitorPid"]
    os.kill(monitor, signal.SIGKILL)
    assert wait_until(lambda: gone(monitor))
    ok(own("rm", "-f", "orphan"))
    lines = watching.until("destroy orphan")
    watching.stop()
    for i in range(4):  # every line whole, and each run's in its order
        mine = [line.split()[0] for line in lines if line.endswith(f" c{i}")]
        assert mine == ["create", "start", "die", "destroy"]
    assert [line for line in lines if line.endswith(" orphan")] == \
        ["create orphan", "start orphan", "destroy orphan"]
    for raw in (own.runroot / "events.jsonl").read_text().splitlines():
        json.loads(raw)


@pytest.mark.parametrize(("argv", "message"), [
    (["--filter", "colour=red"],
     'invalid filter "colour=red": expected KEY=VALUE, KEY one of container, event, image, label, type, '
     "network"),
    (["--since", "yesterday"], "--since 'yesterday': expected a Unix time (1700000000), a date "
                               "(2024-01-31T10:00:00Z) or a duration before now (10m, 1h30m)"),
    (["--until", "1h30x"], "--until '1h30x': expected a Unix time (1700000000), a date "
                           "(2024-01-31T10:00:00Z) or a duration before now (10m, 1h30m)"),
    (["--since", "0", "--until", "1", "--format", "{{.Nope"], "template: unclosed action: {{.Nope"),
])
def test_events_bad_input_is_one_line(own: Engine, argv: list[str], message: str) -> None:
    fails(own("events", *argv), message)


def test_rename_moves_the_name_and_frees_the_old_one(own: Engine) -> None:
    cid = ok(own("run", "-d", "--name", "web", "busybox", "sleep", "100")).strip()
    ok(own("run", "--name", "other", "busybox", "true"))
    assert ok(own("rename", "web", "site")) == ""
    assert ok(own("ps", "--format", "{{.Names}}")) == "site\n"
    fails(own("rename", "web", "x"), 'container "web" does not exist')
    fails(own("rename", "site", "other"), 'the name "other" is in use by container '
                                          f'{json.loads(ok(own("inspect", "other")))[0]["Id"][:12]}; '
                                          "remove it first (mini-engine rm)")
    fails(own("rename", "site", "no/slash"), '--name "no/slash": use letters, digits, "_", "." and "-" '
                                             "(first a letter or digit), at most 64")
    fails(own("rename", "nosuch", "x"), 'container "nosuch" does not exist')
    # The old name is free again; the new one survives the container's exit, which its
    # monitor records (it held the record from before the rename).
    ok(own("run", "--rm", "--name", "web", "busybox", "true"))
    ok(own("stop", "-t", "1", "site"))
    assert json.loads(ok(own("inspect", cid)))[0]["Name"] == "site"
    assert sorted(os.listdir(own.root / "names")) == ["other", "site"]
    ok(own("rm", "site", "other"))
    assert os.listdir(own.root / "names") == []


@pytest.mark.skipif(cgroups.on_v2("memory"), reason="the refusal is for a host without memory on cgroup v2")
def test_update_where_the_controller_is_missing_is_refused_and_changes_nothing(own: Engine) -> None:
    ok(own("run", "-d", "--name", "web", "busybox", "sleep", "100"))
    before = (own.root / "containers").joinpath(json.loads(ok(own("inspect", "web")))[0]["Id"],
                                                "container.json").read_text()
    result = own("update", "--memory", "64m", "web")
    assert result.returncode == 125 and result.stdout == ""
    assert result.stderr.startswith('mini-engine: cgroup controller "memory" is not available here')
    assert result.stderr.count("\n") == 1
    assert ok(own("inspect", "-f", "{{.HostConfig.Memory}}", "web")) == "0\n"
    after = (own.root / "containers").joinpath(json.loads(ok(own("inspect", "web")))[0]["Id"],
                                               "container.json").read_text()
    assert after == before
    fails(own("update", "web"), "update needs a limit to change: --memory, --memory-swap, --cpus, "
                                "--cpu-shares, --pids-limit, --blkio-weight...")
    ok(own("rm", "-f", "web"))


@needs_v2
def test_update_changes_a_running_containers_cgroup_and_a_restart_keeps_it(own_on_tmpfs: Engine) -> None:
    own = own_on_tmpfs
    cid = ok(own("run", "-d", "--name", "web", "--memory", "64m", "--pids-limit", "50", "busybox",
                 "sleep", "300")).strip()
    group = Path(cgroups.mount_point()) / "mini-engine" / cid
    assert (group / "memory.max").read_text() == f"{64 << 20}\n"
    assert ok(own("update", "--memory", "128m", "--cpus", "0.5", "--pids-limit", "20", "web")) == "web\n"
    assert [(group / name).read_text() for name in ("memory.max", "cpu.max", "pids.max")] == \
        [f"{128 << 20}\n", "50000 100000\n", "20\n"]
    shown = json.loads(ok(own("inspect", "-f", "{{json .HostConfig}}", "web")))
    assert (shown["Memory"], shown["NanoCpus"], shown["PidsLimit"]) == (128 << 20, 500_000_000, 20)
    # A restart runs with them: the saved run has them.
    ok(own("restart", "-t", "1", "web"))
    assert wait_until(lambda: (group / "pids.max").exists())
    assert [(group / name).read_text() for name in ("memory.max", "cpu.max", "pids.max")] == \
        [f"{128 << 20}\n", "50000 100000\n", "20\n"]
    ok(own("rm", "-f", "web"))
    assert not group.exists()


def test_system_df_counts_and_prune_gives_it_back(own: Engine, tmp_path: Path) -> None:
    ok(own("volume", "create", "data"))
    ok(own("volume", "create", "kept"))
    ok(own("run", "--name", "writer", "-v", "data:/data", "busybox", "sh", "-c",
           "head -c 100000 /dev/zero > /big; echo -n hello > /data/x"))
    ok(own("run", "-d", "--name", "web", "-v", "kept:/kept", "busybox", "sleep", "100"))
    image = json.loads(ok(own("inspect", "busybox")))[0]
    layers = own.root / "layers"
    size = sum(int((layers / layer["diffID"][7:] / "size").read_text()) for layer in image["Layers"])
    assert size > 0

    def human(n: float) -> str:
        units = ["B", "kB", "MB", "GB"]
        while n >= 1000:
            n, units = n / 1000, units[1:]
        return f"{n:.4g}{units[0]}"

    listed = ok(own("system", "df", "--format", "{{.Type}}|{{.TotalCount}}|{{.Active}}|{{.Size}}|"
                                                "{{.Reclaimable}}")).splitlines()
    assert listed == [f"Images|1|1|{human(size)}|0B (0%)",
                      "Containers|2|1|100kB|100kB (100%)",  # /big; /data/x is the volume's
                      "Local Volumes|2|2|5B|0B (0%)"]  # writer, stopped, still uses data
    table = ok(own("system", "df")).splitlines()
    assert table[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert table[2].split() == ["Containers", "2", "1", "100kB", "100kB", "(100%)"]
    # Asked first: anything but yes changes nothing.
    declined = own("system", "prune", "--volumes", input="n\n")
    assert declined.returncode == 0 and declined.stdout.endswith("Are you sure you want to continue? [y/N] ")
    assert "all anonymous and named volumes not used by at least one container" in declined.stdout
    assert len(ok(own("ps", "-aq")).split()) == 2
    writer = json.loads(ok(own("inspect", "writer")))[0]["Id"]
    pruned = own("system", "prune", "-f", "--volumes")
    assert (pruned.returncode, pruned.stderr) == (0, "")
    assert pruned.stdout == (f"Deleted Containers:\n{writer}\n\nDeleted Volumes:\ndata\n\n"
                             "Total reclaimed space: 100kB\n")
    assert ok(own("ps", "-a", "--format", "{{.Names}}")) == "web\n"
    assert ok(own("volume", "ls", "-q")) == "kept\n"
    # The image stays while web uses it; -a takes it once nothing does.
    ok(own("rm", "-f", "web"))
    again = ok(own("system", "prune", "-a", "-f"))
    assert again == f"Deleted Images:\n{image['Id']}\n\nTotal reclaimed space: {human(size)}\n"
    assert ok(own("system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Size}}")).splitlines() == \
        ["Images 0 0B", "Containers 0 0B", "Local Volumes 1 0B"]
    ok(own("volume", "rm", "kept"))
