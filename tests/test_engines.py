"""Real engines drive mini-runc: podman and containerd (ctr) run, exec, stop and remove.

Both write cgroups (cgroupfs); on a host that keeps its
controllers on cgroup v1 that would be the system's v1 hierarchies, so
these tests run only where cgroup v2 has the controllers: in the test VM
(scripts/test.sh runs `-m vm` there) or the Vagrant VM.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PODMAN_NEEDS_V2, REPO, Engine

from mini_engine.runtime import cgroups

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed"),
    PODMAN_NEEDS_V2,
]

RUNTIME = str(REPO / ".venv" / "bin" / "mini-runc")
SYSTEMD_PID1 = pytest.mark.skipif(not os.path.isdir("/run/systemd/system"),
                                  reason="systemd is not PID 1 here: runs in the test VM booted with --systemd")


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    base = tmp_path_factory.mktemp("podman")
    argv = ["podman", "--runtime", RUNTIME, "--cgroup-manager", "cgroupfs", "--storage-driver", "vfs",
            "--events-backend", "none", "--root", str(base / "root"), "--runroot", str(base / "run")]
    yield argv
    subprocess.run([*argv, "rm", "-a", "-f"], capture_output=True)
    subprocess.run([*argv, "system", "reset", "-f"], capture_output=True)


@pytest.fixture(scope="module")
def image(podman: list[str], engine_roots: tuple) -> str:
    Engine(*engine_roots)("--stage", "1", "run", "--rm", "busybox", "true")
    rootfs = engine_roots[0] / "bundled" / "busybox" / "rootfs"
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run([*podman, "import", "-q", "-", "localhost/busybox:latest"], stdin=tar.stdout,
                   check=True, capture_output=True)
    tar.wait()
    return "localhost/busybox:latest"


def run(podman: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*podman, *args], capture_output=True, text=True, timeout=300)


def test_run_output_and_exit_code(podman: list[str], image: str) -> None:
    assert run(podman, "run", "--rm", "--network", "none", image, "echo", "hi").stdout == "hi\n"
    assert run(podman, "run", "--rm", "--network", "none", image, "sh", "-c", "exit 3").returncode == 3


def test_memory_limit(podman: list[str], image: str) -> None:
    result = run(podman, "run", "--rm", "--network", "none", "-m", "32m", image,
                 "cat", "/sys/fs/cgroup/memory.max")
    assert result.stdout == f"{32 << 20}\n"


def test_detached_exec_stop_rm(podman: list[str], image: str) -> None:
    cid = run(podman, "run", "-d", "--network", "none", image, "sleep", "300").stdout.strip()
    execd = run(podman, "exec", cid, "sh", "-c", "echo $$; hostname")
    status = run(podman, "inspect", "--format", "{{.State.Status}}", cid).stdout.strip()
    stopped = run(podman, "stop", "-t", "1", cid)
    after = run(podman, "inspect", "--format", "{{.State.Status}}", cid).stdout.strip()
    removed = run(podman, "rm", cid)
    assert execd.stdout.split() == ["2", cid[:12]]  # PID 2 of its namespace, its hostname
    assert (status, stopped.returncode, after, removed.returncode) == ("running", 0, "exited", 0)


def test_terminal(podman: list[str], image: str) -> None:
    result = run(podman, "run", "--rm", "-t", "--network", "none", image, "tty")
    assert result.stdout.replace("\r", "") == "/dev/pts/0\n"


@pytest.fixture(scope="module")
def ctr(podman: list[str], image: str) -> Iterator[list[str]]:
    if shutil.which("containerd") is None:
        pytest.skip("containerd is not installed")
    # Under /run: its overlay snapshots cannot keep their upper directories
    # on an overlay, which /tmp is in the test VM.
    base = Path(tempfile.mkdtemp(prefix="mini-engine-containerd-", dir="/run"))
    sock = base / "sock"
    daemon = subprocess.Popen(["containerd", "--root", str(base / "root"), "--state",
                               str(base / "state"), "--address", str(sock)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    argv = ["ctr", "--address", str(sock)]
    try:
        for _ in range(300):
            if subprocess.run([*argv, "version"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        archive = base / "busybox.tar"
        run(podman, "save", "--format", "oci-archive", "-o", str(archive), image)
        subprocess.run([*argv, "image", "import", "--base-name", "localhost/busybox", str(archive)],
                       check=True, capture_output=True)
        yield argv
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        subprocess.run(["umount", "-R", "-l", str(base)], stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)


def ctr_run(ctr: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ctr, "run", "--runc-binary", RUNTIME, *args], capture_output=True,
                          text=True, timeout=300)


def test_containerd_runs_it(ctr: list[str]) -> None:
    assert ctr_run(ctr, "--rm", "localhost/busybox:latest", "c1", "echo", "hi").stdout == "hi\n"
    assert ctr_run(ctr, "--rm", "localhost/busybox:latest", "c2", "sh", "-c", "exit 4").returncode == 4


def test_containerd_detached_exec_kill(ctr: list[str]) -> None:
    assert ctr_run(ctr, "-d", "--memory-limit", str(32 << 20), "localhost/busybox:latest", "c4",
                   "sleep", "300").returncode == 0
    # containerd's default spec mounts no cgroupfs inside: read the limit from the host.
    memory_max = (Path(cgroups.mount_point()) / "default" / "c4" / "memory.max").read_text()
    execd = subprocess.run([*ctr, "task", "exec", "--exec-id", "e1", "c4", "sh", "-c", "echo $$"],
                           capture_output=True, text=True, timeout=300)
    killed = subprocess.run([*ctr, "task", "kill", "-s", "SIGKILL", "c4"], capture_output=True, timeout=60)
    for _ in range(300):
        tasks = subprocess.run([*ctr, "task", "ls"], capture_output=True, text=True).stdout
        if "STOPPED" in tasks or "c4" not in tasks:
            break
        time.sleep(0.1)
    deleted = subprocess.run([*ctr, "task", "delete", "c4"], capture_output=True, timeout=60)
    removed = subprocess.run([*ctr, "container", "delete", "c4"], capture_output=True, timeout=60)
    assert memory_max == f"{32 << 20}\n"
    assert execd.stdout == "2\n" and killed.returncode == 0
    assert (deleted.returncode, removed.returncode) == (0, 0)


# Where systemd is PID 1 (the lab's Vagrant VM), podman and containerd choose
# systemd's cgroups, and pass mini-runc --systemd-cgroup with "slice:prefix:name".

def systemctl_show(unit: str, name: str) -> str:
    return subprocess.run(["systemctl", "show", unit, f"--property={name}", "--value"],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.systemd
@SYSTEMD_PID1
def test_podman_with_its_default_systemd_cgroups(podman: list[str], image: str) -> None:
    default = [arg for arg in podman if arg not in ("--cgroup-manager", "cgroupfs")]
    assert run(default, "info", "--format", "{{.Host.CgroupManager}}").stdout == "systemd\n"
    cid = run(default, "run", "-d", "--network", "none", "-m", "32m", image, "sleep", "300").stdout.strip()
    pid = run(default, "inspect", "--format", "{{.State.Pid}}", cid).stdout.strip()
    unit = f"libpod-{cid}.scope"
    cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    memory_max = Path(cgroups.mount_point(), "machine.slice", unit, "memory.max").read_text()
    state = systemctl_show(unit, "ActiveState")
    removed = run(default, "rm", "-f", "-t", "0", cid)
    assert (cgroup, memory_max, state) == (f"0::/machine.slice/{unit}\n", f"{32 << 20}\n", "active")
    assert removed.returncode == 0 and systemctl_show(unit, "LoadState") == "not-found"


@pytest.mark.systemd
@SYSTEMD_PID1
def test_containerd_with_systemd_cgroups(ctr: list[str]) -> None:
    started = ctr_run(ctr, "-d", "--runc-systemd-cgroup", "--cgroup", "system.slice:ctr:c5",
                      "--memory-limit", str(32 << 20), "localhost/busybox:latest", "c5", "sleep", "300")
    assert started.returncode == 0, started.stderr
    memory_max = (Path(cgroups.mount_point()) / "system.slice" / "ctr-c5.scope" / "memory.max").read_text()
    state = systemctl_show("ctr-c5.scope", "ActiveState")
    killed = subprocess.run([*ctr, "task", "kill", "-s", "SIGKILL", "c5"], capture_output=True, timeout=60)
    for _ in range(300):
        if "STOPPED" in subprocess.run([*ctr, "task", "ls"], capture_output=True, text=True).stdout:
            break
        time.sleep(0.1)
    deleted = subprocess.run([*ctr, "task", "delete", "c5"], capture_output=True, timeout=60)
    removed = subprocess.run([*ctr, "container", "delete", "c5"], capture_output=True, timeout=60)
    assert (memory_max, state, killed.returncode) == (f"{32 << 20}\n", "active", 0)
    assert (deleted.returncode, removed.returncode) == (0, 0)
    assert systemctl_show("ctr-c5.scope", "LoadState") == "not-found"
