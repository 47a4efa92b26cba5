"""Stage 6, security: seccomp, a filter on every system call the container makes.

Chapter 06 reads this module. Man pages: seccomp(2), prctl(2), bpf(4)
(classic BPF), syscall(2). Kernel doc: Documentation/userspace-api/seccomp_filter.rst.

The kernel runs a small program, in classic BPF, on each system call. The
program sees ``struct seccomp_data`` (the architecture, the syscall number,
six arguments) and returns a verdict: allow, fail with an errno, kill. This
module is that program's compiler: it turns config.json's ``linux.seccomp``
(Docker's profile format, which the OCI spec adopted) into BPF instructions,
with an assembler small enough to read, and loads the result.

Limits of this teaching compiler: only the machine's native architecture
(x86_64 or aarch64); a syscall made through another ABI (32-bit int 0x80
or x32 on x86_64, 32-bit arm on aarch64) is killed, so it cannot slip past
the filter.

Profiles are written for every architecture at once: podman's names
``bdflush`` (i386, arm, s390...), docker's ``arm_fadvise64_64`` (arm).
A name this machine lacks is skipped, as runc and crun skip it (libseccomp
resolves names per architecture). ``base/syscall-names.txt``,
libseccomp's table of every name on every architecture it supports
(``scripts/syscall-names.py`` makes it), tells such a name from one that no
architecture has: a typo, which the engine refuses. For the two machines the
engine runs on it also holds each call's number, which differs between them
(``keyctl`` is 250 on x86_64, 219 on aarch64): the compiler takes its
numbers from there.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from mini_engine.base import syscall_table
from mini_engine.base.elf import machine as native_machine
from mini_engine.base.errors import ContainerError
from mini_engine.base.syscall_table import SCMP_ARCH, syscall_architectures, syscall_numbers  # noqa: F401 (also read here)

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: see mini_engine/runtime/__init__.py
    from typing import Any

# struct seccomp_data, <linux/seccomp.h>: where each field sits.
NR_OFFSET = 0
ARCH_OFFSET = 4
ARGS_OFFSET = 16  # six 64-bit arguments; on little-endian the low word comes first

# seccomp_data.arch, <linux/audit.h>: the ELF machine (elf(5)'s e_machine)
# with the bits for 64-bit and little-endian. Per machine, and libseccomp's
# name for it, which profiles list under "architectures".
AUDIT_ARCH_X86_64 = 0xC000003E   # EM_X86_64 (62) | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
AUDIT_ARCH_AARCH64 = 0xC00000B7  # EM_AARCH64 (183) | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
AUDIT_ARCH = {"x86_64": AUDIT_ARCH_X86_64, "aarch64": AUDIT_ARCH_AARCH64}
X32_SYSCALL_BIT = 0x40000000  # x86_64 only: the x32 ABI's calls carry it

# Return values, <linux/seccomp.h>: the verdict in the high bits, data in the low 16.
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000

# Classic BPF opcodes, <linux/bpf_common.h>.
BPF_LD_W_ABS = 0x20    # A = the 32-bit word at offset k of seccomp_data
BPF_ALU_AND_K = 0x54   # A &= k
BPF_JEQ_K = 0x15       # jump if A == k
BPF_JGT_K = 0x25       # jump if A > k (unsigned)
BPF_JGE_K = 0x35       # jump if A >= k (unsigned)
BPF_RET_K = 0x06       # return k

SECCOMP_SET_MODE_FILTER = 1


# The OCI actions this compiler knows, as seccomp return values (ERRNO and
# TRACE carry errnoRet in their low 16 bits). `features` lists these keys.
ACTIONS = {"SCMP_ACT_ALLOW": RET_ALLOW, "SCMP_ACT_ERRNO": RET_ERRNO, "SCMP_ACT_KILL": RET_KILL_THREAD,
           "SCMP_ACT_KILL_THREAD": RET_KILL_THREAD, "SCMP_ACT_KILL_PROCESS": RET_KILL_PROCESS,
           "SCMP_ACT_TRAP": RET_TRAP, "SCMP_ACT_TRACE": RET_TRACE, "SCMP_ACT_LOG": RET_LOG}
# The argument comparisons `compare` emits code for.
OPERATORS = ("SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_GT", "SCMP_CMP_GE",
             "SCMP_CMP_LT", "SCMP_CMP_LE")


def action(name: str, errno_ret: int | None) -> int:
    """An OCI action name as a seccomp return value."""
    if name not in ACTIONS:
        raise ContainerError(f"config.json: linux.seccomp: action {name!r} is not supported")
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        return ACTIONS[name] | (errno.EPERM if errno_ret is None else errno_ret & 0xFFFF)
    return ACTIONS[name]


# [book:assembler]
class Insn:
    """One BPF instruction; a jump names its targets by label until assembled."""

    def __init__(self, code: int, k: int = 0, jt: str | int = 0, jf: str | int = 0) -> None:
        self.code, self.k, self.jt, self.jf = code, k, jt, jf


class Program:
    """A list of instructions and labels, assembled into struct sock_filter bytes."""

    def __init__(self) -> None:
        self.insns: list[Insn] = []
        self.labels: dict[str, int] = {}

    def emit(self, code: int, k: int = 0, jt: str | int = 0, jf: str | int = 0) -> None:
        self.insns.append(Insn(code, k & 0xFFFFFFFF, jt, jf))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.insns)

    def assemble(self) -> bytes:
        out = b""
        for i, insn in enumerate(self.insns):
            jumps = []
            for target in (insn.jt, insn.jf):
                # Classic BPF jumps only forward, and by at most 255 instructions.
                offset = target if isinstance(target, int) else self.labels[target] - i - 1
                if not 0 <= offset <= 255:
                    raise ContainerError(f"seccomp: a jump of {offset} does not fit in BPF")
                jumps.append(offset)
            out += struct.pack("HBBI", insn.code, jumps[0], jumps[1], insn.k)
        return out
# [/book:assembler]


def _arg_words(index: int) -> tuple[int, int]:
    low = ARGS_OFFSET + 8 * index
    return low, low + 4  # offsets of the low and the high 32-bit halves


# [book:compare-args]
def compare(prog: Program, arg: dict[str, Any], nomatch: str, tag: str) -> None:
    """Emit code that falls through if the 64-bit argument matches, else jumps to ``nomatch``.

    BPF registers are 32-bit, so a 64-bit comparison is two: the high words
    decide unless they are equal, then the low words do.
    """
    low, high = _arg_words(arg["index"])
    value = arg["value"] & 0xFFFFFFFFFFFFFFFF
    v_hi, v_lo = value >> 32, value & 0xFFFFFFFF
    op = arg["op"]
    if op not in OPERATORS:
        raise ContainerError(f"config.json: linux.seccomp: operator {op!r} is not supported")
    if op in ("SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_MASKED_EQ"):
        if op == "SCMP_CMP_MASKED_EQ":
            want = arg.get("valueTwo", 0) & 0xFFFFFFFFFFFFFFFF
            m_hi, m_lo, v_hi, v_lo = v_hi, v_lo, want >> 32, want & 0xFFFFFFFF
        equal, differ = (f"{tag}-eq", nomatch) if op != "SCMP_CMP_NE" else (nomatch, f"{tag}-eq")
        prog.emit(BPF_LD_W_ABS, high)
        if op == "SCMP_CMP_MASKED_EQ":
            prog.emit(BPF_ALU_AND_K, m_hi)
        prog.emit(BPF_JEQ_K, v_hi, 0, differ)
        prog.emit(BPF_LD_W_ABS, low)
        if op == "SCMP_CMP_MASKED_EQ":
            prog.emit(BPF_ALU_AND_K, m_lo)
        prog.emit(BPF_JEQ_K, v_lo, equal, differ)
        prog.label(f"{tag}-eq")  # for NE, "equal" went to nomatch and "differ" comes here
        return
    # Ordered comparisons, unsigned as the kernel compares them.
    strict = op in ("SCMP_CMP_GT", "SCMP_CMP_LT")
    greater = op in ("SCMP_CMP_GT", "SCMP_CMP_GE")
    ok, low_word = f"{tag}-ok", f"{tag}-low"
    prog.emit(BPF_LD_W_ABS, high)
    # High words: above decides for GT/GE, below decides for LT/LE.
    prog.emit(BPF_JGT_K, v_hi, ok if greater else nomatch, 0)
    prog.emit(BPF_JEQ_K, v_hi, low_word, nomatch if greater else ok)
    prog.label(low_word)
    prog.emit(BPF_LD_W_ABS, low)
    if greater:
        prog.emit(BPF_JGT_K if strict else BPF_JGE_K, v_lo, ok, nomatch)
    else:  # A < v  is  not (A >= v);  A <= v  is  not (A > v)
        prog.emit(BPF_JGE_K if strict else BPF_JGT_K, v_lo, nomatch, ok)
    prog.label(ok)
# [/book:compare-args]


# [book:compile]
def compile_filter(profile: dict[str, Any], numbers: dict[str, int], machine: str | None = None) -> bytes:
    """BPF for an OCI ``linux.seccomp`` object, on ``machine`` (this one by default),
    whose system calls ``numbers`` numbers.

    In this order: the architecture check (another one is killed), the
    number (on x86-64, an x32 call is killed), one block per rule and name
    (names this machine lacks skipped), then, only when the default action
    is not ALLOW, ENOSYS for a number above the table's highest, and last
    the default action. The chapter's mkdir.json compiles to its nine
    instructions, and the default profile to the number it gives.
    """
    machine = machine or native_machine()
    prog = Program()
    default = action(profile.get("defaultAction", "SCMP_ACT_ALLOW"), profile.get("defaultErrnoRet"))
    # 1. Only our own architecture: the same number means another syscall
    #    in the 32-bit ABI, so a filter that did not check could be bypassed.
    prog.emit(BPF_LD_W_ABS, ARCH_OFFSET)
    prog.emit(BPF_JEQ_K, AUDIT_ARCH[machine], "native", 0)
    prog.emit(BPF_RET_K, RET_KILL_PROCESS)
    prog.label("native")
    # 2. The syscall number; x32 calls carry a high bit, and are killed too.
    #    (aarch64 has no such ABI: its 32-bit calls failed the arch check.)
    prog.emit(BPF_LD_W_ABS, NR_OFFSET)
    if machine == "x86_64":
        prog.emit(BPF_JGE_K, X32_SYSCALL_BIT, 0, "rules")
        prog.emit(BPF_RET_K, RET_KILL_PROCESS)
    prog.label("rules")
    # 3. One block per (rule, syscall): match the number and the arguments,
    #    return the rule's action; on a mismatch, go on with the next block.
    block = 0
    for rule in profile.get("syscalls", []):
        verdict = action(rule["action"], rule.get("errnoRet"))
        for name in rule.get("names", []):
            if name not in numbers:
                # Another architecture's call, or one newer than our headers:
                # nothing on this machine to filter (runc skips it too).
                continue
            nxt = f"next{block}"
            prog.emit(BPF_JEQ_K, numbers[name], 0, nxt)
            for j, arg in enumerate(rule.get("args") or []):
                compare(prog, arg, nxt, f"b{block}a{j}")
            prog.emit(BPF_RET_K, verdict)
            prog.label(nxt)
            if rule.get("args"):
                prog.emit(BPF_LD_W_ABS, NR_OFFSET)  # the comparisons overwrote A
            block += 1
    # 4. Nothing matched. A number past every syscall the profile could name
    #    is one newer than our headers: ENOSYS, so that libc falls back to an
    #    older call (as runc does), where EPERM would be taken as a refusal.
    if default != RET_ALLOW and numbers:
        prog.emit(BPF_JGT_K, max(numbers.values()), 0, "known")
        prog.emit(BPF_RET_K, RET_ERRNO | errno.ENOSYS)
        prog.label("known")
    prog.emit(BPF_RET_K, default)
    return prog.assemble()
# [/book:compile]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def load(program: bytes) -> None:
    """Install the filter on this thread, for good: it survives execve and fork."""
    # By number, from the table read before the root changed (init.py's first_steps).
    number = syscall_table.number("seccomp")
    fprog = _SockFprog(len(program) // 8, program)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(number, SECCOMP_SET_MODE_FILTER, 0, ctypes.byref(fprog)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}")


BPF_MAXINSNS = 4096  # the kernel's limit on a classic BPF program


def check_profile(profile: dict[str, Any]) -> None:
    """Refuse a profile we cannot compile, or the kernel would refuse, before set-up."""
    for i, rule in enumerate(profile.get("syscalls", [])):
        for arg in rule.get("args") or []:
            if not 0 <= arg.get("index", -1) <= 5:
                raise ContainerError(f"config.json: linux.seccomp.syscalls[{i}]: argument index "
                                     f"{arg.get('index')} is not 0-5 (a syscall has six)")
        if not 0 <= rule.get("errnoRet", 1) <= 0xFFFF:
            raise ContainerError(f"config.json: linux.seccomp.syscalls[{i}]: errnoRet out of range")
    if not 0 <= profile.get("defaultErrnoRet", 1) <= 0xFFFF:
        # A larger value would spill into the action bits: ERRNO could become ALLOW.
        raise ContainerError("config.json: linux.seccomp.defaultErrnoRet out of range (0-65535)")
    program = compile_filter(profile, syscall_numbers())
    if len(program) // 8 > BPF_MAXINSNS:
        raise ContainerError(f"config.json: linux.seccomp compiles to {len(program) // 8} BPF "
                             f"instructions; the kernel takes at most {BPF_MAXINSNS}")
    native = SCMP_ARCH[native_machine()]
    arches = profile.get("architectures") or [native]
    if native not in arches:
        raise ContainerError(f"config.json: linux.seccomp: architectures {arches} leave out this "
                             f"machine's, {native}: the filter would refuse every call")
