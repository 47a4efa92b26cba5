"""The default seccomp profile: every system call except those that reach past the container.

Chapter 06 reads this module. Man pages: seccomp(2), syscalls(2),
capabilities(7). The runtime compiles the profile into BPF
(``mini_engine/runtime/seccomp.py``); this module only writes it, in
Docker's profile format (the OCI ``linux.seccomp`` object).

Docker's default profile (moby's ``profiles/seccomp/default.json``) is an
allowlist of about 350 names. This one is written the other way round, to
be read: ``DENIED`` names each refused system call with its reason and the
capability that unlocks it, and the profile allows every other call the
kernel headers list. The default action is still "fail with EPERM", so a
system call the headers do not know (a newer kernel's) is refused, as with
docker. A refused call fails with EPERM, never kills: programs probe for
features and must see a clean error.

Two departures from docker, for the breakout lab: ``ptrace`` needs
CAP_SYS_PTRACE (docker allows it on kernels since 4.8, where it can no
longer bypass seccomp), and ``userfaultfd`` too.
"""

from __future__ import annotations

import errno
from typing import Any

from mini_engine.base.elf import machine
from mini_engine.base.syscall_table import SCMP_ARCH, syscall_numbers

# [book:denied]
# name -> (the capability that lets it through, or None: never; why it is refused)
DENIED: dict[str, tuple[str | None, str]] = {
    # The kernel keyring is not namespaced: keys of the host, and a long CVE list.
    "add_key": (None, "the keyring is the host's"),
    "keyctl": (None, "the keyring is the host's"),
    "request_key": (None, "the keyring is the host's"),
    # New namespaces, user namespaces above all, open kernel code to
    # unprivileged users that was written for root.
    "unshare": ("CAP_SYS_ADMIN", "makes namespaces"),
    "setns": ("CAP_SYS_ADMIN", "joins namespaces"),
    # The mount table: with CAP_SYS_ADMIN, a mount of the host's disk.
    "mount": ("CAP_SYS_ADMIN", "changes mounts"),
    "umount2": ("CAP_SYS_ADMIN", "changes mounts"),
    "pivot_root": ("CAP_SYS_ADMIN", "changes the root"),
    "fsopen": ("CAP_SYS_ADMIN", "the new mount API"),
    "fsconfig": ("CAP_SYS_ADMIN", "the new mount API"),
    "fsmount": ("CAP_SYS_ADMIN", "the new mount API"),
    "fspick": ("CAP_SYS_ADMIN", "the new mount API"),
    "move_mount": ("CAP_SYS_ADMIN", "the new mount API"),
    "open_tree": ("CAP_SYS_ADMIN", "the new mount API"),
    "open_tree_attr": ("CAP_SYS_ADMIN", "the new mount API"),
    "mount_setattr": ("CAP_SYS_ADMIN", "the new mount API"),
    "swapon": ("CAP_SYS_ADMIN", "the host's swap"),
    "swapoff": ("CAP_SYS_ADMIN", "the host's swap"),
    "quotactl": ("CAP_SYS_ADMIN", "the host's disk quotas"),
    "quotactl_fd": ("CAP_SYS_ADMIN", "the host's disk quotas"),
    "fanotify_init": ("CAP_SYS_ADMIN", "watches every file of a mount"),
    "lookup_dcookie": ("CAP_SYS_ADMIN", "reads kernel profiling state"),
    "bpf": ("CAP_SYS_ADMIN", "loads programs into the kernel"),
    "perf_event_open": ("CAP_SYS_ADMIN", "the host's performance counters, a side channel"),
    # "Shocker" (2014): open_by_handle_at opened host files by inode number.
    "open_by_handle_at": ("CAP_DAC_READ_SEARCH", "opens files by handle, past the root"),
    # Another process's memory.
    "ptrace": ("CAP_SYS_PTRACE", "controls another process"),
    "process_vm_readv": ("CAP_SYS_PTRACE", "reads another process's memory"),
    "process_vm_writev": ("CAP_SYS_PTRACE", "writes another process's memory"),
    "kcmp": ("CAP_SYS_PTRACE", "compares kernel objects of other processes"),
    "userfaultfd": ("CAP_SYS_PTRACE", "makes kernel races easy to win"),
    # The kernel itself.
    "init_module": ("CAP_SYS_MODULE", "loads code into the host's kernel"),
    "finit_module": ("CAP_SYS_MODULE", "loads code into the host's kernel"),
    "delete_module": ("CAP_SYS_MODULE", "unloads the host's kernel modules"),
    "create_module": (None, "obsolete"),
    "get_kernel_syms": (None, "obsolete"),
    "query_module": (None, "obsolete"),
    "kexec_load": ("CAP_SYS_BOOT", "replaces the host's kernel"),
    "kexec_file_load": ("CAP_SYS_BOOT", "replaces the host's kernel"),
    "reboot": ("CAP_SYS_BOOT", "restarts the host"),
    # The clock is the host's: there is no namespace for setting it.
    "settimeofday": ("CAP_SYS_TIME", "sets the host's clock"),
    "clock_settime": ("CAP_SYS_TIME", "sets the host's clock"),
    "clock_adjtime": ("CAP_SYS_TIME", "sets the host's clock"),
    "acct": ("CAP_SYS_PACCT", "switches accounting on for the host"),
    "syslog": ("CAP_SYSLOG", "the host kernel's log"),
    "iopl": ("CAP_SYS_RAWIO", "the machine's I/O ports"),
    "ioperm": ("CAP_SYS_RAWIO", "the machine's I/O ports"),
    "vhangup": ("CAP_SYS_TTY_CONFIG", "hangs up terminals"),
    "mbind": ("CAP_SYS_NICE", "NUMA memory placement of the host"),
    "set_mempolicy": ("CAP_SYS_NICE", "NUMA memory placement of the host"),
    "migrate_pages": ("CAP_SYS_NICE", "moves other processes' memory"),
    "move_pages": ("CAP_SYS_NICE", "moves other processes' memory"),
    # io_uring submits system calls that seccomp never sees.
    "io_uring_setup": (None, "a second system call interface, past the filter"),
    "io_uring_enter": (None, "a second system call interface, past the filter"),
    "io_uring_register": (None, "a second system call interface, past the filter"),
    # Relics only old exploits use.
    "uselib": (None, "obsolete"),
    "_sysctl": (None, "obsolete"),
    "nfsservctl": (None, "obsolete"),
}
# [/book:denied]

# clone's flags that make namespaces (sched.h): refused without CAP_SYS_ADMIN.
NAMESPACE_FLAGS = 0x7E020000  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
# personality(2) values docker allows: the default, and the few that programs set.
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)


# [book:default-profile]
def default_profile(bounding: list[str]) -> dict[str, Any]:
    """The profile for a container whose bounding set is ``bounding``."""
    caps = set(bounding)
    special = {"clone", "clone3", "personality"}
    refused = {name for name, (cap, _) in DENIED.items() if cap is None or cap not in caps}
    allowed = sorted(n for n in syscall_numbers() if n not in refused and n not in special)
    rules: list[dict[str, Any]] = [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]
    if "CAP_SYS_ADMIN" in caps:
        rules.append({"names": ["clone", "clone3"], "action": "SCMP_ACT_ALLOW"})
    else:
        # clone: only without namespace flags. clone3 passes its flags in
        # memory, where BPF cannot look: ENOSYS makes libc fall back to clone.
        rules.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]})
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS})
    for persona in PERSONALITIES:
        rules.append({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": persona, "op": "SCMP_CMP_EQ"}]})
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EPERM,
            "architectures": [SCMP_ARCH[machine()]], "syscalls": rules}
# [/book:default-profile]
