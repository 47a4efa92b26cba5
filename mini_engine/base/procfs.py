"""What /proc says of a process: is it still the one we knew?

A pid alone names a process only while it lives: the kernel hands the
number to the next process once this one is reaped. A pid and the start
time in /proc/PID/stat, together, name one process for the machine's
uptime. Man pages: proc(5) (/proc/pid/stat).
"""

from __future__ import annotations

import os


def start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (field 22 of /proc/PID/stat).

    None if there is no such process, or only its zombie: it has ended and
    waits for its parent to reap it (a parent that may take its time). runc
    counts a zombie as stopped too.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def same_process(pid: int | None, started: int | None) -> bool:
    """Is ``pid`` still the process that started at ``started`` (ticks since boot)?

    True only when both are known and the kernel shows that pid alive with
    that very start time. Without a recorded start time the answer is no,
    never "probably": the pid alone may name a stranger by now, and every
    caller acts on a yes, by keeping a lease or an address, by refusing a
    second ``start``, by waiting, or by signalling. A start time is missing
    only when the process had already ended (or was a zombie) when it was
    recorded, so no is also the truth. runc judges its pid file the same
    way, by pid and start time together.
    """
    if not pid or started is None:
        return False
    return start_time(pid) == started


def anyone_in(kind: str, namespace: str) -> bool:
    """Does any process live in the namespace of ``kind`` ("net", "ipc"...) that the
    file ``namespace`` names (a /proc/PID/ns/ link, or a bind mount of one, as
    /run/netns keeps them)?

    A namespace is the device and inode of its nsfs file: the same for every
    process in it, however it is reached. A namespace kept only by a bind
    mount has no process: its container has ended.
    """
    try:
        wanted = os.stat(namespace)
    except OSError:
        return False
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            seen = os.stat(f"/proc/{pid}/ns/{kind}")
        except OSError:
            continue  # ended while we looked, or a kernel thread's
        if (seen.st_dev, seen.st_ino) == (wanted.st_dev, wanted.st_ino):
            return True
    return False


def command_line(pid: int) -> str | None:
    """A process's argv, spaces between (as ps prints it); None once it has exited."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
