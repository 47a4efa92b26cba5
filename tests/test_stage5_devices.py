"""Stage 5: layers that hold device nodes and FIFOs, as debootstrap-made images do.

As root the nodes are made as the layer says, as docker, podman, containerd
and umoci make them; whether a container may open one is the device
filter's to decide (stage 6), and it refuses the host's console and disks.
Rootless, no one may make a device node: they are skipped, with one notice
line. FIFOs are always made.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Engine
from test_stage5_hostile import Member, busybox_layer, device, make_layout, named, symlink

pytestmark = [pytest.mark.stage(5), pytest.mark.root]

MTIME = 1_700_000_000


def _owned(member: Member, mode: int, uid: int, gid: int) -> Member:
    info, data = member
    info.mode, info.uid, info.gid = mode, uid, gid
    return info, data


def fifo(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.mtime = tarfile.FIFOTYPE, MTIME
    return info, None


def devices_layer() -> list[Member]:
    """A block device (the host's first disk), a character device (the host
    kernel's log) and a FIFO, each with its own owner and mode."""
    return [_owned(device("disk", tarfile.BLKTYPE, 8, 0), 0o640, 0, 6),
            _owned(device("kmsg", tarfile.CHRTYPE, 1, 11), 0o600, 0, 0),
            _owned(fifo("pipe"), 0o620, 1000, 1000)]


def runnable() -> list[Member]:
    """busybox, with the applets these tests run."""
    return busybox_layer() + [symlink(f"bin/{applet}", "busybox") for applet in ("sh", "head", "echo")]


def layer_dir(engine: Engine, diff_id: str) -> Path:
    return engine.root / "layers" / diff_id[len("sha256:"):] / "diff"


@pytest.mark.stage(6)  # the device filter that refuses the nodes is stage 6's
def test_a_layer_makes_devices_and_fifos_as_it_says(engine: Engine, tmp_path: Path) -> None:
    layout = make_layout(tmp_path / "image", "example.test/devices:1", [runnable(), devices_layer()])
    loaded = engine("load", "-i", str(layout.path))
    assert loaded.returncode == 0, loaded.stderr
    try:
        assert (loaded.stdout, loaded.stderr) == ("Loaded image: example.test/devices:1\n", "")
        diff = layer_dir(engine, layout.diff_ids[1])
        nodes = {}
        for name in ("disk", "kmsg", "pipe"):
            st = os.lstat(diff / name)
            nodes[name] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                           os.major(st.st_rdev), os.minor(st.st_rdev), st.st_mtime)
        assert nodes == {"disk": (stat.S_IFBLK, 0o640, 0, 6, 8, 0, MTIME),
                         "kmsg": (stat.S_IFCHR, 0o600, 0, 0, 1, 11, MTIME),
                         "pipe": (stat.S_IFIFO, 0o620, 1000, 1000, 0, 0, MTIME)}
        # In the container the nodes are there, and the device filter refuses
        # both with EPERM; the FIFO carries what is written into it.
        script = "head -c1 /disk; head -c1 /kmsg; echo through > /pipe & head -n1 /pipe"
        # --stage 6: a learner there has not written stage 8's volumes yet.
        ran = engine("--stage", "6", "run", "--rm", layout.tag, "sh", "-c", script)
        assert ran.stdout == "through\n"
        assert ran.stderr == "head: /disk: Operation not permitted\nhead: /kmsg: Operation not permitted\n"
    finally:
        engine("rmi", layout.tag)


def test_rootless_skips_device_nodes_with_one_notice(tmp_path: Path) -> None:
    """uid 65534 loads the same image: its kernel lets it make the FIFO, no device."""
    home = Path(tempfile.mkdtemp(prefix="rootless-", dir="/tmp"))
    try:
        os.chmod(home, 0o755)
        layout = make_layout(home / "image", "example.test/devices:1", [runnable(), devices_layer()])
        os.chown(home, 65534, 65534)
        env = dict(os.environ, HOME=str(home), MINI_ENGINE_ROOT=str(home / "lib"),
                   MINI_ENGINE_RUNROOT=str(home / "run"), MINI_ENGINE_NETWORK="none")

        def engine(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                                   sys.executable, "-m", "mini_engine", *args],
                                  capture_output=True, text=True, env=env, timeout=120, cwd="/")

        loaded = engine("load", "-i", str(layout.path))
        assert loaded.returncode == 0, loaded.stderr
        assert loaded.stdout == "Loaded image: example.test/devices:1\n"
        assert loaded.stderr == (f"mini-engine: {named(layout, 1)}: skipped 2 device nodes (disk, kmsg): "
                                 "rootless, no one may make them (the container's /dev has its own)\n")
        diff = home / "lib" / "layers" / layout.diff_ids[1][len("sha256:"):] / "diff"
        assert sorted(os.listdir(diff)) == ["pipe"]
        assert stat.S_ISFIFO(os.lstat(diff / "pipe").st_mode)
        ran = engine("--stage", "5", "run", "--rm", layout.tag, "sh", "-c",
                     "echo through > /pipe & head -n1 /pipe")
        assert (ran.returncode, ran.stdout) == (0, "through\n"), ran.stderr
    finally:
        shutil.rmtree(home)


@pytest.fixture(scope="module")
def debian_with_devices(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Debian 12 as debootstrap leaves it, /dev/console and friends in its one
    layer, made an image by umoci and pushed to a docker-registry; and the tar."""
    from fixtures.images import debian_layout, debian_tar
    from fixtures.registry import Registry

    if shutil.which("debootstrap") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have debootstrap: scripts/install-system-deps.sh --test installs it")
        pytest.skip("debootstrap is not installed (scripts/install-system-deps.sh --test)")
    work = tmp_path_factory.mktemp("debian-dev")
    layout = debian_layout(work, devices=True)
    with Registry(work) as registry:
        registry.push(f"oci:{layout}:debian", "base/debian:12")
        yield f"{registry.host}/base/debian:12", debian_tar(work, devices=True)


@pytest.mark.stage(8)  # its probe mounts the layer's /dev with -v (stage 8)
def test_a_debootstrap_image_pulls_and_its_console_does_not_open(
        engine: Engine, debian_with_devices: tuple[str, Path]) -> None:
    image, rootfs = debian_with_devices
    with tarfile.open(rootfs) as tar:
        wanted = {m.name.removeprefix("./dev/"): (m.devmajor, m.devminor, m.mode)
                  for m in tar if m.name.startswith("./dev/") and m.ischr()}
    assert {"console", "null", "tty", "ptmx"} <= set(wanted)
    pulled = engine("pull", "-q", image)
    assert pulled.returncode == 0, pulled.stderr
    try:
        assert pulled.stderr == ""
        record = json.loads(engine("inspect", image).stdout)[0]
        dev = layer_dir(engine, record["Layers"][0]["diffID"]) / "dev"
        made = {}
        for name in wanted:
            st = os.lstat(dev / name)
            assert stat.S_ISCHR(st.st_mode), name
            made[name] = (os.major(st.st_rdev), os.minor(st.st_rdev), stat.S_IMODE(st.st_mode))
        assert made == wanted and made["console"][:2] == (5, 1)
        ran = engine("run", "--rm", image, "cat", "/etc/debian_version")
        assert ran.returncode == 0 and ran.stdout.startswith("12."), ran.stderr
        # The runtime's /dev tmpfs hides the layer's; a volume of the layer's
        # own /dev shows its console to the container, which may not open it:
        # the device filter answers EPERM. /dev/null (1:3) is on its list.
        # (Opened, never read: were it the host's console, a read would wait.)
        script = ("stat -c '%F %t:%T' /image-dev/console; : </image-dev/null && echo null opens; "
                  ": </image-dev/console && echo console opens")
        probe = engine("run", "--rm", "-v", f"{dev}:/image-dev:ro", image, "bash", "-c", script)
        assert probe.stdout == "character special file 5:1\nnull opens\n"
        assert probe.stderr == "bash: line 1: /image-dev/console: Operation not permitted\n"
        assert probe.returncode == 1
    finally:
        engine("rmi", image)
