"""Stage 6, security: which device nodes a container may open, as an eBPF program.

Chapter 06 reads this module. Man pages: bpf(2), mknod(2). Kernel docs:
admin-guide/cgroup-v2.rst ("Device controller"), bpf/prog_cgroup_device
(BPF_PROG_TYPE_CGROUP_DEVICE).

Capabilities decide who may *make* a device node (CAP_MKNOD, in docker's
default set); they say nothing about which devices. Without a device rule,
root in a container could ``mknod /tmp/disk b 8 0`` and read the host's
disk. cgroup v1 had a ``devices`` controller with allow and deny files;
cgroup v2 has none: the kernel runs an eBPF program attached to the cgroup
on every open and mknod of a device node, and the program answers 1
(allow) or 0 (deny). This module compiles ``linux.resources.devices`` into
that program, loads it with bpf(2) and attaches it to the container's cgroup.

The rules are evaluated as runc does: the last rule that matches decides,
and nothing matched means deny. So the program checks them from the last
to the first and returns at the first match.
"""

from __future__ import annotations

import ctypes
import os
import struct

from mini_engine.base import syscall_table
from mini_engine.base.errors import ContainerError

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: see mini_engine/runtime/__init__.py
    from typing import Any

# struct bpf_cgroup_dev_ctx: access_type (type in the low 16 bits, access
# in the high 16), major, minor. <linux/bpf.h>
DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
ACCESS = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}

# eBPF opcodes (<linux/bpf_common.h>, <linux/bpf.h>): class | size/op | source.
LDX_MEM_W = 0x61    # dst = *(u32 *)(src + off)
ALU64_AND_K = 0x57  # dst &= imm
ALU64_RSH_K = 0x77  # dst >>= imm
MOV64_X = 0xBF      # dst = src
MOV64_K = 0xB7      # dst = imm
JNE_K = 0x55        # if dst != imm: pc += off
JEQ_K = 0x15        # if dst == imm: pc += off
EXIT = 0x95         # return r0

BPF_PROG_LOAD, BPF_PROG_ATTACH = 5, 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One eBPF instruction: 8 bytes (opcode, two 4-bit registers, a 16-bit offset, a 32-bit immediate)."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _rule_block(rule: dict[str, Any]) -> list[bytes]:
    """Code that returns the rule's verdict if it matches, else falls through.

    Registers: r2 = type, r3 = requested access, r4 = major, r5 = minor.
    """
    tests: list[tuple[int, int]] = []  # (register, value): the rule does not match if they differ
    kind = rule.get("type", "a")
    if kind in ("c", "b"):
        tests.append((2, DEV_CHAR if kind == "c" else DEV_BLOCK))
    for register, key in ((4, "major"), (5, "minor")):
        if rule.get(key) not in (None, -1):
            tests.append((register, rule[key]))
    allowed = sum(ACCESS[c] for c in rule.get("access", "rwm"))
    size = len(tests) + 5
    # Each failed test jumps past the block's last instruction.
    block = [insn(JNE_K, dst=reg, off=size - i - 1, imm=value) for i, (reg, value) in enumerate(tests)]
    if rule["allow"]:
        # An allow rule covers the request if nothing is asked that it does not list...
        access_test = [insn(MOV64_X, dst=1, src=3), insn(ALU64_AND_K, dst=1, imm=~allowed & 0xFFFF),
                       insn(JNE_K, dst=1, off=2, imm=0)]
    else:
        # ...a deny rule if anything asked is in its list: O_RDWR is r and w at once.
        access_test = [insn(MOV64_X, dst=1, src=3), insn(ALU64_AND_K, dst=1, imm=allowed),
                       insn(JEQ_K, dst=1, off=2, imm=0)]
    block += [
        *access_test,
        insn(MOV64_K, dst=0, imm=1 if rule["allow"] else 0),
        insn(EXIT),
    ]
    return block


# [book:device-filter]
def compile_rules(rules: list[dict[str, Any]]) -> bytes:
    """The eBPF program for ``linux.resources.devices``: the last matching rule decides."""
    prog = [
        insn(LDX_MEM_W, dst=2, src=1, off=0),   # r2 = ctx->access_type
        insn(ALU64_AND_K, dst=2, imm=0xFFFF),   # r2: the device type
        insn(LDX_MEM_W, dst=3, src=1, off=0),
        insn(ALU64_RSH_K, dst=3, imm=16),       # r3: the access asked for
        insn(LDX_MEM_W, dst=4, src=1, off=4),   # r4 = ctx->major
        insn(LDX_MEM_W, dst=5, src=1, off=8),   # r5 = ctx->minor
    ]
    for rule in reversed(rules):
        prog += _rule_block(rule)
    prog += [insn(MOV64_K, dst=0, imm=0), insn(EXIT)]  # no rule matched: deny
    return b"".join(prog)
# [/book:device-filter]


# [book:device-rules]
def rules_for(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The config's rules, then what the runtime itself put in /dev, always allowed.

    The runtime spec's default devices (null, zero, full, random, urandom,
    tty), the terminals (ptmx, the pts of devpts) and every
    ``linux.devices`` entry must open whatever the rules say, as runc
    makes them: an engine like podman writes only "deny everything".
    Not 5:1, the host's console: a container's /dev/console is its pty,
    bind-mounted, and a node 5:1 that an image carries must not open.
    """
    from mini_engine.runtime.mounts import DEFAULT_DEVICES

    always = [(major, minor) for major, minor in DEFAULT_DEVICES.values()]
    always += [(5, 2), (136, -1)]  # ptmx, /dev/pts/N
    rules = list(config["linux"].get("resources", {}).get("devices", []))
    rules += [{"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
              for major, minor in always]
    for device in config["linux"].get("devices", []):
        if device.get("type") in ("c", "b", "u"):
            rules.append({"allow": True, "type": "b" if device["type"] == "b" else "c",
                          "major": device.get("major", 0), "minor": device.get("minor", 0),
                          "access": "rwm"})
    return rules
# [/book:device-rules]


def check_rules(rules: Any) -> None:
    if not isinstance(rules, list):
        raise ContainerError("config.json: linux.resources.devices must be a list")
    for i, rule in enumerate(rules):
        where = f"config.json: linux.resources.devices[{i}]"
        if not isinstance(rule, dict) or not isinstance(rule.get("allow"), bool):
            raise ContainerError(f"{where}: needs allow (true or false)")
        if rule.get("type", "a") not in ("a", "c", "b"):
            raise ContainerError(f"{where}: type must be a, c or b")
        if any(c not in ACCESS for c in rule.get("access", "rwm")):
            raise ContainerError(f"{where}: access must be made of r, w and m")
        for key in ("major", "minor"):
            value = rule.get(key)
            if value is not None and (not isinstance(value, int) or value < -1 or value > 0xFFFFFFF):
                raise ContainerError(f"{where}: {key} must be a number, or -1 for any")


_libc = ctypes.CDLL(None, use_errno=True)


def _bpf(command: int, attr: bytes) -> int:
    number = syscall_table.number("bpf")  # glibc has no bpf() wrapper
    buffer = ctypes.create_string_buffer(attr, 128)
    result = int(_libc.syscall(number, command, buffer, 128))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf: {os.strerror(err)}")
    return result


# [book:attach-device-filter]
def attach(cgroup: str, rules: list[dict[str, Any]]) -> None:
    """Load the program for ``rules`` and attach it to the cgroup v2 directory ``cgroup``."""
    program = compile_rules(rules)
    code = ctypes.create_string_buffer(program, len(program))
    license_ = ctypes.create_string_buffer(b"MIT")
    # union bpf_attr for BPF_PROG_LOAD: type, count, insns, license, (log), ..., expected_attach_type.
    load = struct.pack("<IIQQIIQII16sII", BPF_PROG_TYPE_CGROUP_DEVICE, len(program) // 8,
                       ctypes.addressof(code), ctypes.addressof(license_), 0, 0, 0, 0, 0, b"",
                       0, BPF_CGROUP_DEVICE)
    try:
        prog_fd = _bpf(BPF_PROG_LOAD, load)
    except OSError as exc:
        raise ContainerError(f"loading the device filter: {exc.strerror} (bpf(2) is needed for "
                             "linux.resources.devices on cgroup v2)") from None
    dir_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # The cgroup holds the program from now on; it goes with the cgroup.
        _bpf(BPF_PROG_ATTACH, struct.pack("<IIII", dir_fd, prog_fd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI))
    except OSError as exc:
        raise ContainerError(f"attaching the device filter to {cgroup}: {exc.strerror}") from None
    finally:
        os.close(dir_fd)
        os.close(prog_fd)
# [/book:attach-device-filter]
