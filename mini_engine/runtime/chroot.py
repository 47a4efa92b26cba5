"""Stage 1, chroot: give the process a root filesystem of its own.

Chapter 01 reads this module. Man pages: chroot(2), chdir(2).

chroot(2) changes one thing: where path lookups that start with "/" begin,
for this process and its children. The mounts, the other processes, the
network and the host's /proc are all still there, which is why chroot is
not a jail (the chapter breaks out of it) and why chapter 2 replaces it
with a mount namespace and pivot_root(2).
"""

from __future__ import annotations

import os


# [book:chroot]
def enter_chroot(root: str) -> None:
    """Make ``root`` this process's "/"."""
    os.chroot(root)
    # chroot(2) leaves the working directory where it was, outside the new
    # root; a process that kept it could walk up ("..") to the host's "/".
    os.chdir("/")
# [/book:chroot]
