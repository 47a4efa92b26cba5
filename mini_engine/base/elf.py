"""A program from machine code alone: the smallest static x86-64 ELF executable.

The runtime's trampoline (chapter 06), the bundled image's euid probe and
the labs' programs are a few instructions each; no compiler is needed to
run them. Man pages: elf(5), execve(2).
"""

from __future__ import annotations

import struct


def static_elf(code: bytes) -> bytes:
    """A static x86-64 executable: an ELF header, one loadable segment, ``code``."""
    base, code_at = 0x400000, 64 + 56
    size = code_at + len(code)
    elf = b"\x7fELF\x02\x01\x01" + bytes(9)  # 64-bit, little-endian, version 1
    elf += struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, base + code_at, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    elf += struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)  # PT_LOAD, R+X
    return elf + code
