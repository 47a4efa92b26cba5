"""``events``: a container's resource use and OOM kills, in runc's words.

Chapter oci-runtime reads this module. Kernel doc: Documentation/admin-guide/cgroup-v2.rst
("cpu.stat", "memory.stat", "memory.events", "io.stat", "pids.current").
Man pages: runc-events(8), poll(2).

``runc events --stats ID`` prints one JSON object, ``{"type": "stats", "id":
ID, "data": {...}}``; without ``--stats`` it prints one such line every
``--interval``, a ``{"type": "oom", "id": ID}`` line whenever the kernel's
OOM killer kills in the container, and ends when the container's cgroup
empties. Monitoring tools and engines (containerd's shim, for one) read
that shape, so the numbers come in runc's names and units: cgroup v1's
(nanoseconds of CPU, "usage" and "limit" of memory), translated from the
cgroup v2 files as runc translates them.
"""

from __future__ import annotations

import os
import select
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: see mini_engine/runtime/__init__.py
    from collections.abc import Callable
    from typing import Any

# "max" in a cgroup file: no limit. runc reads it as the largest uint64.
NO_LIMIT = 2**64 - 1


def _read(path: str, name: str) -> str | None:
    try:
        with open(os.path.join(path, name)) as f:
            return f.read().strip()
    except OSError:  # the controller is not enabled here, or the file is newer than the kernel
        return None


def _number(text: str | None) -> int:
    if text is None:
        return 0
    return NO_LIMIT if text == "max" else int(text)


def _keyed(text: str | None) -> dict[str, int]:
    """A flat keyed file (cpu.stat, memory.stat, memory.events) as a dict."""
    return {key: int(value) for key, value in (line.split() for line in (text or "").splitlines())}


# [book:stats]
def stats(path: str) -> dict[str, Any]:
    """The cgroup at ``path``'s meters, in runc's ``types.Stats`` shape."""
    # CPU: cpu.stat is there even without the cpu controller (its first
    # three keys); runc counts nanoseconds, the kernel microseconds.
    cpu = _keyed(_read(path, "cpu.stat"))
    usage = {"kernel": cpu.get("system_usec", 0) * 1000, "user": cpu.get("user_usec", 0) * 1000}
    if cpu.get("usage_usec"):
        usage["total"] = cpu["usage_usec"] * 1000
    throttling = {name: value for name, value in (
        ("periods", cpu.get("nr_periods", 0)), ("throttledPeriods", cpu.get("nr_throttled", 0)),
        ("throttledTime", cpu.get("throttled_usec", 0) * 1000)) if value}
    # Memory: "usage" is memory.current under memory.max; v1 counted swap
    # with memory ("memsw"), so runc adds memory to swap's numbers.
    memory: dict[str, Any] = {name: {"limit": 0, "failcnt": 0}
                              for name in ("usage", "swap", "kernel", "kernelTCP")}
    raw = _keyed(_read(path, "memory.stat"))
    if raw:
        current, limit = _number(_read(path, "memory.current")), _number(_read(path, "memory.max"))
        memory["usage"] = _entry(limit, current, _number(_read(path, "memory.peak")))
        swap_limit = _number(_read(path, "memory.swap.max"))
        memory["swap"] = _entry(swap_limit if swap_limit == NO_LIMIT else swap_limit + limit,
                                _number(_read(path, "memory.swap.current")) + current, 0)
        memory["raw"] = raw
        if raw.get("file"):
            memory["cache"] = raw["file"]
    # Processes: pids.current, or without the pids controller, cgroup.procs
    # counted. No limit is 0 in runc's output.
    pids_current = _read(path, "pids.current")
    if pids_current is None:
        pids_current = str(len((_read(path, "cgroup.procs") or "").split()))
    pids = {"current": int(pids_current), "limit": _number(_read(path, "pids.max"))}
    pids = {key: value for key, value in pids.items() if value and value != NO_LIMIT}
    # Block I/O: io.stat's bytes and operations, per device, as v1's tables.
    blkio: dict[str, list[dict[str, Any]]] = {}
    for line in (_read(path, "io.stat") or "").splitlines():
        device, *pairs = line.split()
        major, minor = (int(n) for n in device.split(":"))
        for key, value in (pair.split("=") for pair in pairs):
            table = {"rbytes": "ioServiceBytesRecursive", "wbytes": "ioServiceBytesRecursive",
                     "rios": "ioServicedRecursive", "wios": "ioServicedRecursive"}.get(key)
            if table:
                entry = {"major": major, "minor": minor, "op": "Read" if key[0] == "r" else "Write",
                         "value": int(value)}
                blkio.setdefault(table, []).append({k: v for k, v in entry.items() if v})
    return {
        "cpu": {"usage": usage, "throttling": throttling},
        # cgroup v1's cpuset meters: v2 has none of them, and runc prints zeros.
        "cpuset": dict.fromkeys(("cpu_exclusive", "mem_hardwall", "mem_exclusive", "memory_migrate",
                                 "memory_spread_page", "memory_spread_slab", "memory_pressure",
                                 "sched_load_balance", "sched_relax_domain_level"), 0),
        "memory": memory,
        "pids": pids,
        "blkio": blkio,
        "hugetlb": _hugetlb(path),
        "intel_rdt": {},
        "network_interfaces": None,  # runc reports them only for the veth it made itself
    }
# [/book:stats]


def _entry(limit: int, usage: int, peak: int) -> dict[str, int]:
    """One of runc's MemoryEntry: limit and failcnt always, usage and max if not 0."""
    entry = {"limit": limit}
    if usage:
        entry["usage"] = usage
    if peak:
        entry["max"] = peak
    return {**entry, "failcnt": 0}


def _hugetlb(path: str) -> dict[str, dict[str, int]]:
    """Huge pages per size: hugetlb.2MB.current, and how often the limit refused (events' max)."""
    sizes = {}
    for name in sorted(os.listdir(path)):
        parts = name.split(".")
        if len(parts) == 3 and parts[0] == "hugetlb" and parts[2] == "current":
            usage = _number(_read(path, name))
            failed = _keyed(_read(path, f"hugetlb.{parts[1]}.events")).get("max", 0)
            sizes[parts[1]] = {**({"usage": usage} if usage else {}), "failcnt": failed}
    return sizes


# [book:watch]
def watch(container_id: str, path: str, interval: float, emit: Callable[[dict[str, Any]], None]) -> None:
    """Emit a stats event every ``interval`` seconds and an oom event per OOM kill,
    until the cgroup at ``path`` holds no process."""
    files = {name: open(os.path.join(path, name))  # closed below
             for name in ("cgroup.events", "memory.events") if os.path.exists(os.path.join(path, name))}
    try:
        # The kernel wakes poll(2) with POLLPRI whenever one of these files
        # changes (a counter of memory.events, "populated" of cgroup.events):
        # no reading them in a loop to notice.
        poller = select.poll()
        for f in files.values():
            poller.register(f, select.POLLPRI | select.POLLERR)
        seen = {name: _keyed(_reread(f)) for name, f in files.items()}
        kills = seen.get("memory.events", {}).get("oom_kill", 0)
        due = time.monotonic() + interval
        while seen["cgroup.events"].get("populated"):
            wait = max(0.0, due - time.monotonic())
            try:
                for fd, _ in poller.poll(wait * 1000):
                    name = next(name for name, f in files.items() if f.fileno() == fd)
                    seen[name] = _keyed(_reread(files[name]))
            except OSError:
                return  # the cgroup was removed (delete): nothing more to watch
            now_kills = seen.get("memory.events", {}).get("oom_kill", 0)
            for _ in range(now_kills - kills):
                emit({"type": "oom", "id": container_id})
            kills = now_kills
            if time.monotonic() >= due and seen["cgroup.events"].get("populated"):
                try:
                    emit({"type": "stats", "id": container_id, "data": stats(path)})
                except OSError:
                    return  # removed between two reads
                due += interval
    finally:
        for f in files.values():
            f.close()
# [/book:watch]


def _reread(f: Any) -> str:
    f.seek(0)
    return str(f.read())
