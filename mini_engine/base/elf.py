"""A program from machine code alone: the smallest static ELF executable, for x86-64 or aarch64.

The runtime's trampoline (chapter 06), the bundled image's euid probe and
the labs' programs are a few instructions each; no compiler is needed to
run them. Each is written twice, once per machine the engine runs on,
and the one for this machine is used. Man pages: elf(5), execve(2).

The two machines read their instructions differently. x86-64's are bytes
of varying length, written here as hex in the order they sit in memory.
aarch64's are 32-bit words, all of one size, stored little-endian: they
are written here as words (``0xD2801BA8``, ``mov x8, #221``), the way the
Arm Architecture Reference Manual prints them, and :func:`a64` lays them out.
"""

from __future__ import annotations

import os
import struct

from mini_engine.base.errors import ContainerError

# e_machine, <elf.h>: which processor the code is for. execve(2) refuses a
# file of another machine with ENOEXEC ("Exec format error").
EM_X86_64 = 62
EM_AARCH64 = 183
E_MACHINE = {"x86_64": EM_X86_64, "aarch64": EM_AARCH64}
# p_align: the largest page the machine's kernels use. aarch64 kernels may
# run with 64 KiB pages; the segment's address must be aligned to them.
PAGE = {"x86_64": 0x1000, "aarch64": 0x10000}


def machine() -> str:
    """This machine as the kernel names it (uname -m), the key of every per-machine table."""
    return os.uname().machine


def static_elf(code: bytes, arch: str | None = None) -> bytes:
    """A static executable for ``arch`` (this machine by default): an ELF header,
    one loadable segment, ``code``, which starts right after the headers."""
    arch = arch or machine()
    if arch not in E_MACHINE:
        raise ContainerError(f"no machine code for {arch} (the engine knows {' and '.join(E_MACHINE)})")
    base, code_at = 0x400000, 64 + 56
    size = code_at + len(code)
    elf = b"\x7fELF\x02\x01\x01" + bytes(9)  # 64-bit, little-endian, version 1
    elf += struct.pack("<HHIQQQIHHHHHH", 2, E_MACHINE[arch], 1, base + code_at, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    elf += struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, PAGE[arch])  # PT_LOAD, R+X
    return elf + code


def a64(*words: int) -> bytes:
    """aarch64 instructions, one 32-bit word each, as they sit in memory."""
    return struct.pack(f"<{len(words)}I", *words)


def executable(programs: dict[str, bytes], arch: str | None = None) -> bytes:
    """The executable of ``programs`` (machine -> code) for ``arch``, this machine by default."""
    arch = arch or machine()
    if arch not in programs:
        raise ContainerError(f"no machine code for {arch} (written for {' and '.join(programs)})")
    return static_elf(programs[arch], arch)
