"""Stage 1, chroot: a root filesystem of its own, and why that is no jail (chapter 01)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

import pytest
from conftest import Engine, children, running_id

from mini_engine.labkit import chroot_escape_program
from mini_engine.runtime import chroot

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


@pytest.mark.stage(2)  # runs --stage 2: graded with stage 2, whose exercises it needs
def test_namespaces_stop_the_same_breakout(engine: Engine) -> None:
    # Stage 2: PID 1 is the container's own, its root is the container's.
    result = engine("--stage", "2", "run", "--rm", "busybox", "sh", "-c", BREAKOUT)
    assert (result.returncode, result.stdout) == (1, "no way out\n")


def _run_escape(engine: Engine, stage: str) -> subprocess.CompletedProcess[bytes]:
    """Copy the classic escape into a new container through stdin and run it:
    ``escape /bin/cat /etc/os-release`` climbs out, then cats what it finds."""
    return subprocess.run(
        engine.argv("--stage", stage, "run", "--rm", "-i", "busybox", "sh", "-c",
                    "cat > /escape && chmod 755 /escape && exec /escape /bin/cat /etc/os-release"),
        input=chroot_escape_program(), capture_output=True, env=engine.env, timeout=60)


def test_the_classic_escape_works_in_a_chroot(engine: Engine) -> None:
    """A second chroot into a subdirectory, the working directory left above
    it, then ".." up to the top: the host's /etc/os-release."""
    with open("/etc/os-release", "rb") as f:
        host = f.read()
    result = _run_escape(engine, "1")
    assert (result.returncode, result.stdout) == (0, host), result.stderr


@pytest.mark.stage(2)  # runs --stage 2: graded with stage 2, whose exercises it needs
def test_the_classic_escape_ends_at_the_containers_root_at_stage_2(engine: Engine) -> None:
    """After pivot_root, the top of the climb is the container's own root."""
    result = _run_escape(engine, "2")
    assert (result.returncode, result.stdout) == (1, b"")
    assert result.stderr == b"cat: can't open '/etc/os-release': No such file or directory\n"


def _climbs_out(enter: Callable[[str], None], rootfs: str, start: str) -> bool:
    """In a child process standing in ``start``: ``enter(rootfs)``, then 64
    times chdir(".."). Is the host's /etc/os-release then in reach?"""
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            os.chdir(start)
            enter(rootfs)
            for _ in range(64):
                os.chdir("..")
            code = 0 if os.path.exists("etc/os-release") else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) in (0, 1)
    return os.waitstatus_to_exitcode(status) == 0


def test_enter_chroot_alone_closes_the_door(tmp_path: os.PathLike) -> None:
    """chroot(2) leaves the working directory outside the new root, and ".."
    climbs from there to the host's "/". The runtime shuts that twice:
    enter_chroot's chdir("/"), and init's chdir to process.cwd right after.
    Without both, the command would start in the engine's directory on the
    host; with enter_chroot alone, it cannot."""
    rootfs = os.path.join(tmp_path, "rootfs")
    os.makedirs(os.path.join(rootfs, "etc"))
    assert _climbs_out(os.chroot, rootfs, str(tmp_path))  # chroot(2) and nothing else: out
    assert not _climbs_out(chroot.enter_chroot, rootfs, str(tmp_path))


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
