"""Shared fixtures: an engine with its own roots, the probe, and the leak check.

Tests drive ``mini-engine`` the way a learner does, as a command, and judge
it by what the kernel shows: namespace inodes, mountinfo, /proc. Each test
is checked for leaks: the mounts, the namespaces held by any process, and
the runtime's state directories must be the same after it as before it.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fixtures.netlab import CLEAN, NetLab

from mini_engine.course import trace
from mini_engine.course.exercises import EXERCISES
from mini_engine.runtime import cgroups

REPO = Path(__file__).resolve().parent.parent

# podman's cgroupfs manager makes a container's cgroups wherever the host's
# controllers are: on a hybrid host, in the cgroup v1 hierarchies the system
# owns. So podman runs only where memory and pids are on v2 (the test VM).
PODMAN_NEEDS_V2 = pytest.mark.skipif(
    not cgroups.on_v2("memory", "pids"),
    reason="podman's cgroupfs manager would write this host's cgroup v1 hierarchies: runs in the test VM")


def pytest_configure(config: pytest.Config) -> None:
    for n in range(11):
        config.addinivalue_line("markers", f"stage{n}: alias of stage({n}), for -m stage{n}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `@pytest.mark.stage(2)` is what the tests say; `-m stage2` selects it.
    for item in items:
        for mark in item.iter_markers("stage"):
            item.add_marker(f"stage{mark.args[0]}")


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """A command's output, once it has succeeded (its stderr says why not)."""
    assert result.returncode == 0, result.stderr
    return result.stdout


def inspect(engine: Engine, name: str) -> dict[str, Any]:
    """``inspect``'s record of one container or image."""
    return json.loads(ok(engine("inspect", name)))[0]


@dataclass
class Engine:
    """``mini-engine`` with roots of its own, run as a subprocess."""

    root: Path
    runroot: Path

    @property
    def env(self) -> dict[str, str]:
        # No network by default: a bridge would be made on the machine's own
        # network. The networking tests run the engine in a namespace of their own.
        return dict(os.environ, MINI_ENGINE_ROOT=str(self.root),
                    MINI_ENGINE_RUNROOT=str(self.runroot), MINI_ENGINE_NETWORK="none")

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mini_engine", *args]

    def __call__(self, *args: str, input: str | None = None,
                 timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
        kw.setdefault("env", self.env)
        # Under emulation (make arm-test) everything is many times slower.
        timeout *= float(os.environ.get("MINI_ENGINE_TEST_SLOWDOWN") or 1)
        return subprocess.run(self.argv(*args), input=input, text=True,
                              capture_output=True, timeout=timeout, **kw)

    def popen(self, *args: str, **kw: object) -> subprocess.Popen[str]:
        kw.setdefault("env", self.env)
        return subprocess.Popen(self.argv(*args), text=True, **kw)

    def probe(self, *args: str, stage: int = 2) -> dict:
        """Run the probe in a new container; return what it printed."""
        result = self("--stage", str(stage), "run", "--rm", *args, "busybox", "probe")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def containers(self) -> list[str]:
        d = self.root / "containers"
        return sorted(os.listdir(d)) if d.exists() else []

    def runtime_states(self) -> list[str]:
        d = self.runroot / "runtime"
        return sorted(os.listdir(d)) if d.exists() else []


@pytest.fixture(scope="session")
def engine_roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("engine")
    # 0755 all the way: with --userns the container's root is an
    # unprivileged host uid that must walk through to its rootfs.
    for p in (base, *base.parents):
        if str(p).startswith(str(tmp_path_factory.getbasetemp().parent)):
            p.chmod(0o755)
    return base / "lib", base / "run"


@pytest.fixture
def engine(engine_roots: tuple[Path, Path]) -> Engine:
    return Engine(*engine_roots)


@pytest.fixture
def tmpfs_engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine whose roots are on a tmpfs of their own: in the test VM /tmp is an
    overlay of the host's root over 9p, which overlayfs refuses as a container's
    upper directory, and where layers with extended attributes cannot be written."""
    base = tmp_path / "tmpfs"
    base.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", str(base)], check=True)
    try:
        yield Engine(base / "lib", base / "run")
    finally:
        subprocess.run(["umount", "-l", str(base)], check=True)


@pytest.fixture
def net(engine: Engine) -> Iterator[NetLab]:
    """The engine's roots on podman's default network, the bridge (not the suite's "none"),
    in playground namespaces of the test's own; what it made is gone after."""
    lab = NetLab(engine)
    try:
        yield lab
        assert lab.pruned_leftovers() == CLEAN
    finally:
        lab.close()


def host_namespaces(pid: int | str = "self") -> dict[str, int]:
    """{"net": inode, ...} of a process, as the probe prints them."""
    out = {}
    for name in ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"):
        link = os.readlink(f"/proc/{pid}/ns/{name}")
        out[name] = int(link.split("[")[1].rstrip("]"))
    return out


def _mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


def _held_namespaces() -> set[str]:
    """Every namespace some process on the machine holds, by inode."""
    held = set()
    for link in glob.glob("/proc/[0-9]*/ns/*"):
        try:
            held.add(os.readlink(link))
        except OSError:
            pass  # the process ended while we looked
    return held


def _links() -> set[str]:
    """The host's network links: a test may only touch namespaces it made itself."""
    return set(os.listdir("/sys/class/net"))


def _nft_tables() -> str:
    """The host's nftables tables (nobody's may change; ours may not stay)."""
    try:
        return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _cgroups() -> set[str]:
    """The engine's cgroups under cgroup v2, and anything of its name in a v1
    hierarchy, where nothing of ours may ever appear (v1 is the system's here)."""
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split() for line in f]
    v2 = [m[4] for m in mounts if m[m.index("-") + 1] == "cgroup2"]
    v1 = [m[4] for m in mounts if m[m.index("-") + 1] == "cgroup"]
    found = set(glob.glob(f"{v2[0]}/mini-engine/*/")) if v2 else set()
    for hierarchy in v1:
        found |= set(glob.glob(f"{hierarchy}/mini-engine*")) | set(glob.glob(f"{hierarchy}/*/mini-engine*"))
    return found


@pytest.fixture(autouse=True)
def needs_no_later_stage(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                         monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail a stage-N check whose engine calls an exercise of a later stage: in
    the student edition it would be BAD until the learner wrote that later
    stage (mini_engine/course/trace.py)."""
    mark = request.node.get_closest_marker("stage")
    if mark is None or not isinstance(mark.args[0], int):
        yield
        return
    log = tmp_path_factory.mktemp("trace") / "exercises"
    # Written by every engine the check runs: root's, and a rootless one's.
    log.touch()
    for path in (log.parent, log):
        path.chmod(0o666 if path == log else 0o755)
    monkeypatch.setenv(trace.VARIABLE, str(log))
    yield
    later = [f"{e.id} (stage {e.stage})" for e in EXERCISES
             if e.id in trace.called(log) and isinstance(e.stage, int) and e.stage > mark.args[0]]
    assert later == [], (f"this stage-{mark.args[0]} check runs {', '.join(later)}, which a learner "
                         "may not have written yet: run the engine with --stage, or mark the check "
                         "with the later stage")


def _runtime_state(runtime: Path) -> set[str]:
    """The containers the engine's runtime keeps state for."""
    return set(os.listdir(runtime)) if runtime.exists() else set()


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest, engine_roots: tuple[Path, Path]) -> Iterator[None]:
    """Fail a test that leaves a mount, a namespace, a cgroup, a link, an nft table or runtime state behind."""
    runtime = engine_roots[1] / "runtime"
    before = (_mounts(), _held_namespaces(), _cgroups(), _links(), _nft_tables(), _runtime_state(runtime))
    yield
    left = sorted(_runtime_state(runtime) - before[5])
    if left:
        # Removed here, so that one test's leftover fails that test alone,
        # not every later one (a grade of 600 BAD lines for one slow test).
        for name in left:
            subprocess.run([sys.executable, "-m", "mini_engine", "--runroot", str(engine_roots[1]), "runtime",
                            "--root", str(runtime), "delete", "--force", name], capture_output=True, timeout=60)
    assert left == [], f"runtime state left behind: {left}"
    assert _mounts() - before[0] == set(), "mounts left behind"
    assert _cgroups() - before[2] == set(), "cgroups left behind"
    assert _links() == before[3], "the host's links changed"
    assert _nft_tables() == before[4], "the host's nftables tables changed"
    # A failed load or unpack leaves no half blob or half layer in the store.
    halves = glob.glob(f"{engine_roots[0]}/*/.tmp-*") + glob.glob(f"{engine_roots[0]}/blobs/*/.tmp-*")
    assert halves == [], f"partial store entries left behind: {halves}"
    # A container whose parent went first (mini-runc create, a killed engine)
    # is reaped by the host's init after it dies, in init's own time.
    for _ in range(100):
        if not _held_namespaces() - before[1]:
            break
        time.sleep(0.05)
    assert _held_namespaces() - before[1] == set(), "namespaces held open by a leftover process"


@dataclass
class ImageFiles:
    """Images built by umoci and converted by skopeo (tests/fixtures/images.py)."""

    layout: Path          # an OCI layout directory: tags single, multi, many (bare tags)
    single: Path          # OCI archive of single, named example.test/single:1
    many: Path            # OCI archive of many (45 layers), named example.test/many:1
    multi_docker: Path    # docker-save archive of multi, named example.test/multi:docker
    multi_oci: Path       # OCI archive of multi, named example.test/multi:1
    zstd: Path            # OCI layout of multi with zstd layers, named example.test/zstd:1


@pytest.fixture(scope="session")
def test_images(tmp_path_factory: pytest.TempPathFactory, engine_roots: tuple[Path, Path]) -> ImageFiles:
    from fixtures.images import build_layout, skopeo

    from mini_engine.images import busybox
    from mini_engine.paths import Paths

    work = tmp_path_factory.mktemp("images")
    rootfs = busybox.image(Paths(str(engine_roots[0]), str(engine_roots[1]))).rootfs
    layout = build_layout(work, rootfs)
    images = ImageFiles(layout, work / "single.tar", work / "many.tar", work / "multi-docker.tar",
                        work / "multi.tar", work / "zstd")
    skopeo("copy", f"oci:{layout}:single", f"oci-archive:{images.single}:example.test/single:1")
    skopeo("copy", f"oci:{layout}:many", f"oci-archive:{images.many}:example.test/many:1")
    skopeo("copy", f"oci:{layout}:multi", f"docker-archive:{images.multi_docker}:example.test/multi:docker")
    skopeo("copy", f"oci:{layout}:multi", f"oci-archive:{images.multi_oci}:example.test/multi:1")
    skopeo("copy", "--dest-compress-format", "zstd", f"oci:{layout}:multi",
           f"oci:{images.zstd}:example.test/zstd:1")
    return images


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid``, read from /proc."""
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.split("/")[2]))
    return out


def read_until_closed(master: int) -> str:
    """Everything a pty's master gives until the slave side is gone, without \\r."""
    out = b""
    while True:
        try:
            data = os.read(master, 1024)
        except OSError:
            break  # EIO: every slave descriptor is closed
        if not data:
            break
        out += data
    os.close(master)
    return out.replace(b"\r", b"").decode()


def running_id(engine: Engine) -> str:
    """The id of the one container of ``engine`` that runs now."""
    records = json.loads(engine("ps", "--format", "json").stdout)
    ids = [r["Id"] for r in records if r["State"]["Status"] == "running"]
    assert len(ids) == 1, records
    return ids[0]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-transcripts", action="store_true",
                     help="rewrite the book's transcripts whose output differs (tests/fixtures/transcripts.py)")
