"""What the labs share: run a command as a learner would, show it, check a fact.

Not part of the engine: the labs (``labs/NN-slug/lab.py``) import it so
that each cell reads like a terminal session with a check at the end. A lab
runs headless (``python labs/00-process/lab.py``) or as a notebook; either
way a failed check stops it with the fact that did not hold.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass

from mini_engine.runtime.trampoline import static_elf


class CheckFailed(AssertionError):
    """A lab's check did not hold."""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def engine(args: str | list[str], input: str | None = None, quiet: bool = False) -> Result:
    """``mini-engine ARGS``, run with the Python that runs this lab.

    ``args`` is split like a shell would split it (quotes group words) but
    nothing is expanded: ``$$`` reaches the container's shell as written.
    """
    argv = shlex.split(args) if isinstance(args, str) else list(args)
    if not quiet:
        print(f"$ mini-engine {shlex.join(argv)}")
    done = subprocess.run([sys.executable, "-m", "mini_engine", *argv], input=input, text=True,
                          capture_output=True, timeout=300)
    result = Result(done.returncode, done.stdout, done.stderr)
    if not quiet:
        show(result)
    return result


def show(result: Result) -> None:
    for text in (result.stdout, result.stderr):
        if text:
            print(text, end="" if text.endswith("\n") else "\n")
    if result.returncode:
        print(f"(exit code {result.returncode})")


def check(fact: bool, what: str) -> None:
    """Print ``what`` with a tick if ``fact`` holds; stop the lab if not."""
    if not fact:
        raise CheckFailed(f"check failed: {what}")
    print(f"ok: {what}")


def require_root() -> None:
    if os.geteuid() != 0:
        raise SystemExit("this lab makes containers: run it as root (sudo)")


def namespaces(pid: int | str = "self") -> dict[str, int]:
    """The namespace inodes of a process, as the probe prints them."""
    out = {}
    for name in ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"):
        out[name] = int(os.readlink(f"/proc/{pid}/ns/{name}").split("[")[1].rstrip("]"))
    return out


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid``, read from /proc (what ``pgrep -P`` does)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except OSError:
                pass  # it ended while we looked
    return out


# [book:euid-program]
def euid_program() -> bytes:
    """A complete program, 136 bytes: it exits with its effective uid.

    Made setuid-root in an image, it shows whether execve granted root:
    exit code 0 if it did, the caller's uid (mod 256) if no_new_privs
    stopped it. No compiler needed: five instructions.
    """
    return static_elf(bytes.fromhex(
        "b86b000000"  # mov eax, 107    geteuid
        "0f05"        # syscall
        "89c7"        # mov edi, eax    its result is exit's argument
        "b83c000000"  # mov eax, 60     exit
        "0f05"        # syscall
    ))


def syscall_program(number: int, *args: int) -> bytes:
    """A program that makes one system call and exits 0 if it worked, else with its errno.

    What seccomp decides is then the exit code: 1 (EPERM) when the filter
    refused the call, 0 when the kernel did it.
    """
    import struct

    code = struct.pack("<BI", 0xB8, number)                   # mov eax, number
    for opcode, value in zip((0xBF, 0xBE, 0xBA), args, strict=False):
        code += struct.pack("<BI", opcode, value & 0xFFFFFFFF)  # mov edi/esi/edx, arg
    code += bytes.fromhex(
        "0f05"        # syscall
        "89c7"        # mov edi, eax
        "f7df"        # neg edi         -errno -> errno
        "85c0"        # test eax, eax
        "7902"        # jns +2          it worked: exit 0
        "eb02"        # jmp +2          it failed: exit errno
        "31ff"        # xor edi, edi
        "b83c000000"  # mov eax, 60     exit
        "0f05"        # syscall
    )
    return static_elf(code)
# [/book:euid-program]
