"""``mini-engine cp``: files between a container and the host, as docker cp.

Chapter 09 reads this module. Man pages: openat2(2), path_resolution(7),
symlink(7), tar(5), chown(2).

A copy is a stream of entries, each a tar header and, for a file, its
bytes: the source is walked into entries (``entries``), the destination
makes them (``make``); ``-`` on either side makes the stream a real tar on
stdout or stdin, as docker's. The container's side is its root
filesystem: the overlay on the bundle's ``rootfs/`` while it runs, or, when
it is stopped, the same overlay (its image's layers and its upper
directory) mounted there for the copy, under the bundle's lock.

The container's files are untrusted. Its ``/etc`` may be a symlink to
``/``, or become one while we copy. So the path given is looked up with
``rootpath.open_in_root``, as if the container's root were "/"; from the
directory found, every name is opened with ``O_NOFOLLOW`` from its
parent's descriptor, never by a path string the kernel would walk again.
A symlink is copied as a symlink, never followed (``-L`` follows the one
named, inside the root); a name in a tar that climbs (``..``) or passes
through a symlink is refused.

The owner: what is copied belongs to root in the container, and to the
user who runs cp on the host, unless ``-a`` keeps the source's owners. A
container with a user namespace of its own (``--userns auto``) sees its
files through its uid and gid maps: its root is the map's first host id,
and ``-a`` shifts every owner through the maps, both ways.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

from mini_engine.base import rootpath
from mini_engine.base.errors import ContainerError
from mini_engine.containers import record as containers
from mini_engine.paths import Paths

Entry = tuple[tarfile.TarInfo, "IO[bytes] | None"]
Owner = Callable[[int, int], tuple[int, int]]  # an entry's (uid, gid) to the owner it is made with
OVERFLOW_ID = 65534  # what the kernel shows for an id a user namespace does not map


class CopyError(ContainerError):
    """A copy that cannot be done, said in one line."""


def _split(arg: str) -> tuple[str | None, str]:
    """``CONTAINER:PATH`` or a local path (one that starts with / or . never names a container)."""
    if arg == "-" or arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    name, _, path = arg.partition(":")
    return name, path or "/"


@contextmanager
def container_root(paths: Paths, name: str) -> Iterator[str]:
    """The container's root filesystem as a host directory, while the ``with`` lasts."""
    container = containers.load(paths, name)
    target = os.path.join(container.bundle, "rootfs")
    if container.record.lowers is None or os.path.ismount(target):
        yield target  # a copied rootfs (stages 1-3), or the overlay of a running container
        return
    bundle = os.open(container.bundle, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # Held while the overlay is up: a `start` now would mount one more
        # overlay on the same upper directory, which overlayfs forbids.
        fcntl.flock(bundle, fcntl.LOCK_EX)
        if containers.status(paths, container)[0] == "running" and not os.path.ismount(target):
            raise CopyError(f'container "{name}" runs, but its root is not mounted here')
        if os.path.ismount(target):
            yield target
            return
        containers.mount_rootfs(paths, container)
        try:
            yield target
        finally:
            containers.unmount_rootfs(container)
    finally:
        os.close(bundle)


# [book:entries]
def entries(root: str, path: str, name: str, follow: bool = False) -> Iterator[Entry]:
    """``path`` inside ``root`` and everything below it, as tar entries whose
    names start with ``name`` ("" for the contents of a directory alone)."""
    parent, base = _parent(root, path, follow)
    try:
        yield from _walk(parent, base, name)
    finally:
        os.close(parent)


def _parent(root: str, path: str, follow: bool) -> tuple[int, str]:
    """A descriptor of the directory ``path`` is in (inside ``root``), and its last name.
    With ``follow`` (-L), a symlink named is followed first, inside the root."""
    if follow:
        path = "/" + os.path.relpath(rootpath.resolve_in_root(root, path), root)
    parent_path, base = os.path.split(os.path.normpath("/" + path))
    if not base:  # the root itself
        return rootpath.open_in_root(root, "/"), "."
    return rootpath.open_in_root(root, parent_path), base


def _walk(parent: int, base: str, name: str) -> Iterator[Entry]:
    st = os.stat(base, dir_fd=parent, follow_symlinks=False)
    info = tarfile.TarInfo(name or ".")
    info.mode, info.uid, info.gid, info.mtime = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)
    if stat.S_ISDIR(st.st_mode):
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            if name:
                info.type = tarfile.DIRTYPE
                yield info, None
            for child in sorted(os.listdir(fd)):
                yield from _walk(fd, child, f"{name}/{child}" if name else child)
        finally:
            os.close(fd)
    elif stat.S_ISREG(st.st_mode):
        # O_NOFOLLOW: had the file become a symlink since the stat, this fails.
        fd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for a fifo or a device since
                raise CopyError(f"{name}: changed while it was copied")
            info.size = os.fstat(fd).st_size
            yield info, f
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(base, dir_fd=parent)
        yield info, None
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        info.type = (tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else
                     tarfile.BLKTYPE if stat.S_ISBLK(st.st_mode) else tarfile.FIFOTYPE)
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        yield info, None
    # a socket has no place in a tar: left out, as tar(1) does
# [/book:entries]


def _tar_entries(stream: IO[bytes]) -> Iterator[Entry]:
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                yield member, tar.extractfile(member) if member.isreg() else None
    except tarfile.TarError as exc:
        raise CopyError(f"the archive on stdin is not a tar: {exc}") from None


def make(root: str, directory: str, stream: Iterator[Entry], owner: Owner) -> None:
    """Make each entry under ``directory`` inside ``root``, owned by what
    ``owner`` makes of the entry's own (uid, gid)."""
    top = rootpath.open_in_root(root, directory)
    dir_times: list[tuple[int, str, int]] = []
    try:
        if not stat.S_ISDIR(os.fstat(top).st_mode):
            raise CopyError(f"{directory}: not a directory")
        for info, data in stream:
            parts = [p for p in info.name.split("/") if p not in ("", ".")]
            if not parts:
                continue
            if ".." in parts:
                raise CopyError(f"{info.name}: a name that climbs out (..) is refused")
            parent = _walk_down(top, parts[:-1], info.name)
            try:
                uid, gid = owner(info.uid, info.gid)
                if _make_one(parent, parts[-1], info, data, uid, gid):
                    dir_times.append((os.dup(parent), parts[-1], int(info.mtime)))
            finally:
                os.close(parent)
        # Last, deepest first: making what is inside a directory changed its time.
        for parent, name, mtime in reversed(dir_times):
            os.utime(name, (mtime, mtime), dir_fd=parent, follow_symlinks=False)
    finally:
        os.close(top)
        for parent, _, _ in dir_times:
            os.close(parent)


def _walk_down(top: int, parts: list[str], name: str) -> int:
    """The directory ``parts`` below ``top``, each opened O_NOFOLLOW from the one before
    (and made, if missing)."""
    fd = os.dup(top)
    for part in parts:
        try:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)  # a tar may name a file before (or without) its directory
            except FileExistsError:
                pass
            below = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise CopyError(f"{name}: refusing to write through {part!r}, which is not a directory "
                                "(a symlink is never followed)") from None
            raise
        os.close(fd)
        fd = below
    return fd


def _make_one(parent: int, name: str, info: tarfile.TarInfo, data: IO[bytes] | None,
              uid: int, gid: int) -> bool:
    """Make one entry in ``parent``; True for a directory, whose time is set last."""
    try:
        existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        existing = None
    if info.isdir():
        if existing is not None and not stat.S_ISDIR(existing.st_mode):
            raise CopyError(f"{info.name}: cannot overwrite a non-directory with a directory")
        if existing is None:
            os.mkdir(name, 0o700, dir_fd=parent)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, info.mode & 0o7777)  # after chown, which clears setgid
        finally:
            os.close(fd)
        return True
    if existing is not None:
        if stat.S_ISDIR(existing.st_mode):
            raise CopyError(f"{info.name}: cannot overwrite a directory with a non-directory")
        os.unlink(name, dir_fd=parent)  # replaced, never written through (it may be a symlink)
    if info.isreg():
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=parent)
        with os.fdopen(fd, "wb") as out:
            while data is not None and (chunk := data.read(1 << 20)):
                out.write(chunk)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, info.mode & 0o7777)  # after chown, which clears setuid
            os.utime(fd, (info.mtime, info.mtime))
        return False
    if info.issym():
        os.symlink(info.linkname, name, dir_fd=parent)
    elif info.ischr() or info.isblk() or info.isfifo():
        kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK if info.isblk() else stat.S_IFIFO
        os.mknod(name, kind | (info.mode & 0o7777), os.makedev(info.devmajor, info.devminor), dir_fd=parent)
    else:
        raise CopyError(f"{info.name}: a hard link or another kind of entry cp does not make")
    os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
    os.utime(name, (info.mtime, info.mtime), dir_fd=parent, follow_symlinks=False)
    return False


def _kind(root: str, path: str, follow: bool) -> os.stat_result | None:
    """What ``path`` inside ``root`` is (the link itself unless ``follow``); None if nothing."""
    try:
        fd, base = _parent(root, path, follow)
        try:
            return os.stat(base, dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(fd)
    except (FileNotFoundError, NotADirectoryError):
        return None


def copy(src_root: str, src: str, dest_root: str, dest: str, owner: Owner, follow: bool = False) -> None:
    """docker cp's rules, from ``src`` inside ``src_root`` to ``dest`` inside ``dest_root``."""
    source = _kind(src_root, src, follow)
    if source is None:
        raise CopyError(f"{src}: no such file or directory")
    is_dir = stat.S_ISDIR(source.st_mode)
    # SRC/. copies what is in the directory, not the directory.
    contents = is_dir and (src.endswith("/.") or src.rstrip("/") == "")
    target = _kind(dest_root, dest, True)
    if target is not None and stat.S_ISDIR(target.st_mode):
        directory, name = dest, "" if contents else os.path.basename(src.rstrip("/")) or "."
    elif target is not None and is_dir:
        raise CopyError(f"{dest}: cannot copy a directory to a file")
    elif target is None and dest.endswith("/") and not is_dir:
        raise CopyError(f"{dest}: no such directory")
    else:
        directory, name = os.path.dirname(dest.rstrip("/")) or "/", os.path.basename(dest.rstrip("/"))
        if _kind(dest_root, directory, True) is None:
            raise CopyError(f"{directory}: no such directory")
        if contents and target is None:
            make(dest_root, directory, iter([(_directory_entry(name, source), None)]), owner)
            directory, name = os.path.join(directory, name), ""
    make(dest_root, directory, entries(src_root, src, name, follow), owner)


def _directory_entry(name: str, like: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, stat.S_IMODE(like.st_mode), int(like.st_mtime)
    info.uid, info.gid = like.st_uid, like.st_gid
    return info


class IdMap:
    """A container's uid and gid maps (``--userns auto``, chapter 06): its root
    is a host uid of the range, and the merged root shows host ids. Without
    maps, an id is the same on both sides."""

    def __init__(self, id_map: dict[str, list[dict[str, int]]] | None) -> None:
        self.uids = (id_map or {}).get("uidMappings", [])
        self.gids = (id_map or {}).get("gidMappings", [])

    @staticmethod
    def _shift(mappings: list[dict[str, int]], value: int, key: str, other: str) -> int:
        if not mappings:
            return value
        for m in mappings:
            if m[key] <= value < m[key] + m["size"]:
                return m[other] + value - m[key]
        return OVERFLOW_ID

    def to_host(self, uid: int, gid: int) -> tuple[int, int]:
        return (self._shift(self.uids, uid, "containerID", "hostID"),
                self._shift(self.gids, gid, "containerID", "hostID"))

    def to_container(self, uid: int, gid: int) -> tuple[int, int]:
        return (self._shift(self.uids, uid, "hostID", "containerID"),
                self._shift(self.gids, gid, "hostID", "containerID"))


def cp(paths: Paths, src: str, dest: str, archive: bool, follow: bool) -> int:
    """``mini-engine cp``: exactly one side is ``CONTAINER:PATH``."""
    (src_name, src_path), (dest_name, dest_path) = _split(src), _split(dest)
    if (src_name is None) == (dest_name is None):
        raise CopyError("cp copies between a container and the host: one of SRC and DEST "
                        "must be CONTAINER:PATH, and only one")
    try:
        if src_name is not None:
            ids = IdMap(containers.load(paths, src_name).record.id_map)
            with container_root(paths, src_name) as root:
                if dest_path == "-":
                    if sys.stdout.isatty():
                        raise CopyError("refusing to write an archive to a terminal: redirect stdout")
                    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                        name = os.path.basename(src_path.rstrip("/")) or "."
                        for info, data in entries(root, src_path, name, follow):
                            info.uid, info.gid = ids.to_container(info.uid, info.gid)
                            tar.addfile(info, data)
                    return 0
                mine = os.getuid(), os.getgid()
                copy(root, src_path, "/", os.path.abspath(dest_path),
                     ids.to_container if archive else lambda uid, gid: mine, follow)
            return 0
        assert dest_name is not None
        ids = IdMap(containers.load(paths, dest_name).record.id_map)
        root_ids = ids.to_host(0, 0)
        owner: Owner = ids.to_host if archive else lambda uid, gid: root_ids
        with container_root(paths, dest_name) as root:
            if src_path == "-":
                make(root, dest_path, _tar_entries(sys.stdin.buffer), owner)
            else:
                copy("/", os.path.abspath(src_path), root, dest_path, owner, follow)
        return 0
    except OSError as exc:
        where = exc.filename or (src_path if src_name else dest_path)
        raise CopyError(f"{where}: {exc.strerror or exc}") from None
