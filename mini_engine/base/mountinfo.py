"""The mount table as the kernel shows it: /proc/self/mountinfo, parsed once.

Chapters 02 (mounts), 03 (where cgroup2 is), 04 (which filesystem an
overlay's upper directory is on) and 08 (a volume's propagation) read it.
Man pages: proc(5) (/proc/pid/mountinfo), mount_namespaces(7).

One line per mount, in the order they were mounted::

    36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    (1)(2) (3)   (4)    (5)          (6)      (7)     (8) (9)    (10)       (11)

mount id, parent id, major:minor, the root of the mount within its
filesystem, the mount point, the mount's options, zero or more optional
fields (propagation: ``shared:N``, ``master:N``...), a lone ``-``, the
filesystem type, the source and the superblock's options. Fields are
separated by spaces, so the kernel writes a space, tab, newline or
backslash inside a path as an octal escape (``\\040`` for a space): a path
must be decoded before it is compared with anything.
"""

from __future__ import annotations

import errno
import os


def unescape(field: str) -> str:
    """A path as the kernel wrote it into mountinfo, decoded (``\\040`` is a space).

    The kernel escapes the backslash itself too (``\\134``), so every
    backslash starts three octal digits. (No ``re`` here: the runtime's
    ``start`` and ``delete`` import nothing they can do without.)
    """
    first, *rest = field.split("\\")
    return first + "".join(chr(int(part[:3], 8)) + part[3:] for part in rest)


class Mount:
    """One line of mountinfo, its paths decoded."""

    __slots__ = (
        "fstype",
        "mount_id",
        "mount_point",
        "optional",
        "options",
        "parent_id",
        "root",
        "source",
        "super_options",
    )

    def __init__(self, line: str) -> None:
        fields = line.split()
        dash = fields.index("-", 6)  # the optional fields end at the lone "-"
        self.mount_id = int(fields[0])
        self.parent_id = int(fields[1])
        self.root = unescape(fields[3])
        self.mount_point = unescape(fields[4])
        self.options = fields[5].split(",")
        self.optional = fields[6:dash]
        self.fstype = fields[dash + 1]
        self.source = unescape(fields[dash + 2]) if len(fields) > dash + 2 else ""
        self.super_options = fields[dash + 3].split(",") if len(fields) > dash + 3 else []

    def __repr__(self) -> str:
        return f"Mount({self.mount_point!r}, {self.fstype!r})"

    def holds(self, path: str) -> bool:
        """Is ``path`` (absolute, without symlinks) this mount point or below it?"""
        return path == self.mount_point or path.startswith(self.mount_point.rstrip("/") + "/")


def mounts(table: str = "/proc/self/mountinfo") -> list[Mount]:
    """Every mount of this process's mount namespace, in the order they were mounted."""
    with open(table) as f:
        return [Mount(line) for line in f]


def mount_of(path: str, table: str = "/proc/self/mountinfo") -> Mount:
    """The mount ``path`` lies on: the longest mount point that holds it, and of
    several mounts on that one point, the last mounted, which is on top."""
    path = os.path.realpath(path)
    best = None
    for mount in mounts(table):
        if mount.holds(path) and (best is None or len(mount.mount_point) >= len(best.mount_point)):
            best = mount
    if best is None:  # a path outside this process's root: "/" holds everything else
        raise OSError(errno.ENOENT, "no mount holds it", path)
    return best
