"""Bad input: one clear line on stderr, docker's exit code, nothing left behind."""

from __future__ import annotations

import os
import shutil
import stat

import pytest
from conftest import Engine

from mini_engine.base.errors import ContainerError
from mini_engine.runtime import config
from mini_engine.stages import STAGES


def one_line(result) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mini-engine: ")
    return lines[0]


@pytest.mark.parametrize("stage", [pytest.param(n, marks=pytest.mark.stage(int(n))) for n in "012"])
def test_command_not_found_is_127(engine: Engine, stage: str) -> None:
    before = engine.containers()
    result = engine("--stage", stage, "run", "--rm", "busybox", "no-such-command")
    assert result.returncode == 127
    assert one_line(result) == 'mini-engine: exec "no-such-command": executable file not found in $PATH'
    assert engine.containers() == before


@pytest.mark.stage(0)
def test_not_executable_is_126_from_the_first_stage(engine: Engine) -> None:
    """The exec itself happens in the trampoline, which can only exit 126 or 127:
    the error a learner's find_executable does not raise is never said."""
    result = engine("--stage", "0", "run", "--rm", "busybox", "/etc/passwd")
    assert (result.returncode, one_line(result)) == (126, 'mini-engine: exec "/etc/passwd": permission denied')


@pytest.mark.stage(1)
def test_not_executable_is_126(engine: Engine) -> None:
    result = engine("--stage", "1", "run", "--rm", "busybox", "/etc/passwd")
    assert result.returncode == 126
    assert one_line(result) == 'mini-engine: exec "/etc/passwd": permission denied'


@pytest.mark.stage(8)  # no --stage: the top stage, all of it written
def test_missing_path_is_127(engine: Engine) -> None:
    result = engine("run", "--rm", "busybox", "/no/such/file")
    assert result.returncode == 127
    assert one_line(result) == 'mini-engine: exec "/no/such/file": no such file or directory'


@pytest.mark.stage(1)
def test_missing_rootfs(engine: Engine, tmp_path: os.PathLike) -> None:
    before = engine.containers()
    result = engine("run", "--rootfs", f"{tmp_path}/nope", "sh")
    assert result.returncode == 125
    assert one_line(result) == f"mini-engine: --rootfs {tmp_path}/nope: no such directory"
    assert engine.containers() == before


@pytest.mark.stage(1)
def test_rootfs_without_the_command(engine: Engine, tmp_path: os.PathLike) -> None:
    os.mkdir(f"{tmp_path}/empty")
    result = engine("--stage", "1", "run", "--rm", "--rootfs", f"{tmp_path}/empty", "sh")
    assert result.returncode == 127
    assert one_line(result) == 'mini-engine: exec "sh": executable file not found in $PATH'


@pytest.mark.stage(1)
@pytest.mark.parametrize(("command", "asks_for"), [
    # A dynamic program: its PT_INTERP header names the loader, absent here.
    ("/bin/dynamic", "/bin/dynamic asks for the interpreter /lib64/ld-linux-x86-64.so.2 (PT_INTERP)"),
    # A script whose "#!" interpreter is absent.
    ("/bin/bash-script", "/bin/bash-script asks for the interpreter /bin/bash (#!)"),
    # A script whose interpreter is there, but not the loader that one needs.
    ("/bin/dynamic-script", "/bin/dynamic asks for the interpreter /lib64/ld-linux-x86-64.so.2 (PT_INTERP)"),
])
def test_a_missing_interpreter_is_named(engine: Engine, tmp_path: os.PathLike, command: str,
                                        asks_for: str) -> None:
    """execve(2) fails with ENOENT for a file that is there when the interpreter
    it asks for is not; the kernel does not say which, the engine does."""
    os.makedirs(f"{tmp_path}/rootfs/bin")
    shutil.copy("/usr/bin/true", f"{tmp_path}/rootfs/bin/dynamic")
    for name, line in (("bash-script", "#!/bin/bash"), ("dynamic-script", "#! /bin/dynamic -x")):
        with open(f"{tmp_path}/rootfs/bin/{name}", "w") as f:
            f.write(f"{line}\necho hi\n")
        os.chmod(f"{tmp_path}/rootfs/bin/{name}", 0o755)
    result = engine("--stage", "1", "run", "--rm", "--rootfs", f"{tmp_path}/rootfs", command)
    assert result.returncode == 127
    assert one_line(result) == (f'mini-engine: exec "{command}": no such file or directory: {asks_for}, '
                                "which is not in the container")


@pytest.mark.stage(0)
def test_unknown_flag(engine: Engine) -> None:
    result = engine("run", "--bogus", "busybox")
    assert result.returncode == 125
    # One line, docker's words, and the help of the command that lacks the flag.
    assert one_line(result) == "mini-engine: unknown flag: --bogus (see 'mini-engine run --help')"


BUILT = [s for s in STAGES if s.built]
CHOICES = ", ".join(f"{s.number}/{s.slug}" for s in BUILT)
UNBUILT = [s for s in STAGES if not s.built]


@pytest.mark.stage(0)
@pytest.mark.parametrize("name, message", [
    (str(len(STAGES)), f"unknown stage '{len(STAGES)}': choose one of {CHOICES}"),  # one past the ladder
    ("nope", f"unknown stage 'nope': choose one of {CHOICES}"),
] + ([(UNBUILT[0].slug, f"stage {UNBUILT[0].number} ({UNBUILT[0].slug}) is not built yet; "
       f"the highest stage is {BUILT[-1].number} ({BUILT[-1].slug})")] if UNBUILT else []))
def test_unknown_stage(engine: Engine, name: str, message: str) -> None:
    result = engine("--stage", name, "run", "busybox", "true")
    assert result.returncode == 125
    assert one_line(result) == f"mini-engine: {message}"


@pytest.mark.stage(8)  # no --stage: the top stage, all of it written
def test_unknown_image(engine: Engine) -> None:
    result = engine("run", "alpine", "true")
    assert result.returncode == 125
    assert one_line(result).startswith('mini-engine: image "alpine" is not here')


@pytest.mark.stage(1)
def test_a_flag_from_a_later_stage_is_refused(engine: Engine) -> None:
    result = engine("--stage", "1", "run", "--hostname", "x", "busybox", "true")
    assert result.returncode == 125
    assert one_line(result) == "mini-engine: --hostname needs stage 2 or above (this is stage 1, chroot)"


@pytest.mark.stage(0)
def test_it_without_a_terminal(engine: Engine) -> None:
    result = engine("run", "-it", "busybox", "sh", stdin=open(os.devnull))
    assert result.returncode == 125
    assert "the input device is not a TTY" in one_line(result)


@pytest.mark.stage(8)  # no --stage: the top stage, all of it written
def test_unreachable_rootfs_fails_cleanly(engine: Engine, tmp_path: os.PathLike) -> None:
    # With --userns the container's root is host uid 100000, which cannot
    # enter a 0700 directory of the host's root.
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    os.chmod(tmp_path, 0o755)
    (locked / "rootfs").mkdir()
    result = engine("run", "--rm", "--userns", "auto", "--rootfs", str(locked / "rootfs"), "sh")
    assert result.returncode == 125
    assert one_line(result).startswith("mini-engine: preparing the root filesystem: ")
    assert one_line(result).endswith("Permission denied")
    assert stat.S_IMODE(os.stat(locked).st_mode) == 0o700


GOOD = {"ociVersion": "1.0.2", "process": {"args": ["sh"], "cwd": "/"}}


@pytest.mark.stage(0)
@pytest.mark.parametrize("patch, message", [
    ({"ociVersion": "2.0"}, "ociVersion '2.0' is not a 1.x runtime spec version"),
    ({"process": {"args": []}}, "process.args must name a command"),
    ({"process": {"args": ["sh"], "env": ["NOEQUALS"]}}, "process.env[0] 'NOEQUALS' is not KEY=VALUE"),
    ({"process": {"args": ["sh"], "cwd": "tmp"}}, "process.cwd 'tmp' must be an absolute path"),
    ({"linux": {"namespaces": [{"type": "pid"}, {"type": "pid"}]}},
     "linux.namespaces[1].type 'pid' appears twice"),
    ({"linux": {"namespaces": [{"type": "bogus"}]}},
     "linux.namespaces[0].type 'bogus' is not a namespace type"),
    ({"linux": {"uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}},
     "linux.uidMappings needs a user namespace in linux.namespaces"),
    ({"mounts": [{"destination": "proc"}]}, "mounts[0].destination 'proc' must be an absolute path"),
    ({"process": {"args": "sh"}}, "process.args must be an array"),
])
def test_config_json_is_checked(patch: dict, message: str) -> None:
    with pytest.raises(ContainerError) as caught:
        config.validate(GOOD | patch)
    assert str(caught.value) == f"config.json: {message}"


@pytest.mark.stage(8)
@pytest.mark.parametrize(("destination", "why"), [
    ("/proc", "only a proc filesystem goes there"),
    ("/proc/sys/net", "it is inside /proc"),
    ("/sys", "only a sysfs filesystem goes there"),
    ("/sys/devices", "it would replace /sys/devices/virtual/powercap, which is masked in the container"),
    ("/sys/firmware", "it would replace /sys/firmware, which is masked in the container"),
])
def test_a_volume_may_not_take_the_place_of_proc_or_sys(engine: Engine, tmp_path: os.PathLike,
                                                        destination: str, why: str) -> None:
    """Masking applies after the mounts and skips a path that is not there:
    a host directory on /proc would leave the container no /proc of its own
    and the masking nothing to hide. Refused, as runc's checkProcMount does."""
    before = engine.containers()
    result = engine("run", "--rm", "-v", f"{tmp_path}:{destination}", "busybox", "true")
    assert result.returncode == 125
    assert one_line(result) == f"mini-engine: mount on {destination}: refused: {why}"
    assert engine.containers() == before


@pytest.mark.stage(8)
def test_the_kernels_own_proc_and_sys_may_be_bound(engine: Engine, tmp_path: os.PathLike) -> None:
    """runc lets a procfs or sysfs be bind-mounted on /proc or /sys, and a
    volume go where nothing is masked; the masking still holds over them."""
    result = engine("run", "--rm", "-v", "/sys:/sys", "-v", f"{tmp_path}:/sys/fs/cgroup", "-v",
                    f"{tmp_path}:/.proc", "busybox", "sh", "-c",
                    "ls -A /sys/firmware | wc -l; ls -A /sys/kernel | wc -l")
    assert result.returncode == 0, result.stderr
    masked, kernel = map(int, result.stdout.split())
    assert masked == 0 and kernel > 0  # the host's sysfs, with /sys/firmware masked


@pytest.mark.stage(7)
@pytest.mark.parametrize(("subnet", "message"), [
    ("notasubnet", "notasubnet is not an IPv4 address (expected ADDRESS/PREFIX), e.g. 10.90.0.0/24"),
    ("300.1.1.0/24", "300.1.1.0 is not an IPv4 address (expected ADDRESS/PREFIX), e.g. 10.90.0.0/24"),
    ("fd00::/64", "only IPv4 subnets are supported, e.g. 10.90.0.0/24"),
    ("10.90.0.0", "expected a prefix length from /0 to /32, e.g. 10.90.0.0/24"),
    ("10.90.0.0/33", "expected a prefix length from /0 to /32, e.g. 10.90.0.0/24"),
    ("10.90.0.1/24", "10.90.0.1 is not the first address of its /24; did you mean 10.90.0.0/24?"),
])
def test_a_bad_subnet_is_one_line_of_ours(engine: Engine, subnet: str, message: str) -> None:
    result = engine("network", "create", "--subnet", subnet, "typo")
    assert result.returncode == 125
    assert one_line(result) == f"mini-engine: --subnet {subnet}: {message}"
    assert "typo" not in engine("network", "ls").stdout  # nothing was made
