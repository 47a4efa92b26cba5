"""System call names and numbers: libseccomp's table, which both sides read.

Chapter 06 reads this module. Man pages: syscall(2), syscalls(2).

The runtime compiles a seccomp profile into BPF by number
(``runtime/seccomp.py``); the engine writes that profile by name and
refuses a name no architecture has (``config/seccomp.py``,
``config/security.py``). Both need the same tables, so they live here,
read from ``syscall-names.txt`` beside this module (libseccomp's table of
every name on every architecture it supports, with the numbers of the two
machines the engine runs on; ``scripts/syscall-names.py`` makes it).
"""

from __future__ import annotations

import errno
import os
from functools import cache

from mini_engine.base.elf import machine as native_machine
from mini_engine.base.errors import ContainerError

SYSCALL_NAMES = os.path.join(os.path.dirname(__file__), "syscall-names.txt")

# libseccomp's name for each machine the engine runs on, which profiles
# list under "architectures".
SCMP_ARCH = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}


def syscall_numbers(machine: str | None = None, table: str = SYSCALL_NAMES) -> dict[str, int]:
    """Syscall name -> number on ``machine`` (this one by default), from libseccomp's table.

    A row reads ``keyctl x86 x86_64=250 x32 arm aarch64=219 ...``: the
    numbers are per machine, since each architecture numbers its calls its
    own way (aarch64 takes the kernel's generic table, x86_64 its own).
    """
    machine = machine or native_machine()
    if machine not in SCMP_ARCH:
        raise ContainerError(f"seccomp: no system call numbers for {machine} "
                             f"(the engine knows {' and '.join(SCMP_ARCH)})")
    numbers = {}
    with open(table) as f:
        for line in f:
            if line.startswith("#"):
                continue
            name, *arches = line.split()
            for arch in arches:
                if arch.startswith(f"{machine}="):
                    numbers[name] = int(arch.partition("=")[2])
    return numbers


@cache
def native_numbers() -> dict[str, int]:
    """This machine's numbers, read once per process. The runtime reads them
    before the container's root changes (runtime/init.py, ``first_steps``):
    after pivot_root or chroot this file is out of reach, and capset and
    seccomp, which glibc does not wrap, are still called by number."""
    return syscall_numbers()


def number(name: str) -> int:
    """System call ``name``'s number on this machine, for a call glibc does not wrap."""
    numbers = native_numbers()
    if name not in numbers:
        raise OSError(errno.ENOSYS, f"{name}: no such system call on {native_machine()}")
    return numbers[name]


def syscall_architectures(table: str = SYSCALL_NAMES) -> dict[str, list[str]]:
    """Syscall name -> the architectures that have it, from libseccomp's table.

    ``bdflush`` -> ``["x86", "arm", ...]``: a name of other architectures,
    which a profile may list and this machine skips.
    """
    with open(table) as f:
        rows = [line.split() for line in f if line.strip() and not line.startswith("#")]
    return {row[0]: [arch.partition("=")[0] for arch in row[1:]] for row in rows}
