"""Who this process is to the kernel: root of the host, or root only in a user namespace.

Chapters 02 and 06 read this module. Man pages: user_namespaces(7),
subuid(5), subgid(5).
"""

from __future__ import annotations

import os

# Container root maps here when /etc/subuid has no range for root.
DEFAULT_SUBID = (100000, 65536)


def in_user_namespace() -> bool:
    """Are we in a user namespace other than the host's (rootless, or a nested engine)?
    There, mknod of a device fails: the runtime bind-mounts the host's nodes."""
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def rootless() -> bool:
    """Is this process an unprivileged user, or root only inside a user namespace?

    The engine then runs rootless (chapter 06): no cgroups, no device nodes,
    its own directories.
    """
    return os.geteuid() != 0 or in_user_namespace()


def subordinate_range(user: str, path: str) -> tuple[int, int]:
    """The first ``user:start:count`` range of subuid(5) or subgid(5), or the default one."""
    return find_subordinate((user,), path) or DEFAULT_SUBID


def find_subordinate(users: tuple[str, ...], path: str) -> tuple[int, int] | None:
    """The first range of subuid(5) or subgid(5) whose owner is one of ``users`` (a name or a uid)."""
    try:
        with open(path) as f:
            for line in f:
                name, _, rest = line.strip().partition(":")
                if name in users and rest.count(":") == 1:
                    start, count = rest.split(":")
                    return int(start), int(count)
    except (OSError, ValueError):
        pass
    return None
