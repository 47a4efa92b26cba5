"""Stage 3, cgroups: docker's resource flags, turned into OCI ``linux.resources``.

Chapter 03 reads this module. The runtime turns ``linux.resources`` into
cgroup v2 files (``runtime/cgroups.py``); this is the engine's half: what
``--memory 64m`` or ``--cpus 0.5`` mean, in the units the spec uses.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from typing import Any

from mini_engine import flags
from mini_engine.base.errors import ContainerError
from mini_engine.stages import CGROUPS

UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
CPU_PERIOD = 100000  # microseconds, the kernel's default cpu.max period


def parse_size(text: str, flag: str) -> int:
    """docker's sizes: 512, 64k, 64m, 1g (binary units, case-insensitive)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmgtp]?)i?b?", text.strip().lower())
    if not match:
        raise ContainerError(f"{flag} {text!r}: not a size (use a number with k, m or g, e.g. 64m)")
    return int(float(match.group(1)) * UNITS[match.group(2)])


@dataclass
class Limits:
    """The resource flags of ``run``, as given (stage 3; the kernel gives cgroups to root only)."""

    memory: str | None = flags.flag(
        "-m", "--memory", since=CGROUPS, root_only=True, metavar="SIZE",
        help="memory limit, e.g. 64m (stage 3)")
    memory_swap: str | None = flags.flag(
        "--memory-swap", since=CGROUPS, root_only=True, metavar="SIZE",
        help="memory plus swap limit; -1: unlimited")
    cpus: str | None = flags.flag(
        "--cpus", since=CGROUPS, root_only=True, metavar="N", help="CPU time, in CPUs (0.5: half of one)")
    cpu_shares: int | None = flags.flag(
        "-c", "--cpu-shares", since=CGROUPS, root_only=True, type=int, metavar="N",
        help="relative CPU weight (1024)")
    pids_limit: int | None = flags.flag(
        "--pids-limit", since=CGROUPS, root_only=True, type=int, metavar="N", help="most processes at once")
    blkio_weight: int | None = flags.flag(
        "--blkio-weight", since=CGROUPS, root_only=True, type=int, metavar="N",
        help="relative IO weight, 10-1000")
    device_read_bps: list[str] = flags.flag(
        "--device-read-bps", since=CGROUPS, root_only=True, action="append", default=[], metavar="DEV:RATE",
        help="read rate limit for a block device, e.g. /dev/vda:1m")
    device_write_bps: list[str] = flags.flag(
        "--device-write-bps", since=CGROUPS, root_only=True, action="append", default=[], metavar="DEV:RATE",
        help="write rate limit for a block device")


# [book:flags-to-resources]
def resources(limits: Limits) -> dict[str, Any]:
    """OCI ``linux.resources`` for docker's flags."""
    out: dict[str, Any] = {}
    if limits.memory is not None:
        memory = parse_size(limits.memory, "--memory")
        if memory < 6 << 20:
            raise ContainerError("--memory: the minimum is 6m (docker's too)")
        # OCI's swap is memory and swap together. Docker's default when only
        # --memory is given: as much swap again as memory.
        if limits.memory_swap is None:
            swap = 2 * memory
        elif limits.memory_swap.strip() == "-1":
            swap = -1
        else:
            swap = parse_size(limits.memory_swap, "--memory-swap")
            if swap < memory:
                raise ContainerError("--memory-swap must be at least --memory (it counts both)")
        out["memory"] = {"limit": memory, "swap": swap}
    elif limits.memory_swap is not None:
        raise ContainerError("--memory-swap needs --memory")
    cpu: dict[str, int] = {}
    if limits.cpus is not None:
        try:
            cpus = float(limits.cpus)
        except ValueError:
            raise ContainerError(f"--cpus {limits.cpus!r}: not a number") from None
        if not 0.01 <= cpus <= (os.cpu_count() or 1):
            raise ContainerError(f"--cpus must be between 0.01 and {os.cpu_count()} (the CPUs here)")
        # cpu.max: this much time per period, summed over all CPUs.
        cpu.update(quota=int(cpus * CPU_PERIOD), period=CPU_PERIOD)
    if limits.cpu_shares is not None:
        cpu["shares"] = max(2, min(limits.cpu_shares, 262144))
    if cpu:
        out["cpu"] = cpu
    if limits.pids_limit is not None:
        out["pids"] = {"limit": limits.pids_limit if limits.pids_limit > 0 else -1}
    block: dict[str, Any] = {}
    if limits.blkio_weight is not None:
        if not 10 <= limits.blkio_weight <= 1000:
            raise ContainerError("--blkio-weight must be between 10 and 1000")
        block["weight"] = limits.blkio_weight
    for key, flag, items in (("throttleReadBpsDevice", "--device-read-bps", limits.device_read_bps),
                             ("throttleWriteBpsDevice", "--device-write-bps", limits.device_write_bps)):
        if items:
            block[key] = [_device_rate(item, flag) for item in items]
    if block:
        out["blockIO"] = block
    return out
# [/book:flags-to-resources]


def _device_rate(item: str, flag: str) -> dict[str, int]:
    """``/dev/vda:1m`` -> the block device's major and minor numbers, and the rate."""
    path, _, rate = item.rpartition(":")
    try:
        st = os.stat(path)
    except OSError:
        raise ContainerError(f"{flag} {item!r}: {path} is not a device here") from None
    if not stat.S_ISBLK(st.st_mode):
        raise ContainerError(f"{flag} {item!r}: {path} is not a block device")
    return {"major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
            "rate": parse_size(rate, flag)}
