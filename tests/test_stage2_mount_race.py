"""A symlink swapped in between the runtime's resolving a mount point and mounting on it.

runc's CVE-2021-30465: a container sharing the rootfs races the runtime,
and a mount by path name follows the link it swapped in, out of the
rootfs. The race is won here every time: the swap happens in the one call
mount_entry makes between the two steps (os.path.isdir of the source).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mini_engine.base import syscalls
from mini_engine.base.errors import ContainerError
from mini_engine.runtime import mounts

pytestmark = [pytest.mark.stage(2), pytest.mark.root]


def test_a_symlink_swapped_in_before_the_mount_does_not_lead_it_out_of_the_rootfs(tmp_path: Path) -> None:
    root, outside, source = tmp_path / "rootfs", tmp_path / "outside", tmp_path / "source"
    (root / "data").mkdir(parents=True)
    outside.mkdir()
    source.mkdir()
    (source / "marker").write_text("the bind mount's\n")
    entry = {"destination": "/data", "type": "bind", "source": str(source), "options": ["rbind"]}
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # a mount namespace of its own, which goes with it
        outcome = "crashed"
        try:
            os.close(read_end)
            syscalls.unshare(syscalls.CLONE_NEWNS)
            syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
            isdir = os.path.isdir

            def swap_then_isdir(path: str) -> bool:
                if path == str(source):
                    (root / "data").rmdir()
                    (root / "data").symlink_to("../outside")
                return isdir(path)

            os.path.isdir = swap_then_isdir  # type: ignore[assignment]  # in this child only
            try:
                mounts.mount_entry(str(root), str(tmp_path), entry)
                outcome = "mounted"
            except ContainerError as exc:
                outcome = str(exc)
            outcome += f" | outside: {sorted(os.listdir(outside))}"
        finally:
            os.write(write_end, outcome.encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        outcome = f.read()
    os.waitpid(pid, 0)
    assert outcome == (f"mount on /data: refused: it resolves to {root}/outside now "
                       "(a symlink swapped in since it was checked?) | outside: []")
