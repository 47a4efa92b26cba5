"""What /proc says of a process: is it still the one we knew?

A pid alone names a process only while it lives: the kernel hands the
number to the next process once this one is reaped. A pid and the start
time in /proc/PID/stat, together, name one process for the machine's
uptime. Man pages: proc(5) (/proc/pid/stat).
"""

from __future__ import annotations


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
