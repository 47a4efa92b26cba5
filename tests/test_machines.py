"""The engine on two machines, x86-64 and aarch64: its programs of machine code and its syscall table.

The programs the engine writes by hand (the trampoline, the bundled
image's euid probe, the labs' syscall and chroot-escape programs) exist
once per machine. Here the aarch64 ones are read back instruction by
instruction with binutils' disassembler (binutils-aarch64-linux-gnu), and
run under qemu-user (qemu-user-static) on whatever machine runs the tests.
The seccomp compiler's numbers and architecture check are checked for
both machines, against the kernel's own header where this machine has it.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

from mini_engine.base.elf import E_MACHINE, static_elf
from mini_engine.config.seccomp import default_profile
from mini_engine.images.busybox import euid_program
from mini_engine.labkit import chroot_escape_program, syscall_program
from mini_engine.runtime import seccomp
from mini_engine.runtime.trampoline import TRAMPOLINE_AARCH64

pytestmark = pytest.mark.stage(6)

OBJDUMP = shutil.which("aarch64-linux-gnu-objdump")
QEMU = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
need_objdump = pytest.mark.skipif(OBJDUMP is None, reason="needs binutils-aarch64-linux-gnu")
need_qemu = pytest.mark.skipif(QEMU is None, reason="needs qemu-user-static")
HEADER = 64 + 56  # the ELF header and the one program header, before the code


def disassemble(program: bytes) -> list[str]:
    """The instructions of an aarch64 executable as objdump prints them, one per line,
    with its comments and addresses dropped: ``mov x8, #0xdd``."""
    assert program[:4] == b"\x7fELF"
    assert struct.unpack_from("<H", program, 18)[0] == E_MACHINE["aarch64"]
    code = program[HEADER:]
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:  # objdump seeks: no pipe
        f.write(code)
        f.flush()
        out = subprocess.run([OBJDUMP, "-D", "-b", "binary", "-m", "aarch64", f.name],
                             capture_output=True, text=True, check=True).stdout
    lines = []
    for line in out.splitlines():
        match = re.match(r"\s+[0-9a-f]+:\s+[0-9a-f]{8}\s+(.*)", line)
        if match:
            lines.append(re.sub(r"\s+", " ", match.group(1).split("//")[0]).strip())
    assert len(lines) * 4 == len(code)
    return lines


@need_objdump
def test_the_trampoline_instruction_by_instruction() -> None:
    assert disassemble(static_elf(TRAMPOLINE_AARCH64, "aarch64")) == [
        "ldr x9, [sp]",
        "cmp x9, #0x3",
        "b.cc 0x3c",               # b.lo misuse: fewer than 3 arguments
        "ldr x0, [sp, #16]",
        "add x1, sp, #0x18",
        "add x2, sp, x9, lsl #3",
        "add x2, x2, #0x10",
        "mov x8, #0xdd",           # execve, 221 on aarch64
        "svc #0x0",
        "cmn x0, #0x2",
        "mov x0, #0x7e",
        "b.ne 0x34",
        "mov x0, #0x7f",
        "mov x8, #0x5d",           # 0x34, exit: 93
        "svc #0x0",
        "mov x0, #0x7e",           # 0x3c, misuse
        "b 0x34",
    ]


@need_objdump
def test_the_euid_probe_instruction_by_instruction() -> None:
    assert disassemble(euid_program("aarch64")) == [
        "mov x8, #0xaf", "svc #0x0", "mov x8, #0x5d", "svc #0x0"]  # geteuid (175), exit (93)


@need_objdump
def test_the_syscall_program_instruction_by_instruction() -> None:
    # keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING): numbered for aarch64, 219.
    assert disassemble(syscall_program("keyctl", 0, -3, arch="aarch64")) == [
        "mov x8, #0xdb",
        "mov w0, #0x0",
        "mov w1, #0xfffd",
        "movk w1, #0xffff, lsl #16",
        "svc #0x0",
        "cmp x0, #0x0",
        "neg x1, x0",
        "csel x0, xzr, x1, ge",
        "mov x8, #0x5d",
        "svc #0x0",
    ]


@need_objdump
def test_the_chroot_escape_instruction_by_instruction() -> None:
    assert disassemble(chroot_escape_program("aarch64")) == [
        "mov x19, sp",
        "sub sp, sp, #0x10",
        "mov x9, #0x616a",
        "movk x9, #0x6c69, lsl #16",
        "str x9, [sp]",
        "mov x0, #0xffffffffffffff9c",  # AT_FDCWD
        "mov x1, sp",
        "mov x2, #0x1ed",
        "mov x8, #0x22",                # mkdirat
        "svc #0x0",
        "mov x0, sp",
        "mov x8, #0x33",                # chroot
        "svc #0x0",
        "cbnz x0, 0x88",
        "mov x9, #0x2e2e",
        "str x9, [sp]",
        "mov x20, #0x40",
        "mov x0, sp",                   # 0x44, the climb
        "mov x8, #0x31",                # chdir
        "svc #0x0",
        "subs x20, x20, #0x1",
        "b.ne 0x44",
        "mov x9, #0x2e",
        "str x9, [sp]",
        "mov x0, sp",
        "mov x8, #0x33",
        "svc #0x0",
        "ldr x9, [x19]",
        "ldr x0, [x19, #16]",
        "add x1, x19, #0x10",
        "add x2, x19, x9, lsl #3",
        "add x2, x2, #0x10",
        "mov x8, #0xdd",
        "svc #0x0",
        "neg x0, x0",                   # 0x88, fail
        "mov x8, #0x5d",
        "svc #0x0",
    ]


def test_an_executable_names_its_machine_and_pages() -> None:
    for arch, machine, align in (("x86_64", 62, 0x1000), ("aarch64", 183, 0x10000)):
        elf = euid_program(arch)
        assert struct.unpack_from("<H", elf, 18)[0] == machine
        entry = struct.unpack_from("<Q", elf, 24)[0]
        vaddr, align_ = struct.unpack_from("<Q", elf, 64 + 16)[0], struct.unpack_from("<Q", elf, 64 + 48)[0]
        assert (entry - vaddr, align_) == (HEADER, align)


def qemu(program: bytes, tmp_path: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "program"
    path.write_bytes(program)
    path.chmod(0o755)
    return subprocess.run([QEMU, str(path), *args], capture_output=True, text=True, timeout=60, **kw)


@need_qemu
def test_the_aarch64_programs_run(tmp_path: Path) -> None:
    """Under qemu-user the programs make their system calls, numbered for aarch64."""
    assert qemu(euid_program("aarch64"), tmp_path).returncode == os.geteuid() % 256
    if os.geteuid() == 0:  # as uid 1000, the probe exits with 1000 % 256
        # (through a descriptor: uid 1000 may not search tmp_path's parents)
        fd = os.open(tmp_path / "program", os.O_RDONLY)
        try:
            nobody = subprocess.run([QEMU, f"/proc/self/fd/{fd}"], pass_fds=[fd], timeout=60,
                                    preexec_fn=lambda: os.setresuid(1000, 1000, 1000))
        finally:
            os.close(fd)
        assert nobody.returncode == 1000 % 256
    assert qemu(syscall_program("getppid", arch="aarch64"), tmp_path).returncode == 0
    assert qemu(syscall_program("close", 1000, arch="aarch64"), tmp_path).returncode == 9  # EBADF
    assert qemu(syscall_program("kill", 0x7FFFFFF0, 0, arch="aarch64"), tmp_path).returncode == 3  # ESRCH


@need_qemu
def test_the_aarch64_trampoline_runs_a_command(tmp_path: Path) -> None:
    """The trampoline execs argv[1] with argv[2:] and the environment; 127, 126 as docker's.
    (The command it execs is this machine's sh: qemu-user hands execve to the kernel.)"""
    trampoline = static_elf(TRAMPOLINE_AARCH64, "aarch64")
    done = qemu(trampoline, tmp_path, "/bin/sh", "sh", "-c", 'echo "$0 $GREETING"; exit 7',
                env={"GREETING": "hello"})
    assert (done.returncode, done.stdout) == (7, "sh hello\n")
    assert qemu(trampoline, tmp_path, "/no/such/program", "x").returncode == 127
    assert qemu(trampoline, tmp_path, "/etc/hostname", "x").returncode == 126  # not executable
    assert qemu(trampoline, tmp_path, "/bin/sh").returncode == 126  # misuse: no argv[0]


@need_qemu
@pytest.mark.root
def test_the_aarch64_chroot_escape_gets_out(tmp_path: Path) -> None:
    """Run in a chroot (qemu-user copied in beside it), it climbs out and runs the host's cat."""
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    jail = tmp_path / "jail"
    jail.mkdir()
    shutil.copy(QEMU, jail / "qemu")
    (jail / "escape").write_bytes(chroot_escape_program("aarch64"))
    (jail / "escape").chmod(0o755)
    done = subprocess.run(["chroot", str(jail), "/qemu", "/escape", "/bin/cat", "/etc/os-release"],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout == Path("/etc/os-release").read_text(), done.stderr


def test_the_syscall_table_numbers_both_machines() -> None:
    x86, arm = seccomp.syscall_numbers("x86_64"), seccomp.syscall_numbers("aarch64")
    assert (x86["keyctl"], arm["keyctl"]) == (250, 219)
    # The calls glibc 2.36 does not wrap, made by number (the kernel's unistd headers).
    wrapped = ("seccomp", "capset", "bpf", "pivot_root")
    assert [x86[name] for name in wrapped] == [317, 126, 321, 155]
    assert [arm[name] for name in wrapped] == [277, 91, 280, 41]
    assert "open" in x86 and "open" not in arm  # aarch64 has openat only
    assert "bdflush" not in x86 and "bdflush" not in arm
    assert "aarch64" in seccomp.syscall_architectures()["keyctl"]


def test_the_stage_6_tests_name_calls_of_both_machines_or_say_x86_64() -> None:
    """A call that aarch64 lacks (sysfs: x86-64 keeps old calls the generic table
    never had) is one the stage-6 tests declare x86-64's own, and skip elsewhere."""
    import test_stage6_security as stage6

    x86, arm = seccomp.syscall_numbers("x86_64"), seccomp.syscall_numbers("aarch64")
    assert all(name in x86 for name in stage6.SYSCALLS)
    assert {name for name in stage6.SYSCALLS if name not in arm} == stage6.X86_64_ONLY == {"sysfs"}
    # Asked for one on aarch64, the program maker says so, not KeyError.
    with pytest.raises(ValueError, match=r"^sysfs is no system call on aarch64$"):
        syscall_program("sysfs", 3, arch="aarch64")
    assert syscall_program("sysfs", 3, arch="x86_64")[:4] == b"\x7fELF"


@pytest.mark.root
def test_calls_by_number_work_after_the_root_changed(tmp_path: Path) -> None:
    """capset and seccomp run in the container after pivot_root, where the syscall
    table beside the engine is out of reach: first_steps reads it before."""
    from mini_engine.base import syscall_table
    from mini_engine.runtime import init

    capset = seccomp.syscall_numbers()["capset"]
    child = os.fork()
    if child == 0:
        code = 1
        try:
            syscall_table.native_numbers.cache_clear()  # as a process that never read it
            init.first_steps({"process": {}}, (0, 1, 2))
            os.chroot(str(tmp_path))  # the table's file is gone from view
            os.chdir("/")
            code = 0 if syscall_table.number("capset") == capset else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(not os.path.exists("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
                    reason="needs linux-libc-dev for x86-64")
def test_the_x86_64_numbers_agree_with_the_kernel_header() -> None:
    text = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h").read_text()
    header = {m[1]: int(m[2]) for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)", text)}
    table = seccomp.syscall_numbers("x86_64")
    assert {name: table.get(name) for name in header} == header


def words(program: bytes) -> list[tuple[int, int, int, int]]:
    return list(struct.iter_unpack("HBBI", program))


def test_the_filter_checks_the_machine_it_is_for() -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO"}]}
    ld, jeq, jge, ret = seccomp.BPF_LD_W_ABS, seccomp.BPF_JEQ_K, seccomp.BPF_JGE_K, seccomp.BPF_RET_K
    eperm = seccomp.RET_ERRNO | 1
    arm = seccomp.compile_filter(profile, seccomp.syscall_numbers("aarch64"), "aarch64")
    assert words(arm) == [
        (ld, 0, 0, seccomp.ARCH_OFFSET), (jeq, 1, 0, 0xC00000B7), (ret, 0, 0, seccomp.RET_KILL_PROCESS),
        (ld, 0, 0, seccomp.NR_OFFSET),  # no x32 bit on aarch64
        (jeq, 0, 1, 219), (ret, 0, 0, eperm), (ret, 0, 0, seccomp.RET_ALLOW)]
    x86 = seccomp.compile_filter(profile, seccomp.syscall_numbers("x86_64"), "x86_64")
    assert words(x86) == [
        (ld, 0, 0, seccomp.ARCH_OFFSET), (jeq, 1, 0, 0xC000003E), (ret, 0, 0, seccomp.RET_KILL_PROCESS),
        (ld, 0, 0, seccomp.NR_OFFSET), (jge, 0, 1, 0x40000000), (ret, 0, 0, seccomp.RET_KILL_PROCESS),
        (jeq, 0, 1, 250), (ret, 0, 0, eperm), (ret, 0, 0, seccomp.RET_ALLOW)]


def test_the_default_profile_refuses_open_tree_attr() -> None:
    """open_tree_attr (Linux 6.15) clones a mount and changes it in one call,
    as open_tree and mount_setattr do: refused without CAP_SYS_ADMIN, like them."""
    def allowed(bounding: list[str]) -> set[str]:
        return {name for rule in default_profile(bounding)["syscalls"]
                if rule["action"] == "SCMP_ACT_ALLOW" for name in rule["names"]}

    assert "open_tree_attr" in seccomp.syscall_numbers()
    assert {"open_tree", "open_tree_attr", "mount_setattr"}.isdisjoint(allowed(["CAP_CHOWN"]))
    assert {"open_tree", "open_tree_attr", "mount_setattr"} <= allowed(["CAP_SYS_ADMIN"])
