"""Stage 1, chroot: a root filesystem of its own, and why that is no jail (chapter 01)."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import Engine, children, running_id

pytestmark = pytest.mark.stage(1)

# A root process in a chroot mounts /proc and follows another process's
# root link, which the kernel resolves against that process's "/": the host's.
BREAKOUT = (
    "mount -t proc proc /proc && for root in /proc/[0-9]*/root; do "
    "cat $root/etc/os-release 2>/dev/null && exit 0; done; echo no way out; exit 1"
)


def test_the_root_is_the_image(engine: Engine) -> None:
    result = engine("--stage", "1", "run", "--rm", "busybox", "sh", "-c",
                    "ls /; test -e /etc/os-release || echo no-host-files")
    assert result.returncode == 0, result.stderr
    listing = result.stdout.split()
    assert {"bin", "etc", "proc", "usr"} <= set(listing)
    assert listing[-1] == "no-host-files"


def test_the_kernel_sees_the_new_root(engine: Engine) -> None:
    proc = engine.popen("--stage", "1", "run", "--rm", "-i", "busybox", "sh", "-c",
                        "echo ready; read x", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == "ready\n"
    root = os.readlink(f"/proc/{children(proc.pid)[0]}/root")
    proc.communicate("\n", timeout=30)
    assert root.startswith(str(engine.root / "containers")) and root.endswith("/rootfs")


def test_writes_stay_in_the_container_copy(engine: Engine) -> None:
    engine("--stage", "1", "run", "--rm", "busybox", "sh", "-c", "echo mine > /etc/motd")
    result = engine("--stage", "1", "run", "--rm", "busybox", "cat", "/etc/motd")
    assert result.returncode == 1 and "No such file" in result.stderr


def test_same_pids_as_the_host(engine: Engine) -> None:
    result = engine("--stage", "1", "run", "--rm", "busybox", "sh", "-c", "echo $$")
    assert int(result.stdout) > 1


def test_chroot_is_not_a_jail(engine: Engine) -> None:
    with open("/etc/os-release") as f:
        host = f.read()
    result = engine("--stage", "1", "run", "--rm", "busybox", "sh", "-c", BREAKOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == host  # the host's file, read from inside


def test_namespaces_stop_the_same_breakout(engine: Engine) -> None:
    # Stage 2: PID 1 is the container's own, its root is the container's.
    result = engine("--stage", "2", "run", "--rm", "busybox", "sh", "-c", BREAKOUT)
    assert (result.returncode, result.stdout) == (1, "no way out\n")


def test_rootfs_flag_uses_the_directory(engine: Engine, tmp_path: os.PathLike) -> None:
    image = engine.root / "bundled" / "busybox" / "rootfs"
    engine("--stage", "1", "run", "--rm", "busybox", "true")  # builds the image if needed
    rootfs = tmp_path / "rootfs"
    subprocess.run(["cp", "-a", str(image), str(rootfs)], check=True)
    (rootfs / "marker").write_text("from --rootfs\n")
    result = engine("--stage", "1", "run", "--rm", "--rootfs", str(rootfs), "cat", "/marker")
    assert result.stdout == "from --rootfs\n"


def test_exec_lands_in_the_chroot(engine: Engine) -> None:
    proc = engine.popen("--stage", "1", "run", "--rm", "-i", "busybox", "sh", "-c", "echo ready; read x",
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == "ready\n"
    cid = running_id(engine)
    result = engine("exec", cid, "sh", "-c", "test -e /etc/os-release || echo jailed")
    proc.communicate("\n", timeout=30)
    assert result.stdout == "jailed\n"
