"""System call names and numbers: the kernel's table, which both sides read.

Chapter 06 reads this module. Man pages: syscall(2), syscalls(2).

The runtime compiles a seccomp profile into BPF by number
(``runtime/seccomp.py``); the engine writes that profile by name and
refuses a name no architecture has (``config/seccomp.py``,
``config/security.py``). Both need the same two tables, so they live here:
this machine's numbers, from the kernel's own header, and every name on
every architecture libseccomp supports, from ``syscall-names.txt`` beside
this module (``scripts/syscall-names.py`` makes it).
"""

from __future__ import annotations

import os
import re

from mini_engine.base.errors import ContainerError

UNISTD = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"
SYSCALL_NAMES = os.path.join(os.path.dirname(__file__), "syscall-names.txt")


def syscall_numbers(header: str = UNISTD) -> dict[str, int]:
    """Syscall name -> number, read from the kernel's own header (linux-libc-dev)."""
    try:
        with open(header) as f:
            text = f.read()
    except FileNotFoundError:
        raise ContainerError(f"seccomp: {header} is missing: install linux-libc-dev") from None
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)", text)}


def syscall_architectures(table: str = SYSCALL_NAMES) -> dict[str, list[str]]:
    """Syscall name -> the architectures that have it, from libseccomp's table.

    ``bdflush`` -> ``["x86", "arm", ...]``: a name of other architectures,
    which a profile may list and this machine skips.
    """
    with open(table) as f:
        rows = [line.split() for line in f if line.strip() and not line.startswith("#")]
    return {row[0]: row[1:] for row in rows}
