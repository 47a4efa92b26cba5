"""Stage 6, security: the last exec goes through a sealed copy, so /proc/self/exe is never ours.

Chapter 06 reads this module. Man pages: memfd_create(2), fcntl(2) (file
seals), execve(2), proc(5) (/proc/PID/exe).

CVE-2019-5736: a container whose command is a script starting
``#!/proc/self/exe`` makes the kernel run, as the script's interpreter,
whatever program the process that execs it is running: for runc, runc;
here, the host's Python. That program then runs inside the container with
its host file behind /proc/self/exe, which it can keep open and, once no
one runs it, reopen for writing.

So the runtime never execs the container's command itself. It execs a
*trampoline*: 61 bytes of x86-64 machine code (68 of aarch64) in a sealed memfd, a file with no
name on any filesystem that no one can ever write again. The trampoline
execs the command. If the command is such a script, /proc/self/exe is the
sealed trampoline, not anything of the host's.
"""

from __future__ import annotations

import fcntl
import os

from mini_engine.base.elf import a64, executable

# [book:trampoline]
TRAMPOLINE_CODE = bytes.fromhex(
    "488b0424"      # mov rax, [rsp]              argc
    "4883f803"      # cmp rax, 3                  we are called as: trampoline PATH ARGV0 ...
    "722c"          # jb misuse                   (a #!/proc/self/exe script calls us with fewer)
    "488b7c2410"    # mov rdi, [rsp+16]           argv[1]: the path to run
    "488d742418"    # lea rsi, [rsp+24]           &argv[2]: its argv
    "488d54c410"    # lea rdx, [rsp+rax*8+16]     envp, after argv's NULL
    "b83b000000"    # mov eax, 59                 execve
    "0f05"          # syscall                     returns only on failure, with -errno
    "83f8fe"        # cmp eax, -2                 ENOENT?
    "bf7e000000"    # mov edi, 126                cannot invoke
    "7505"          # jne exit
    "bf7f000000"    # mov edi, 127                not found
    "b83c000000"    # exit: mov eax, 60           exit
    "0f05"          # syscall
    "bf7e000000"    # misuse: mov edi, 126
    "ebf2"          # jmp exit
)
# The same on aarch64: argc at [sp], then argv[] and envp[]; the call's
# number goes in x8, its arguments in x0-x2, and svc enters the kernel.
TRAMPOLINE_AARCH64 = a64(
    0xF94003E9,     # ldr  x9, [sp]               argc
    0xF1000D3F,     # cmp  x9, #3                 we are called as: trampoline PATH ARGV0 ...
    0x540001A3,     # b.lo misuse                 (a #!/proc/self/exe script calls us with fewer)
    0xF9400BE0,     # ldr  x0, [sp, #16]          argv[1]: the path to run
    0x910063E1,     # add  x1, sp, #24            &argv[2]: its argv
    0x8B296FE2,     # add  x2, sp, x9, lsl #3     sp + argc*8,
    0x91004042,     # add  x2, x2, #16            + 16: envp, after argv's NULL
    0xD2801BA8,     # mov  x8, #221               execve
    0xD4000001,     # svc  #0                     returns only on failure, with -errno
    0xB100081F,     # cmn  x0, #2                 ENOENT?
    0xD2800FC0,     # mov  x0, #126               cannot invoke
    0x54000041,     # b.ne exit
    0xD2800FE0,     # mov  x0, #127               not found
    0xD2800BA8,     # exit: mov x8, #93           exit
    0xD4000001,     # svc  #0
    0xD2800FC0,     # misuse: mov x0, #126
    0x17FFFFFD,     # b    exit
)
# [/book:trampoline]


# [book:sealed]
def sealed_trampoline() -> int:
    """A descriptor of the trampoline in a memfd sealed against every change.

    Close-on-exec: the kernel opens the program before it closes the
    descriptor, so execve through it works, and the command inherits nothing.
    """
    fd = os.memfd_create("mini-runc-exec", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, executable({"x86_64": TRAMPOLINE_CODE, "aarch64": TRAMPOLINE_AARCH64}))
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    return fd
# [/book:sealed]
