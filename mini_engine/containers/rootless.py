"""Rootless: the engine run by an ordinary user, root only in a user namespace of its own.

Chapter 06 reads this module. Man pages: user_namespaces(7), newuidmap(1),
subuid(5).

A user namespace gives its creator every capability over the namespaces it
owns, and none over the host. So an unprivileged ``mini-engine`` first
makes one (and a mount namespace in it), maps the user to root there, and
then does what root does: mount overlays (allowed in a user namespace
since Linux 5.11), make the container's namespaces, pivot_root. The host
sees only the user's own uid.

What the kernel keeps from it: cgroups (unless systemd delegates a
subtree, which this engine does not ask for), so no resource limits and no
device filter; device nodes (the runtime bind-mounts the host's); and
other uids: with a single mapped uid, files of the image owned by anyone
but root are given to root. With a range in /etc/subuid and newuidmap(1)
installed, the whole range is mapped and owners are kept.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from mini_engine.base import syscalls
from mini_engine.base.errors import ContainerError
from mini_engine.base.identity import find_subordinate


# [book:rootless-enter]
def enter() -> None:
    """Become root in a new user namespace (and a new mount namespace in it)."""
    uid, gid = os.getuid(), os.getgid()
    owners = (_user_name(uid), str(uid))
    uids, gids = find_subordinate(owners, "/etc/subuid"), find_subordinate(owners, "/etc/subgid")
    newuidmap, newgidmap = shutil.which("newuidmap"), shutil.which("newgidmap")
    if uids and gids and newuidmap and newgidmap:
        _enter_with_helpers(uid, gid, (uids, gids), (newuidmap, newgidmap))
    else:
        try:
            syscalls.unshare(syscalls.CLONE_NEWUSER | syscalls.CLONE_NEWNS)
        except OSError as exc:
            raise ContainerError(f"rootless: cannot make a user namespace ({exc.strerror}); "
                                 "see /proc/sys/user/max_user_namespaces") from None
        # One id each way. setgroups must be denied before an unprivileged
        # process may write its own gid_map (user_namespaces(7)).
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
    # Our mounts stay in our namespace.
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
# [/book:rootless-enter]


def _enter_with_helpers(uid: int, gid: int, ranges: tuple[tuple[int, int], ...],
                        helpers: tuple[str, str]) -> None:
    """newuidmap and newgidmap are setuid: they may map a user's subordinate ids
    into a namespace, which the user alone may not."""
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    child = os.fork()
    if child == 0:  # waits until the parent has unshared, then maps it from outside
        os.close(write_fd)
        os.read(read_fd, 1)
        code = 0
        for helper, own, (start, count) in ((helpers[0], uid, ranges[0]), (helpers[1], gid, ranges[1])):
            code |= subprocess.run([helper, str(parent), "0", str(own), "1", "1", str(start), str(count)],
                                   check=False).returncode
        os._exit(code)
    os.close(read_fd)
    try:
        syscalls.unshare(syscalls.CLONE_NEWUSER | syscalls.CLONE_NEWNS)
    finally:
        os.write(write_fd, b"x")
        os.close(write_fd)
    _, status = os.waitpid(child, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise ContainerError("rootless: newuidmap/newgidmap failed to map the subordinate ids")


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
