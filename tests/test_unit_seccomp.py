"""The seccomp compiler, instruction by instruction (mini_engine/runtime/seccomp.py).

A small profile, with made-up syscall numbers so that the program does not
depend on this machine's headers, compiled to classic BPF and read back as
struct sock_filter: (code, jt, jf, k). The jumps are relative: ``jt`` and
``jf`` count the instructions skipped after this one.
"""

from __future__ import annotations

import struct

import pytest

from mini_engine.base.errors import ContainerError
from mini_engine.runtime import seccomp

pytestmark = [pytest.mark.stage(6), pytest.mark.unit]

LD, JEQ, JGT, JGE, AND, RET = 0x20, 0x15, 0x25, 0x35, 0x54, 0x06
KILL_PROCESS, ALLOW = 0x80000000, 0x7FFF0000
NUMBERS = {"read": 0, "write": 1, "personality": 135, "ioctl": 16}


def program(profile: dict) -> list[tuple[int, int, int, int]]:
    return list(struct.iter_unpack("HBBI", seccomp.compile_filter(profile, NUMBERS)))


# Every program starts so: only x86_64 system calls, and none of the x32 ABI.
PROLOGUE = [
    (LD, 0, 0, 4),                   # 0: A = seccomp_data.arch
    (JEQ, 1, 0, 0xC000003E),         # 1: AUDIT_ARCH_X86_64? on to 3
    (RET, 0, 0, KILL_PROCESS),       # 2: another ABI: killed
    (LD, 0, 0, 0),                   # 3: A = seccomp_data.nr
    (JGE, 0, 1, 0x40000000),         # 4: the x32 bit set? 5, else 6
    (RET, 0, 0, KILL_PROCESS),       # 5
]


def test_a_profile_with_an_argument_rule() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["read", "write", "bdflush"], "action": "SCMP_ACT_ALLOW"},  # bdflush: not here, skipped
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        ],
    }
    assert program(profile) == [
        *PROLOGUE,
        (JEQ, 0, 1, 0),                  # 6: read? else 8
        (RET, 0, 0, ALLOW),              # 7
        (JEQ, 0, 1, 1),                  # 8: write? else 10
        (RET, 0, 0, ALLOW),              # 9
        (JEQ, 0, 5, 135),                # 10: personality? else 16
        (LD, 0, 0, 20),                  # 11: A = high word of args[0]
        (JEQ, 0, 3, 0),                  # 12: 0? else 16
        (LD, 0, 0, 16),                  # 13: A = low word of args[0]
        (JEQ, 0, 1, 8),                  # 14: 8? 15, else 16
        (RET, 0, 0, ALLOW),              # 15
        (LD, 0, 0, 0),                   # 16: A = nr again, the comparison overwrote it
        (JGT, 0, 1, 135),                # 17: past every number we know? 18, else 19
        (RET, 0, 0, 0x00050000 | 38),    # 18: ENOSYS, so that libc falls back
        (RET, 0, 0, 0x00050000 | 1),     # 19: the default, EPERM
    ]


def test_ordered_and_masked_comparisons_of_64_bit_arguments() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
             "args": [{"index": 1, "value": 0x1_0000_0005, "op": "SCMP_CMP_GE"}]},
            {"names": ["personality"], "action": "SCMP_ACT_KILL_PROCESS",
             "args": [{"index": 2, "value": 0xFF00, "valueTwo": 0x0800, "op": "SCMP_CMP_MASKED_EQ"}]},
        ],
    }
    assert program(profile) == [
        *PROLOGUE,
        (JEQ, 0, 6, 16),                 # 6: ioctl? else 13
        (LD, 0, 0, 28),                  # 7: A = high word of args[1]
        (JGT, 3, 0, 1),                  # 8: above 1: >= for sure, 12
        (JEQ, 0, 3, 1),                  # 9: equal: the low words decide (10); below: 13
        (LD, 0, 0, 24),                  # 10: A = low word of args[1]
        (JGE, 0, 1, 5),                  # 11: >= 5? 12, else 13
        (RET, 0, 0, 0x00050000 | 22),    # 12: EINVAL, the rule's errnoRet
        (LD, 0, 0, 0),                   # 13: A = nr again
        (JEQ, 0, 7, 135),                # 14: personality? else 22
        (LD, 0, 0, 36),                  # 15: A = high word of args[2]
        (AND, 0, 0, 0),                  # 16: & the mask's high word
        (JEQ, 0, 4, 0),                  # 17: the wanted high word? else 22
        (LD, 0, 0, 32),                  # 18: A = low word of args[2]
        (AND, 0, 0, 0xFF00),             # 19: & the mask's low word
        (JEQ, 0, 1, 0x0800),             # 20: the wanted low word? 21, else 22
        (RET, 0, 0, KILL_PROCESS),       # 21
        (LD, 0, 0, 0),                   # 22: A = nr again
        (RET, 0, 0, ALLOW),              # 23: the default; ALLOW needs no ENOSYS guard
    ]


def test_an_unknown_action_is_refused() -> None:
    with pytest.raises(ContainerError, match="action 'SCMP_ACT_NOTIFY' is not supported"):
        seccomp.compile_filter({"defaultAction": "SCMP_ACT_NOTIFY"}, NUMBERS)
