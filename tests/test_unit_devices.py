"""The device filter's eBPF program, instruction by instruction (mini_engine/runtime/devices.py).

As runc's devicefilter tests assert theirs: the rules compiled, read back
as struct bpf_insn (opcode, dst and src registers in one byte, a signed
16-bit offset, a 32-bit immediate). The program is a list of blocks, the
last rule first, each returning its verdict on a match; a jump's offset
counts the instructions skipped after it.
"""

from __future__ import annotations

import struct

import pytest

from mini_engine.runtime import devices

pytestmark = [pytest.mark.stage(6), pytest.mark.unit]

LDX_W, AND, RSH, MOV_X, MOV_K, JNE, JEQ, EXIT = 0x61, 0x57, 0x77, 0xBF, 0xB7, 0x55, 0x15, 0x95


def program(rules: list[dict]) -> list[tuple[int, int, int, int]]:
    """(opcode, src << 4 | dst, offset, immediate) per instruction."""
    return list(struct.iter_unpack("<BBhi", devices.compile_rules(rules)))


# r1 is the context, struct bpf_cgroup_dev_ctx.
PROLOGUE = [
    (LDX_W, 0x12, 0, 0),         # 0: r2 = ctx->access_type
    (AND, 0x02, 0, 0xFFFF),      # 1: r2 &= 0xffff: the type (1 block, 2 char)
    (LDX_W, 0x13, 0, 0),         # 2: r3 = ctx->access_type
    (RSH, 0x03, 0, 16),          # 3: r3 >>= 16: the access (1 mknod, 2 read, 4 write)
    (LDX_W, 0x14, 4, 0),         # 4: r4 = ctx->major
    (LDX_W, 0x15, 8, 0),         # 5: r5 = ctx->minor
]


def test_deny_all_then_allow_one_character_device_for_reading_and_writing() -> None:
    rules = [{"allow": False, "access": "rwm"},
             {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}]
    assert program(rules) == [
        *PROLOGUE,
        # The last rule first: c 1:3 rw.
        (JNE, 0x02, 7, 2),           # 6: not a char device: on to 14
        (JNE, 0x04, 6, 1),           # 7: major not 1: 14
        (JNE, 0x05, 5, 3),           # 8: minor not 3: 14
        (MOV_X, 0x31, 0, 0),         # 9: r1 = r3
        (AND, 0x01, 0, 0xFFF9),      # 10: r1 &= ~(read | write): what the rule does not allow
        (JNE, 0x01, 2, 0),           # 11: something else asked (mknod): 14
        (MOV_K, 0x00, 0, 1),         # 12: r0 = 1, allow
        (EXIT, 0x00, 0, 0),          # 13
        # Then a: everything, denied.
        (MOV_X, 0x31, 0, 0),         # 14: r1 = r3
        (AND, 0x01, 0, 7),           # 15: r1 &= rwm
        (JEQ, 0x01, 2, 0),           # 16: nothing of it asked: 19
        (MOV_K, 0x00, 0, 0),         # 17: r0 = 0, deny
        (EXIT, 0x00, 0, 0),          # 18
        (MOV_K, 0x00, 0, 0),         # 19: no rule matched: deny
        (EXIT, 0x00, 0, 0),          # 20
    ]


def test_wildcards_leave_their_test_out() -> None:
    """A block device of any minor (-1, or no minor at all), and mknod only."""
    assert program([{"allow": True, "type": "b", "major": 8, "minor": -1, "access": "m"}])[6:] == [
        (JNE, 0x02, 6, 1),           # 6: not a block device: 13
        (JNE, 0x04, 5, 8),           # 7: major not 8: 13
        (MOV_X, 0x31, 0, 0),         # 8
        (AND, 0x01, 0, 0xFFFE),      # 9: r1 &= ~mknod
        (JNE, 0x01, 2, 0),           # 10: read or write asked: 13
        (MOV_K, 0x00, 0, 1),         # 11: allow
        (EXIT, 0x00, 0, 0),          # 12
        (MOV_K, 0x00, 0, 0),         # 13: deny
        (EXIT, 0x00, 0, 0),          # 14
    ]


def test_no_rules_deny_everything() -> None:
    assert program([]) == [*PROLOGUE, (MOV_K, 0x00, 0, 0), (EXIT, 0x00, 0, 0)]
