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
*trampoline*: 61 bytes of machine code in a sealed memfd, a file with no
name on any filesystem that no one can ever write again. The trampoline
execs the command. If the command is such a script, /proc/self/exe is the
sealed trampoline, not anything of the host's.
"""

from __future__ import annotations

import fcntl
import os

from mini_engine.base.elf import static_elf

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
# [/book:trampoline]


# [book:sealed]
def sealed_trampoline() -> int:
    """A descriptor of the trampoline in a memfd sealed against every change.

    Close-on-exec: the kernel opens the program before it closes the
    descriptor, so execve through it works, and the command inherits nothing.
    """
    fd = os.memfd_create("mini-runc-exec", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, static_elf(TRAMPOLINE_CODE))
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    return fd
# [/book:sealed]
