"""Stage 3, cgroups: how much the process may use, and how much it did.

Chapter 03 reads this module. Kernel doc: Documentation/admin-guide/cgroup-v2.rst.
Man pages: cgroups(7), cgroup_namespaces(7). Spec: config-linux.md
("Control groups", "Unified").

cgroup v2 is one tree, mounted once (cgroup2). A directory is a cgroup; its
files are the knobs (memory.max, cpu.max, pids.max...) and the meters
(memory.current, cpu.stat...). Two rules shape everything here:

- *top-down*: a controller works in a cgroup only if its parent lists it
  in ``cgroup.subtree_control``, and so on up to the root;
- *no internal processes*: a cgroup that hands controllers down to
  children may hold no process itself, so processes live only in leaves.

This runtime uses cgroup v2 only. A controller the host keeps on cgroup v1
cannot be enabled on v2 at the same time; a limit on it is refused, never
silently dropped.
"""

from __future__ import annotations

import errno
import math
import os
import select

from mini_engine.base import mountinfo
from mini_engine.base.errors import ContainerError

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: see mini_engine/runtime/__init__.py
    from typing import Any

# Which controller owns a file: everything before the first dot.
CONTROLLER_OF = {"memory": "memory", "cpu": "cpu", "pids": "pids", "io": "io"}

VM_HINT = "run in the lab VM (vagrant up) or the test VM (make vm-test)"


def mount_point() -> str:
    """Where cgroup2 is mounted: /sys/fs/cgroup if unified, .../unified if hybrid."""
    for mount in mountinfo.mounts():
        if mount.fstype == "cgroup2":
            return mount.mount_point
    raise ContainerError(f"no cgroup2 filesystem is mounted on this host; {VM_HINT}")


def path_of(config: dict[str, Any]) -> str | None:
    """The host directory of config.json's ``linux.cgroupsPath``, or None."""
    relative = config.get("linux", {}).get("cgroupsPath")
    if not relative:
        return None
    return os.path.join(mount_point(), relative.lstrip("/"))


# [book:resources-to-files]
def files_for(resources: dict[str, Any]) -> dict[str, str]:
    """Turn OCI ``linux.resources`` into cgroup v2 file writes, as runc and crun do."""
    files: dict[str, str] = {}
    memory = resources.get("memory", {})
    if memory.get("swap") is not None and memory.get("limit") is None:
        raise ContainerError("config.json: linux.resources.memory.swap needs memory.limit "
                             "(OCI's swap counts memory and swap together)")
    if memory.get("limit") is not None:
        files["memory.max"] = _limit(memory["limit"])
        if memory.get("swap") is not None:
            swap = swap_alone(memory)
            files["memory.swap.max"] = "max" if swap is None else str(swap)
    if memory.get("reservation") is not None:  # a soft floor, reclaimed last: v2's memory.low
        files["memory.low"] = "0" if memory["reservation"] < 0 else str(memory["reservation"])
    cpu = resources.get("cpu", {})
    if cpu.get("quota") is not None or cpu.get("period") is not None:
        quota = cpu.get("quota")
        files["cpu.max"] = f"{_limit(quota) if quota is not None else 'max'} {cpu.get('period') or 100000}"
    if cpu.get("shares"):
        files["cpu.weight"] = str(shares_to_weight(cpu["shares"]))
    pids = resources.get("pids", {})
    if pids.get("limit") is not None:
        files["pids.max"] = _limit(pids["limit"])
    block = resources.get("blockIO", {})
    if block.get("weight"):
        files["io.weight"] = f"default {blkio_to_io_weight(block['weight'])}"
    io_max = []
    for key, name in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                      ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
        for dev in block.get(key, []):
            io_max.append(f"{dev['major']}:{dev['minor']} {name}={dev['rate']}")
    if io_max:
        files["io.max"] = "\n".join(io_max)
    # "unified": raw cgroup v2 files, for anything the keys above do not name.
    files.update(resources.get("unified", {}))
    return files
# [/book:resources-to-files]


def swap_alone(memory: dict[str, Any]) -> int | None:
    """OCI's swap is memory+swap (cgroup v1's memsw); v2 counts swap alone. None: no limit."""
    swap: int = memory["swap"]
    return None if swap < 0 else max(swap - memory["limit"], 0)


def blkio_to_io_weight(weight: int) -> int:
    """v1 blkio weights run 10..1000; v2 io weights 1..10000."""
    return 1 + (weight - 10) * 9999 // 990


def shares_to_weight(shares: int) -> int:
    """v1 cpu.shares (2..262144, default 1024) to v2 cpu.weight (1..10000, default 100).

    A straight line between the two ranges sends docker's default 1024 to
    weight 39, so a container with default shares got less than a process
    outside any container. runc and crun now use this curve instead, which
    maps 2 -> 1, 1024 -> 100 and 262144 -> 10000.
    """
    shares = max(2, min(shares, 262144))
    log = math.log2(shares)
    return min(10000, math.ceil(10 ** ((log * log + 125 * log) / 612 - 7 / 34) - 1e-9))


def _limit(value: int) -> str:
    return "max" if value is None or value < 0 else str(value)


def controllers_needed(files: dict[str, str]) -> set[str]:
    return {name.split(".")[0] for name in files if name.split(".")[0] in CONTROLLER_OF}


def available(mount: str) -> set[str]:
    """The controllers the cgroup2 root can hand out (cgroup.controllers)."""
    with open(os.path.join(mount, "cgroup.controllers")) as f:
        return set(f.read().split())


def on_v2(*controllers: str) -> bool:
    """Are all these controllers on cgroup v2 here? On a hybrid host some are
    held by v1 (this project's CI machine keeps memory, cpu and pids there)."""
    return set(controllers) <= available(mount_point())


def refuse_missing(needed: set[str], mount: str) -> None:
    """One clear line for the first controller this host cannot give us."""
    missing = sorted(needed - available(mount))
    if missing:
        name = missing[0]
        raise ContainerError(
            f'cgroup controller "{name}" is not available here (this host keeps it on '
            f"cgroup v1, or has it disabled); {VM_HINT}"
        )


# [book:create-cgroup]
def create(path: str, resources: dict[str, Any]) -> None:
    """Make the container's cgroup at ``path`` and write its limits."""
    mount = mount_point()
    files = files_for(resources)
    needed = controllers_needed(files)
    refuse_missing(needed, mount)
    # Accounting too: memory.current, pids.current and cpu.stat exist only
    # where the controller is enabled, limit or not.
    needed |= {"memory", "pids", "cpu", "io"} & available(mount)
    # Top-down: every ancestor below the root must pass the controllers on.
    # Those ancestors hold no process themselves (the no-internal-process
    # rule), which is why containers get leaves of their own.
    parent = os.path.dirname(path)
    relative = os.path.relpath(parent, mount)
    current = mount
    for part in ([] if relative == "." else relative.split("/")):
        enable(current, needed)
        current = os.path.join(current, part)
        os.makedirs(current, exist_ok=True)
    enable(current, needed)
    os.mkdir(path)
    try:
        for name, value in files.items():
            with open(os.path.join(path, name), "w") as f:
                f.write(value)
    except OSError as exc:
        os.rmdir(path)
        raise ContainerError(f"cgroup {path}: writing {name}={value!r}: {exc.strerror}") from None

# [/book:create-cgroup]


def enable(cgroup: str, controllers: set[str]) -> None:
    """Add ``controllers`` to ``cgroup``'s subtree_control (what is there stays)."""
    with open(os.path.join(cgroup, "cgroup.subtree_control")) as f:
        missing = controllers - set(f.read().split())
    if missing:
        with open(os.path.join(cgroup, "cgroup.subtree_control"), "w") as f:
            f.write(" ".join(f"+{c}" for c in sorted(missing)))


def join(path: str, pid: int = 0) -> None:
    """Move process ``pid`` (0: the caller) into the cgroup."""
    with open(os.path.join(path, "cgroup.procs"), "w") as f:
        f.write(str(pid))


def read_events(path: str, name: str = "cgroup.events") -> dict[str, int]:
    """A flat keyed file such as cgroup.events or memory.events, as a dict."""
    try:
        with open(os.path.join(path, name)) as f:
            return {k: int(v) for k, v in (line.split() for line in f)}
    except FileNotFoundError:
        return {}


def wait_for(path: str, key: str, value: int, timeout_ms: int = 10000) -> bool:
    """Wait until cgroup.events shows ``key value``; True if it did in time.

    The kernel signals every change of cgroup.events to poll() as POLLPRI,
    so this sleeps in the kernel instead of looping.
    """
    with open(os.path.join(path, "cgroup.events")) as f:
        poller = select.poll()
        poller.register(f, select.POLLPRI | select.POLLERR)
        while True:
            f.seek(0)
            events = {k: int(v) for k, v in (line.split() for line in f)}
            if events.get(key) == value:
                return True
            if not poller.poll(timeout_ms):
                return False


# [book:kill-and-remove]
def destroy(path: str) -> None:
    """Kill everything in the cgroup, wait until it is empty, remove it."""
    if not os.path.isdir(path):
        return
    kill_all(path)
    # The container may have made cgroups of its own below (systemd does):
    # a cgroup with children cannot be removed, so the deepest go first.
    for directory, _, _ in os.walk(path, topdown=False):
        try:
            os.rmdir(directory)  # a cgroup is removed with rmdir, files and all
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise


def kill_all(path: str) -> None:
    """SIGKILL every process in the cgroup's subtree; return once it is empty."""
    try:
        if read_events(path).get("populated"):
            # cgroup.kill (Linux 5.14) SIGKILLs every process in the subtree at
            # once, even ones forking as we speak.
            with open(os.path.join(path, "cgroup.kill"), "w") as f:
                f.write("1")
            if not wait_for(path, "populated", 0):
                raise ContainerError(f"cgroup {path} still holds processes 10 s after cgroup.kill")
    except OSError as exc:
        # Removed as it emptied (systemd removes its scopes' cgroups): empty.
        if exc.errno not in (errno.ENOENT, errno.ENODEV):
            raise
# [/book:kill-and-remove]


# [book:update]
def update(path: str, resources: dict[str, Any]) -> None:
    """New limits for a running container's cgroup (``runc update``): the same
    files as at create, written in place; the kernel applies them at once (a
    memory.max below what is in use reclaims first, then OOM-kills)."""
    files = files_for(resources)
    refuse_missing(controllers_needed(files), mount_point())
    for name, value in files.items():
        try:
            with open(os.path.join(path, name), "w") as f:
                f.write(value)
        except OSError as exc:
            raise ContainerError(f"cgroup {path}: writing {name}={value!r}: {exc.strerror}") from None
# [/book:update]


def freeze(path: str, frozen: bool) -> None:
    """pause/unpause: cgroup.freeze stops every process in place, then lets them go."""
    with open(os.path.join(path, "cgroup.freeze"), "w") as f:
        f.write("1" if frozen else "0")
    wait_for(path, "frozen", 1 if frozen else 0)


def oom_killed(path: str) -> bool:
    """True if the kernel's OOM killer killed a process of this cgroup."""
    return read_events(path, "memory.events").get("oom_kill", 0) > 0


def stats(path: str) -> dict[str, Any]:
    """What the container used, read from the cgroup's meters."""
    def read(name: str) -> str | None:
        try:
            with open(os.path.join(path, name)) as f:
                return f.read().strip()
        except OSError:
            return None

    cpu = dict(line.split() for line in (read("cpu.stat") or "").splitlines())
    io: dict[str, dict[str, int]] = {}
    for line in (read("io.stat") or "").splitlines():
        device, *pairs = line.split()
        io[device] = {k: int(v) for k, v in (p.split("=") for p in pairs)}
    memory_current, pids_current = read("memory.current"), read("pids.current")
    return {
        "memory_current": int(memory_current) if memory_current else None,
        "memory_max": read("memory.max"),
        "cpu_usage_usec": int(cpu["usage_usec"]) if "usage_usec" in cpu else None,
        "cpu_nr_throttled": int(cpu["nr_throttled"]) if "nr_throttled" in cpu else None,
        "cpu_throttled_usec": int(cpu["throttled_usec"]) if "throttled_usec" in cpu else None,
        "pids_current": int(pids_current) if pids_current else None,
        "pids_max": read("pids.max"),
        "io": io,
        "oom_kills": read_events(path, "memory.events").get("oom_kill"),
    }
