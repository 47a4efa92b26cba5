"""Stage 6: capabilities, no_new_privs, seccomp and masked paths, each shown by an escape
that works when the defence is off and fails when it is on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import Engine, running_id

from mini_engine.config import security
from mini_engine.labkit import syscall_program
from mini_engine.runtime.config import CAPABILITY_NAMES

pytestmark = [pytest.mark.stage(6), pytest.mark.root]

# By name: syscall_program numbers them for this machine (keyctl: 250 on x86_64, 219 on aarch64).
SYS_KEYCTL, SYS_PTRACE, SYS_UNSHARE, SYS_SYSFS, SYS_ADD_KEY = "keyctl", "ptrace", "unshare", "sysfs", "add_key"
SYSCALLS = (SYS_KEYCTL, SYS_PTRACE, SYS_UNSHARE, SYS_SYSFS, SYS_ADD_KEY)
# Calls of x86-64's own table that aarch64 (the kernel's generic table) lacks:
# a test of one of them runs on x86-64 only (tests/test_machines.py checks the list).
X86_64_ONLY = {SYS_SYSFS}
KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING = 0, -3
PTRACE_TRACEME, CLONE_NEWUSER = 0, 0x10000000
SYSFS_COUNT = 3  # sysfs(3): how many filesystem types the kernel knows
EPERM, ENOSYS = 1, 38
# The real profiles: podman's from Debian (golang-github-containers-common),
# docker's from moby (a copy, tests/fixtures/seccomp/README.md says whence).
PODMAN_PROFILE = "/usr/share/containers/seccomp.json"
MOBY_PROFILE = str(Path(__file__).parent / "fixtures" / "seccomp" / "moby-default.json")


def mask(names: list[str]) -> str:
    bits = sum(1 << CAPABILITY_NAMES.index(n) for n in names)
    return f"{bits:016x}"


def _host_bounding() -> str:
    with open("/proc/self/status") as f:
        return next(line.split()[1] for line in f if line.startswith("CapBnd:"))


def status(engine: Engine, *flags: str) -> dict[str, str]:
    return engine.probe(*flags, stage=6)["status"]


def run_program(engine: Engine, program: bytes, *flags: str) -> int:
    """Copy ``program`` into a new container through stdin, run it, return its exit code."""
    result = subprocess.run(
        engine.argv("--stage", "6", "run", "--rm", "-i", *flags, "busybox", "sh", "-c",
                    "cat > /tmp/p && chmod 755 /tmp/p && exec /tmp/p"),
        input=program, capture_output=True, env=engine.env, timeout=60)
    return result.returncode


def test_default_capabilities_are_dockers(engine: Engine) -> None:
    st = status(engine)
    assert st["CapBnd"] == st["CapPrm"] == st["CapEff"] == mask(security.DEFAULT_CAPABILITIES)
    assert st["CapEff"] == "00000000a80425fb"  # what `docker run busybox` shows
    assert st["CapInh"] == st["CapAmb"] == "0000000000000000"
    assert st["NoNewPrivs"] == "1"
    assert st["Seccomp"] == "2" and st["Seccomp_filters"] == "1"


def test_cap_add_and_cap_drop(engine: Engine) -> None:
    st = status(engine, "--cap-drop", "ALL", "--cap-add", "net_admin")
    assert st["CapEff"] == st["CapBnd"] == mask(["CAP_NET_ADMIN"])
    st = status(engine, "--cap-drop", "CAP_CHOWN", "--cap-drop", "kill")
    expected = [c for c in security.DEFAULT_CAPABILITIES if c not in ("CAP_CHOWN", "CAP_KILL")]
    assert st["CapEff"] == mask(expected)
    st = status(engine, "--cap-add", "ALL")
    assert st["CapEff"] == _host_bounding()  # all the engine itself has


def test_unknown_capability_is_refused(engine: Engine) -> None:
    result = engine("--stage", "6", "run", "--rm", "--cap-add", "CAP_FLY", "busybox", "true")
    assert result.returncode == 125
    assert result.stderr == "mini-engine: unknown capability 'CAP_FLY' (see capabilities(7))\n"


def test_privileged_turns_every_defence_off(engine: Engine) -> None:
    probe = engine.probe("--privileged", stage=6)
    st = probe["status"]
    assert st["CapEff"] == _host_bounding()
    assert st["NoNewPrivs"] == "0" and st["Seccomp"] == "0"
    assert "/proc/keys" not in probe["mounts"] and "/proc/sys" not in probe["mounts"]


def test_a_non_root_user_has_only_the_bounding_set(engine: Engine) -> None:
    st = status(engine, "-u", "1000")
    assert st["CapEff"] == st["CapPrm"] == "0000000000000000"
    assert st["CapBnd"] == mask(security.DEFAULT_CAPABILITIES)


def test_masked_and_read_only_paths(engine: Engine) -> None:
    probe = engine.probe(stage=6)
    for path in ("/proc/keys", "/proc/timer_list", "/proc/sys", "/proc/sysrq-trigger"):
        if os.path.exists(path):
            assert path in probe["mounts"], path
    script = ("cat /proc/keys | wc -c; echo x > /proc/sysrq-trigger; echo sysrq=$?; "
              "echo h > /proc/sys/kernel/hostname; echo sys=$?")
    result = engine("--stage", "6", "run", "--rm", "busybox", "sh", "-c", script)
    lines = result.stdout.split()
    assert lines[0] == "0"  # /dev/null over it
    assert "sysrq=1" in lines and "sys=1" in lines
    assert "Read-only file system" in result.stderr


def test_no_new_privs_stops_a_setuid_program(engine: Engine) -> None:
    """/usr/local/bin/euid is setuid root; it exits with its effective uid."""
    on = engine("--stage", "6", "run", "--rm", "-u", "1000", "busybox", "euid")
    assert on.returncode == 1000 % 256  # no_new_privs: execve ignored the setuid bit
    off = engine("--stage", "6", "run", "--rm", "-u", "1000", "--security-opt",
                 "no-new-privileges=false", "busybox", "euid")
    assert off.returncode == 0  # root, through the setuid bit


@pytest.mark.parametrize(("name", "program"), [
    ("keyctl", syscall_program(SYS_KEYCTL, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING)),
    ("ptrace", syscall_program(SYS_PTRACE, PTRACE_TRACEME)),
    ("unshare", syscall_program(SYS_UNSHARE, CLONE_NEWUSER)),
])
def test_seccomp_refuses_with_eperm(engine: Engine, name: str, program: bytes) -> None:
    assert run_program(engine, program) == EPERM, name
    assert run_program(engine, program, "--security-opt", "seccomp=unconfined") == 0, name


def test_mounting_needs_cap_sys_admin(engine: Engine) -> None:
    """The first step of mounting the host's disk: any mount at all. Without
    CAP_SYS_ADMIN (and past seccomp) it fails; with --privileged it works."""
    script = "mkdir -p /mnt && mount -t tmpfs escape /mnt && grep escape /proc/self/mounts"
    denied = engine("--stage", "6", "run", "--rm", "busybox", "sh", "-c", script)
    assert denied.returncode != 0 and "permission denied" in denied.stderr  # busybox's EPERM
    allowed = engine("--stage", "6", "run", "--rm", "--privileged", "busybox", "sh", "-c", script)
    assert allowed.returncode == 0 and allowed.stdout.startswith("escape /mnt tmpfs"), allowed.stderr


def test_only_the_allowed_devices_open(engine: Engine) -> None:
    """CAP_MKNOD makes any node; the cgroup's device filter decides what opens.
    /dev/kmsg (1:11), the host kernel's log, is not on the list; /dev/zero (1:5) is."""
    script = ("mknod /tmp/kmsg c 1 11 && mknod /tmp/zero c 1 5 && head -c 3 /tmp/zero | wc -c "
              "&& { : < /tmp/kmsg && echo kmsg opened; }")
    denied = engine("--stage", "6", "run", "--rm", "busybox", "sh", "-c", script)
    assert denied.stdout == "3\n" and "/tmp/kmsg: Operation not permitted" in denied.stderr
    allowed = engine("--stage", "6", "run", "--rm", "--privileged", "busybox", "sh", "-c", script)
    assert allowed.stdout == "3\nkmsg opened\n", allowed.stderr


def test_device_rules_are_checked(engine: Engine, tmp_path: Path) -> None:
    spec = json.loads(engine("--stage", "6", "spec", "busybox", "true").stdout)
    assert spec["linux"]["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    spec["linux"]["resources"]["devices"].append({"allow": True, "type": "x", "access": "rwm"})
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps(spec))
    result = subprocess.run([*engine.argv("runtime"), "--root", str(tmp_path / "state"), "run", "--bundle",
                             str(bundle), "bad-devices"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    last = len(spec["linux"]["resources"]["devices"]) - 1
    assert result.stderr == f"mini-runc: config.json: linux.resources.devices[{last}]: type must be a, c or b\n"


def test_a_profile_file_is_checked(engine: Engine, tmp_path: Path) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        # aarch64 has no mkdir(2): its C library calls mkdirat, which x86-64 has too.
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}))
    result = engine("--stage", "6", "run", "--rm", "--security-opt", f"seccomp={profile}", "busybox",
                    "mkdir", "/x")
    assert result.returncode == 1 and "Permission denied" in result.stderr  # errno 13
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["no_such_call"], "action": "SCMP_ACT_ERRNO"}]}))
    result = engine("--stage", "6", "run", "--rm", "--security-opt", f"seccomp={profile}", "busybox", "true")
    assert result.returncode == 125
    assert result.stderr == (f"mini-engine: seccomp profile {profile}: syscalls[0]: 'no_such_call' is not a "
                             "system call of any architecture (see syscalls(2))\n")
    # A name of other architectures only is no typo: skipped here, and the
    # rule still holds for the names this machine has.
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["bdflush", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}))
    result = engine("--stage", "6", "run", "--rm", "--security-opt", f"seccomp={profile}", "busybox",
                    "mkdir", "/x")
    assert result.returncode == 1 and "Permission denied" in result.stderr
    profile.write_text("{not json")
    result = engine("--stage", "6", "run", "--rm", "--security-opt", f"seccomp={profile}", "busybox", "true")
    assert result.returncode == 125 and "not valid JSON" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def _profile_names(path: str) -> set[str]:
    with open(path) as f:
        return {name for rule in json.load(f)["syscalls"] for name in rule.get("names", [])}


@pytest.mark.skipif(not os.path.exists(PODMAN_PROFILE),
                    reason="needs golang-github-containers-common (scripts/install-system-deps.sh --test)")
def test_podmans_own_profile_is_accepted_and_enforced(engine: Engine) -> None:
    """Debian's podman profile names calls of other architectures (bdflush is
    i386's, not x86_64's): they are skipped, as runc and crun skip them."""
    from mini_engine.runtime.seccomp import syscall_numbers

    others = _profile_names(PODMAN_PROFILE) - syscall_numbers().keys()
    assert {"bdflush", "arm_fadvise64_64", "s390_pci_mmio_read"} <= others
    flags = ("--security-opt", f"seccomp={PODMAN_PROFILE}")
    # sysfs(2): podman's profile refuses it with EPERM; without it, it works.
    if SYS_SYSFS in syscall_numbers():  # x86-64's only
        assert run_program(engine, syscall_program(SYS_SYSFS, SYSFS_COUNT), *flags) == EPERM
        assert run_program(engine, syscall_program(SYS_SYSFS, SYSFS_COUNT), "--security-opt",
                           "seccomp=unconfined") == 0
    # add_key is named nowhere in it: podman's default action, ENOSYS.
    assert run_program(engine, syscall_program(SYS_ADD_KEY), *flags) == ENOSYS
    # keyctl it allows (the engine's default profile refuses it): the filter is podman's.
    keyctl = syscall_program(SYS_KEYCTL, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING)
    assert run_program(engine, keyctl, *flags) == 0
    assert run_program(engine, keyctl) == EPERM


def test_mobys_default_profile_is_accepted_and_enforced(engine: Engine) -> None:
    """docker's default.json, as chapter 06 promises; it too names other architectures' calls."""
    from mini_engine.runtime.seccomp import syscall_numbers

    assert {"arm_fadvise64_64", "s390_pci_mmio_read"} <= _profile_names(MOBY_PROFILE) - syscall_numbers().keys()
    flags = ("--security-opt", f"seccomp={MOBY_PROFILE}")
    # keyctl is not on docker's list: its default action, EPERM.
    keyctl = syscall_program(SYS_KEYCTL, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING)
    assert run_program(engine, keyctl, *flags) == EPERM
    # unshare only with CAP_SYS_ADMIN (an "includes" condition), which the container lacks.
    assert run_program(engine, syscall_program(SYS_UNSHARE, CLONE_NEWUSER), *flags) == EPERM
    # ptrace it allows on kernels since 4.8 (the engine's default profile refuses it).
    assert run_program(engine, syscall_program(SYS_PTRACE, PTRACE_TRACEME), *flags) == 0
    assert run_program(engine, syscall_program(SYS_PTRACE, PTRACE_TRACEME)) == EPERM


@pytest.mark.parametrize(("opt", "message"), [
    ("apparmor=docker-default", "not supported by this engine"),
    ("seccomp", "expected no-new-privileges"),
    ("no-new-privileges=maybe", "takes true or false"),
])
def test_bad_security_opts(engine: Engine, opt: str, message: str) -> None:
    result = engine("--stage", "6", "run", "--rm", "--security-opt", opt, "busybox", "true")
    assert result.returncode == 125 and message in result.stderr


def test_security_flags_need_stage_6(engine: Engine) -> None:
    result = engine("--stage", "5", "run", "--rm", "--privileged", "busybox", "true")
    assert result.returncode == 125
    assert "--privileged needs stage 6 or above" in result.stderr


def test_no_inherited_descriptor_reaches_the_container(engine: Engine) -> None:
    """The CVE-2024-21626 class: a descriptor of the engine's (a directory of
    the host, open when the engine starts) must not be open in the container."""
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        result = subprocess.run(engine.argv("--stage", "6", "run", "--rm", "busybox", "ls", "/proc/self/fd"),
                                capture_output=True, text=True, env=engine.env, pass_fds=(fd,), timeout=60)
    finally:
        os.close(fd)
    assert result.stdout.split() == ["0", "1", "2", "3"]  # 3: the directory ls is reading


def test_the_runtime_is_not_dumpable_before_exec(engine: Engine, tmp_path: Path) -> None:
    """The CVE-2019-5736 class: while the container's init is still the
    runtime (created, not started), a root process without CAP_SYS_PTRACE
    cannot open its /proc/PID/exe, the host's interpreter."""
    bundle = tmp_path / "bundle"
    spec = engine("--stage", "6", "spec", "busybox", "true")
    (bundle / "rootfs").mkdir(parents=True)
    subprocess.run(["cp", "-a", f"{engine.root}/bundled/busybox/rootfs/.", str(bundle / "rootfs")], check=True)
    (bundle / "config.json").write_text(spec.stdout)
    runc = [*engine.argv("runtime"), "--root", str(tmp_path / "state")]
    # Not pipes: the container keeps its stdio, and would hold them open.
    with open(tmp_path / "create.log", "w+") as log:
        created = subprocess.run([*runc, "create", "--bundle", str(bundle), "dumpable"],
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=log, timeout=60)
    assert created.returncode == 0, (tmp_path / "create.log").read_text()
    try:
        state = subprocess.run([*runc, "state", "dumpable"], capture_output=True, text=True)
        pid = json.loads(state.stdout)["pid"]
        # root, but no capabilities: like root in a container (setpriv(1) empties the bounding set).
        peek = subprocess.run(["setpriv", "--bounding-set=-all", "readlink", "-v", f"/proc/{pid}/exe"],
                              capture_output=True, text=True)
        assert peek.returncode != 0 and "Permission denied" in peek.stderr
        assert os.readlink(f"/proc/{pid}/exe")  # root with CAP_SYS_PTRACE still can
    finally:
        subprocess.run([*runc, "delete", "--force", "dumpable"], capture_output=True)


def test_user_namespace_root_owns_the_image_through_idmapped_layers(engine: Engine) -> None:
    """--userns auto: root inside is host uid 100000, the image's files (uid 0
    on disk) read as root's inside, and what root writes is 100000's on the host."""
    script = "cat /proc/self/uid_map; stat -c %u:%g /bin/busybox /etc/passwd; touch /etc/mine && echo wrote"
    result = engine("--stage", "6", "run", "--userns", "auto", "busybox", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    records = json.loads(engine("ps", "-a", "--format", "json").stdout)
    container = max(records, key=lambda r: r["Created"])["Id"]
    try:
        lines = result.stdout.splitlines()
        assert lines[0].split() == ["0", "100000", "65536"]
        assert lines[1:] == ["0:0", "0:0", "wrote"]
        upper = engine.root / "containers" / container / "upper"
        st = os.stat(upper / "etc" / "mine")
        assert (st.st_uid, st.st_gid) == (100000, 100000)
        # The layer on disk is untouched, and still root's.
        layer = engine.root / "bundled" / "busybox" / "rootfs" / "bin" / "busybox"
        assert os.stat(layer).st_uid == 0
    finally:
        assert engine("rm", container).returncode == 0
    # Below stage 6 (no idmapping) the same files belong to nobody.
    before = engine("--stage", "5", "run", "--rm", "--userns", "auto", "busybox",
                    "stat", "-c", "%u", "/bin/busybox")
    assert before.stdout == "65534\n"


def test_exec_has_the_containers_defences(engine: Engine) -> None:
    """An exec'd process gets the same capabilities, no_new_privs and seccomp
    filter as the container's first; -u takes the image's user names."""
    proc = engine.popen("--stage", "6", "run", "--rm", "-i", "--cap-drop", "NET_RAW", "busybox", "sh", "-c",
                        "echo ready; read x", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == "ready\n"
    try:
        cid = running_id(engine)
        script = "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t' ' '; id -u"
        as_root = engine("exec", cid, "sh", "-c", script)
        expected = mask([c for c in security.DEFAULT_CAPABILITIES if c != "CAP_NET_RAW"])
        assert as_root.stdout.splitlines() == [f"CapEff: {expected}", "NoNewPrivs: 1", "Seccomp: 2", "0"]
        as_nobody = engine("exec", "-u", "nobody", cid, "sh", "-c", script)
        assert as_nobody.stdout.splitlines() == ["CapEff: 0000000000000000", "NoNewPrivs: 1", "Seccomp: 2",
                                                 "65534"]
    finally:
        proc.communicate("\n", timeout=30)


@pytest.mark.stage(8)  # run -d: stage 8's monitor and log
def test_rootless_an_ordinary_user_runs_containers() -> None:
    """uid 65534 runs the engine: root only in a user namespace of its own,
    with the user's own store, and nothing of the host's to hand out."""
    home = Path(tempfile.mkdtemp(prefix="rootless-", dir="/tmp"))
    try:
        os.chmod(home, 0o755)
        os.chown(home, 65534, 65534)
        env = dict(os.environ, HOME=str(home), MINI_ENGINE_ROOT=str(home / "lib"),
                   MINI_ENGINE_RUNROOT=str(home / "run"))

        def engine(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                                   sys.executable, "-m", "mini_engine", *args],
                                  capture_output=True, text=True, env=env, timeout=120, cwd="/")

        script = ("cat /proc/self/uid_map; id -u; grep -E '^(CapEff|Seccomp):' /proc/self/status; "
                  "touch /etc/mine")
        result = engine("run", "busybox", "sh", "-c", script)
        assert result.returncode == 0, result.stderr
        lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
        assert lines == ["0 65534 1", "0", "CapEff: 00000000a80425fb", "Seccomp: 2"]
        (container,) = os.listdir(home / "lib" / "containers")
        # What root wrote inside belongs to the user outside.
        st = os.stat(home / "lib" / "containers" / container / "upper" / "etc" / "mine")
        assert (st.st_uid, st.st_gid) == (65534, 65534)
        assert engine("diff", container).stdout == "C /etc\nA /etc/mine\n"
        assert engine("rm", container).returncode == 0
        refused = engine("run", "--rm", "--pids-limit", "5", "busybox", "true")
        assert refused.returncode == 125
        assert refused.stderr.startswith("mini-engine: --pids-limit is not available rootless")
    finally:
        shutil.rmtree(home)


def test_a_working_directory_through_a_leaked_descriptor_is_refused(engine: Engine) -> None:
    """CVE-2024-21626: -w /proc/self/fd/N, N a descriptor of the host's / that the
    engine was given, would start the container in the host's root."""
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        result = subprocess.run(engine.argv("--stage", "6", "run", "--rm", "-w", f"/proc/self/fd/{fd}",
                                            "busybox", "ls"),
                                capture_output=True, text=True, env=engine.env, pass_fds=(fd,), timeout=60)
    finally:
        os.close(fd)
    assert result.returncode == 125 and result.stdout == ""
    assert f"the working directory /proc/self/fd/{fd} is outside the container; refused" in result.stderr


def test_a_syscall_newer_than_the_profile_gets_enosys(engine: Engine) -> None:
    """libc falls back to an older call on ENOSYS; EPERM would look like a refusal."""
    from mini_engine.runtime.seccomp import syscall_numbers

    newer = max(syscall_numbers().values()) + 1
    assert run_program(engine, syscall_program(newer)) == 38  # ENOSYS


def test_a_script_run_by_proc_self_exe_never_runs_the_runtime(engine: Engine, tmp_path: Path) -> None:
    """CVE-2019-5736: a command whose interpreter is #!/proc/self/exe would run
    whatever execs it: the runtime's interpreter, the host's Python. The runtime
    execs through a sealed trampoline instead, which refuses to be a script's
    interpreter (exit 126), so no file of the host's is ever behind it."""
    rootfs = tmp_path / "rootfs"
    subprocess.run(["cp", "-a", f"{engine.root}/bundled/busybox/rootfs", str(rootfs)], check=True)
    (rootfs / "x").write_text("#!/proc/self/exe\n")
    os.chmod(rootfs / "x", 0o755)
    result = engine("--stage", "6", "run", "--rm", "--rootfs", str(rootfs), "/x", "-c", "print('escaped')")
    assert result.returncode == 126
    assert "escaped" not in result.stdout and "Python" not in result.stderr
    # The trampoline is transparent otherwise: argv, env and exit codes pass through.
    ok = engine("--stage", "6", "run", "--rm", "-e", "X=1", "busybox", "sh", "-c", 'echo "$0 $1 $X"; exit 3',
                "a", "b")
    assert (ok.returncode, ok.stdout) == (3, "a b 1\n")


def test_a_docker_profile_s_conditions_are_honoured(engine: Engine, tmp_path: Path) -> None:
    """moby's profiles carry "includes"/"excludes": a rule for CAP_SYS_ADMIN holders
    must not apply to a container without it, and "name" counts as "names"."""
    profile = tmp_path / "docker.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        # rmdir(1) calls rmdir(2), which aarch64 lacks: there it is unlinkat(AT_REMOVEDIR).
        {"name": "rmdir" if os.uname().machine == "x86_64" else "unlinkat", "action": "SCMP_ACT_ERRNO"},
        {"names": ["chdir"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_CHOWN"]}},
    ]}))
    script = "mkdir /x && echo made; rmdir /x || echo refused; cd /tmp && echo moved"
    result = engine("--stage", "6", "run", "--rm", "--security-opt", f"seccomp={profile}", "busybox",
                    "sh", "-c", script)
    assert result.stdout == "made\nrefused\nmoved\n", result.stderr
    with_admin = engine("--stage", "6", "run", "--rm", "--cap-add", "SYS_ADMIN", "--security-opt",
                        f"seccomp={profile}", "busybox", "mkdir", "/x")
    assert with_admin.returncode == 1 and "Operation not permitted" in with_admin.stderr


def test_a_deny_rule_for_write_also_stops_read_write(engine: Engine, tmp_path: Path) -> None:
    """[deny all, allow c 1:11, deny c 1:11 w]: /dev/kmsg opens for reading, not
    for writing, and not O_RDWR, which asks for r and w at once."""
    script = ("mknod /tmp/kmsg c 1 11; (: < /tmp/kmsg) && echo r-ok; "
              "(: > /tmp/kmsg) 2>/dev/null || echo w-denied; (: <> /tmp/kmsg) 2>/dev/null || echo rw-denied")
    # CAP_SYSLOG: the kernel's own check on /dev/kmsg (dmesg_restrict), before the filter's.
    spec = json.loads(engine("--stage", "6", "spec", "--cap-add", "SYSLOG", "busybox", "sh", "-c",
                             script).stdout)
    spec["linux"]["resources"]["devices"] = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "rwm"},
        {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "w"},
    ]
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    subprocess.run(["cp", "-a", f"{engine.root}/bundled/busybox/rootfs", str(bundle / "rootfs")], check=True)
    (bundle / "config.json").write_text(json.dumps(spec))
    with open(tmp_path / "out", "w+") as out:
        result = subprocess.run([*engine.argv("runtime"), "--root", str(tmp_path / "state"), "run", "--bundle",
                                 str(bundle), "rules"], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                timeout=60)
        out.seek(0)
        text = out.read()
    assert result.returncode == 0, text
    assert text.split() == ["r-ok", "w-denied", "rw-denied"], text


def test_idmapped_layers_are_out_of_other_users_reach(engine: Engine) -> None:
    proc = engine.popen("--stage", "6", "run", "--rm", "-i", "--userns", "auto", "busybox", "sh", "-c",
                        "echo ready; read x", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == "ready\n"
    try:
        cid = running_id(engine)
        staging = engine.root / "containers" / cid / "lowers"
        assert staging.stat().st_mode & 0o777 == 0o700
    finally:
        proc.communicate("\n", timeout=30)
