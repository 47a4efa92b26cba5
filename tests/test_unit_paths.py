"""Paths inside a rootfs, against a hostile image (mini_engine/base/rootpath.py).

An image's tree is a stranger's: absolute symlinks, ".." past the top,
loops, and, while the runtime works, a symlink swapped in for a directory.
resolve_in_root answers with a string (for the checks), open_in_root with a
descriptor (for mount(2)): the kernel's openat2(RESOLVE_IN_ROOT) or, on an
older kernel, walk_in_root. Each must stay inside the root, and the two
must agree. No root needed: these are symlinks and directories in tmp_path.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mini_engine.base import rootpath
from mini_engine.base.errors import ContainerError
from mini_engine.runtime import mounts

pytestmark = [pytest.mark.stage(2), pytest.mark.unit]


def _walk(root: str, path: str) -> int:
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        return rootpath.walk_in_root(fd, path)
    finally:
        os.close(fd)


# Both ways to a descriptor: the kernel's walk, and the one by hand for kernels before 5.6.
OPENERS = {"openat2": rootpath.open_in_root, "walk": _walk}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A rootfs whose links all try to leave it, beside a host directory they aim at."""
    host = tmp_path / "host"
    (host / "etc").mkdir(parents=True)
    (host / "etc" / "shadow").write_text("the host's\n")
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "shadow").write_text("the image's\n")
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "proc").symlink_to("/etc")                          # absolute: the image's /etc
    (root / "up").symlink_to("../../../../../../etc")           # .. beyond the root stops there
    (root / "usr" / "lib" / "up").symlink_to("../../..")        # relative, from inside
    (root / "hostpath").symlink_to(host / "etc")                # the host's absolute path: inside, not there
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("/loop1")
    (root / "magic").symlink_to("/proc/self/root/etc")          # through our /proc/self/root link
    (root / "dangling").symlink_to("/nowhere/below")
    return root


def _where(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


@pytest.mark.parametrize(("path", "inside"), [
    ("/etc/shadow", "etc/shadow"),
    ("/proc/shadow", "etc/shadow"),
    ("/up/shadow", "etc/shadow"),
    ("/../../etc/../../etc/shadow", "etc/shadow"),
    ("/usr/lib/up/etc/shadow", "etc/shadow"),
    ("usr/lib/up/up/shadow", "etc/shadow"),
    ("/proc/../usr", "usr"),          # ".." after a link goes up from where the link led
    ("/", "."),
])
@pytest.mark.parametrize("opener", OPENERS)
def test_every_symlink_resolves_inside_the_root(tree: Path, path: str, inside: str, opener: str) -> None:
    expected = os.path.normpath(tree / inside)
    assert rootpath.resolve_in_root(str(tree), path) == os.path.join(str(tree), *Path(inside).parts)
    assert _where(OPENERS[opener](str(tree), path)) == expected


@pytest.mark.parametrize(("path", "inside"), [
    ("/hostpath/shadow", f"{'{host}'}/etc/shadow"),
    ("/magic/shadow", "etc/self/root/etc/shadow"),  # /proc is the image's link to /etc
    ("/dangling", "nowhere/below"),
])
@pytest.mark.parametrize("opener", OPENERS)
def test_a_link_out_of_the_root_leads_to_nothing(tree: Path, path: str, inside: str, opener: str) -> None:
    """Followed from the host, each of these opens a file of the host; inside the root
    each names a path the image does not have."""
    inside = inside.replace("{host}", str(tree.parent / "host").lstrip("/"))
    assert rootpath.resolve_in_root(str(tree), path) == os.path.join(str(tree), inside)
    with pytest.raises(FileNotFoundError):
        os.close(OPENERS[opener](str(tree), path))


def test_the_engine_reads_the_image_file_not_the_hosts(tree: Path) -> None:
    """``exec -u`` reads the container's /etc/passwd: through each link, the image's
    file (whose contents differ from the host's one beside it), never the host's."""
    for path in ("/proc/shadow", "/up/shadow", "/usr/lib/up/etc/shadow"):
        assert rootpath.read_in_root(str(tree), path) == b"the image's\n"
    with pytest.raises(FileNotFoundError):
        rootpath.read_in_root(str(tree), "/hostpath/shadow")


@pytest.mark.parametrize("opener", OPENERS)
def test_a_symlink_loop_fails_with_eloop(tree: Path, opener: str) -> None:
    with pytest.raises(OSError) as caught:
        rootpath.resolve_in_root(str(tree), "/loop1/x")
    assert caught.value.errno == errno.ELOOP
    with pytest.raises(OSError) as caught:
        os.close(OPENERS[opener](str(tree), "/loop1/x"))
    assert caught.value.errno == errno.ELOOP


def test_a_missing_mount_point_is_made_where_a_dangling_link_leads(tree: Path) -> None:
    """As runc does: the mount point is made inside the root, where the link points."""
    made = rootpath.make_in_root(str(tree), "/dangling", directory=True)
    assert _where(made) == str(tree / "nowhere" / "below")
    assert (tree / "nowhere" / "below").is_dir()
    made = rootpath.make_in_root(str(tree), "/proc/new/file", directory=False)
    assert _where(made) == str(tree / "etc" / "new" / "file")
    assert (tree / "etc" / "new" / "file").read_text() == ""
    assert not (tree.parent / "host" / "etc" / "new").exists()


def _swap(directory: Path, target: str) -> None:
    """What a process of another container on this rootfs can do at any moment."""
    (directory / "mine").rename(directory / "moved")
    (directory / "mine").symlink_to(target)


@pytest.mark.parametrize("target", ["/etc", "../../../../../../etc", "/proc/self/root/etc"])
def test_a_symlink_swapped_in_after_the_check_stops_the_mount(tree: Path, target: str) -> None:
    """check_destination approves a path; if a directory on the way turns into a
    symlink before mount(2), the descriptor lands elsewhere (inside the root, or
    nowhere) and target_in refuses, where a mount by path name would have
    followed the link."""
    (tree / "data" / "mine").mkdir(parents=True)
    landing = mounts.check_destination({}, str(tree), str(tree), {"destination": "/data/mine", "type": "tmpfs"})
    assert landing == str(tree / "data" / "mine")
    _swap(tree / "data", target)
    with pytest.raises((ContainerError, FileNotFoundError)) as caught:
        with mounts.target_in(str(tree), "/data/mine", landing):
            pytest.fail("a descriptor somewhere else was handed to mount(2)")
    if caught.type is ContainerError:
        assert str(caught.value) == (f"mount on /data/mine: refused: it resolves to {tree}/etc now "
                                     "(a symlink swapped in since it was checked?)")


def test_a_mount_point_made_after_a_swap_is_refused_too(tree: Path) -> None:
    """make_in_root walks the path check_destination approved with O_NOFOLLOW: a
    symlink on the way stops it rather than leading it."""
    (tree / "data" / "mine").mkdir(parents=True)
    landing = rootpath.resolve_in_root(str(tree), "/data/mine/new")
    _swap(tree / "data", str(tree.parent / "host"))
    with pytest.raises(ContainerError, match="refused: it resolves to"):
        with mounts.target_in(str(tree), "/data/mine/new", landing, make=True):
            pass
    assert not (tree.parent / "host" / "new").exists()


@pytest.mark.parametrize("opener", OPENERS)
def test_what_is_opened_is_what_was_there_when_it_was_opened(tree: Path, opener: str) -> None:
    """A descriptor, once open, keeps naming its directory whatever is swapped in after."""
    (tree / "data" / "mine").mkdir(parents=True)
    fd = OPENERS[opener](str(tree), "/data/mine")
    _swap(tree / "data", "/etc")
    assert _where(fd) == str(tree / "data" / "moved")


def test_the_walk_by_hand_and_the_kernel_agree_on_every_name(tree: Path) -> None:
    names: list[str] = []
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            names.append("/" + os.path.relpath(os.path.join(dirpath, name), tree))
    results: dict[str, list[str]] = {}
    for open_ in OPENERS.values():
        for name in sorted(names):
            results.setdefault(name, []).append(_outcome(open_, str(tree), name))
    assert {name: got for name, got in results.items() if got[0] != got[1]} == {}
    assert results["/proc"][0] == str(tree / "etc")


def _outcome(open_: Callable[[str, str], int], root: str, path: str) -> str:
    try:
        return _where(open_(root, path))
    except OSError as exc:
        return errno.errorcode[exc.errno or 0]
