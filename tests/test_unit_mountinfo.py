"""The one parser of /proc/self/mountinfo (mini_engine/base/mountinfo.py).

The kernel separates mountinfo's fields with spaces, so it writes a space
in a path as ``\\040``: every path must be decoded before it is compared.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mini_engine.base import mountinfo
from mini_engine.containers import overlay

# proc(5)'s example line, with a space in the mount point and two optional fields.
LINE = r"36 35 98:0 /mnt1 /mnt/a\040b\011c rw,noatime master:1 shared:7 - ext3 /dev/ro\134ot rw,errors=continue"


@pytest.mark.unit
def test_a_line_is_split_into_its_fields_and_its_paths_decoded() -> None:
    mount = mountinfo.Mount(LINE)
    assert (mount.mount_id, mount.parent_id, mount.root, mount.mount_point) == (36, 35, "/mnt1", "/mnt/a b\tc")
    assert (mount.options, mount.optional) == (["rw", "noatime"], ["master:1", "shared:7"])
    assert (mount.fstype, mount.source) == ("ext3", "/dev/ro\\ot")
    assert mount.super_options == ["rw", "errors=continue"]


@pytest.mark.unit
def test_a_line_without_optional_fields() -> None:
    mount = mountinfo.Mount("22 1 0:21 / /proc rw,nosuid - proc proc rw")
    assert (mount.mount_point, mount.optional, mount.fstype, mount.source) == ("/proc", [], "proc", "proc")


@pytest.mark.unit
def test_the_longest_mount_point_holds_a_path_and_the_last_mounted_is_on_top(tmp_path: Path) -> None:
    table = tmp_path / "mountinfo"
    table.write_text("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
                     "2 1 0:5 / /srv\\040data rw shared:3 - tmpfs tmpfs rw\n"
                     "3 1 0:6 / /srv\\040data rw - ramfs none rw\n"
                     "4 1 0:7 / /srv rw - xfs /dev/sdb rw\n")
    assert mountinfo.mount_of("/srv data/www/index.html", str(table)).fstype == "ramfs"
    assert mountinfo.mount_of("/srv data", str(table)).mount_id == 3
    assert mountinfo.mount_of("/srv/www", str(table)).fstype == "xfs"
    assert mountinfo.mount_of("/srv datum", str(table)).fstype == "ext4"  # a prefix of a name is no parent


@pytest.mark.root
def test_the_filesystem_of_a_path_with_a_space_is_the_one_mounted_there(tmp_path: Path) -> None:
    """overlay.filesystem_of names the filesystem an overlay's upper dir is on (chapter 4's
    error message); it read mountinfo's \\040 as four characters, and a mount point
    with a space never matched: it named the filesystem below instead."""
    point = tmp_path / "engine root"
    point.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "none", str(point)], check=True)
    try:
        (point / "upper").mkdir()
        assert overlay.filesystem_of(str(point / "upper")) == "ramfs"
        assert mountinfo.mount_of(str(point)).mount_point == str(point)
    finally:
        subprocess.run(["umount", str(point)], check=True)
    assert os.listdir(point) == []
