"""Unpacking an image layer: a tar stream from a stranger, applied safely.

Chapter 05 reads this module. Spec: image-spec layer.md. Man pages:
tar(5), openat(2), mknod(2), xattr(7), user_namespaces(7).

A layer is a tar archive, usually gzip- or zstd-compressed, of the files a
build step added or changed, plus *whiteouts* for the files it deleted.
Each layer is unpacked into a directory of its own, in the form overlayfs
reads as a lower layer (chapter 04): a whiteout ``.wh.NAME`` becomes a
character device 0/0 named NAME, an opaque marker ``.wh..wh..opq`` becomes
the ``trusted.overlay.opaque`` xattr on its directory.

The archive is hostile until proven otherwise. CPython's ``tarfile``
extraction filters would make it safe but strip what images need (setuid
bits, the sticky bit of /tmp, ownership), so the rules are our own:

- every member is created relative to a directory descriptor with
  ``O_NOFOLLOW``: no path component is ever resolved through a symlink, so
  nothing can be written outside the layer's directory, whatever the
  archive's symlinks point at;
- names are relative and never go up (``..``);
- device nodes are made as the layer says, as docker, podman, containerd
  and umoci make them: a node is only a name for a (type, major, minor)
  triple, and whether a container may open it is the device filter's to
  decide (chapter 06), as for the nodes root in a container makes with
  CAP_MKNOD. Rootless, the kernel lets the engine make none (mknod(2)
  needs CAP_MKNOD in the host's user namespace), and they are skipped
  with one notice; FIFOs are always made;
- hard links point inside the layer, at what it already holds;
- xattrs pass only in the ``user.`` namespace and ``security.capability``
  (file capabilities); ``trusted.overlay.*`` would let a layer forge
  whiteouts or redirects;
- the whole stream is hashed and compared with the image's ``diff_id``,
  and its uncompressed size has a budget, against decompression bombs.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import os
import queue
import shutil
import stat
import sys
import tarfile
import threading
import zlib
from collections.abc import Iterator
from typing import IO, Protocol, cast

from mini_engine.base.errors import ContainerError

# Layer media types (image-spec media-types.md) and the compression each implies.
MEDIA_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": "none",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "none",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar": "none",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
}

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
# Rootless (chapter 06): trusted.* xattrs need CAP_SYS_ADMIN on the host, so
# overlay is mounted with "userxattr" and reads the user.* twin instead.
USER_OPAQUE_XATTR = "user.overlay.opaque"

# Decompression bombs: a layer may grow RATIO times its compressed size,
# and always to FLOOR (tiny layers of zeros are legitimate). Override the
# floor with MINI_ENGINE_UNPACK_FLOOR (bytes) on a small machine.
RATIO = 100
FLOOR = 1 << 30

CHUNK = 1 << 20
XATTR_ALLOWED = ("user.", "security.capability")
# ...but never the overlay's own: they would forge whiteouts or redirects.
XATTR_REFUSED = ("user.overlay.", "trusted.overlay.")
MAX_DEPTH = 256  # path components of a member: deeper is an attack on the walks and on rmtree
MAX_OPEN_DIRS = 128  # directory descriptors an unpack keeps open at most


class Reader(Protocol):
    """What a layer streams from: a file, a registry's response, or a wrapper of either."""

    def read(self, n: int = -1, /) -> bytes: ...


class LayerError(ContainerError):
    """The layer cannot be unpacked; nothing of it is kept."""


def describe(digest: str | None, diff_id: str) -> str:
    """How errors name a layer: by the digest a manifest lists (the blob's), and by
    the diff_id the config lists, which names the uncompressed tar."""
    if digest is None or digest == diff_id:
        return f"layer {diff_id[:19]}"
    return f"layer {digest[:19]} (diff_id {diff_id[:19]})"


def compression_of(media_type: str) -> str:
    try:
        return MEDIA_TYPES[media_type]
    except KeyError:
        raise LayerError(f"unknown layer media type {media_type!r}") from None


class HashingReader:
    """The uncompressed stream: hashed (that is the diff_id) and kept within its budget.

    The fast path: decompressing and hashing run on a thread of their own,
    a few chunks ahead of the tar reader. zlib, zstd and hashlib let go of
    Python's lock while they work, so on a second core they cost the unpack
    almost nothing. The rules are the same either way.
    """

    def __init__(self, raw: Reader, compression: str, budget: int, what: str) -> None:
        self.budget = budget
        self.what = what
        self.size = 0
        self.sha256 = hashlib.sha256()
        self.chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=8)
        self.stop = threading.Event()
        self.buffer, self.offset, self.done = b"", 0, False
        self.thread = threading.Thread(target=self._produce, args=(raw, compression), daemon=True)
        self.thread.start()

    def _produce(self, raw: Reader, compression: str) -> None:
        try:
            for chunk in inflated(raw, compression, self.what):
                self.size += len(chunk)
                if self.size > self.budget:
                    raise LayerError(f"{self.what}: uncompressed size passes {self.budget} bytes "
                                     f"(a decompression bomb?); refused")
                self.sha256.update(chunk)
                self._put(chunk)
                if self.stop.is_set():  # the reader gave up: so do we
                    return
            self._put(None)
        except BaseException as exc:  # handed to the reader, which raises it
            self._put(exc)

    def _put(self, item: bytes | BaseException | None) -> None:
        while not self.stop.is_set():
            try:
                self.chunks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, n: int = -1) -> bytes:
        while self.offset >= len(self.buffer) and not self.done:
            item = self.chunks.get()
            if item is None:
                self.done = True
            elif isinstance(item, BaseException):
                self.done = True
                raise SourceFailed(item)
            else:
                self.buffer, self.offset = item, 0
        end = len(self.buffer) if n < 0 else self.offset + n
        data = self.buffer[self.offset:end]
        self.offset += len(data)
        return data

    def drain(self) -> None:
        """Read to the end: the diff_id covers the padding after the tar's end too."""
        while self.read(CHUNK):
            pass

    def close(self) -> None:
        """Stop the thread, wherever it is."""
        self.stop.set()
        self.thread.join()


class SourceFailed(Exception):
    """What the decompressing thread raised, carried to the reader (never
    mistaken for a failure of the extraction itself)."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


def inflated(f: Reader, compression: str, what: str) -> Iterator[bytes]:
    """The tar inside ``f``, in chunks of at most CHUNK bytes. The bytes decide,
    as docker's do: a docker-save layer.tar says nothing, and some registries mislabel."""
    magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        yield from _gunzip(magic, f, what)
    elif magic == b"\x28\xb5\x2f\xfd":
        try:
            import zstandard
        except ImportError:
            raise LayerError("a zstd layer needs the zstandard module: run scripts/setup.sh") from None
        source = cast("IO[bytes]", _Prepend(magic, f))  # zstandard calls its read() alone
        reader = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
        while chunk := reader.read(CHUNK):
            yield chunk
    elif compression != "none":
        raise LayerError(f"layer says {compression} but is not {compression}-compressed")
    else:
        yield magic
        while chunk := f.read(CHUNK):
            yield chunk


def _gunzip(data: bytes, f: Reader, what: str) -> Iterator[bytes]:
    """RFC 1952 with zlib (wbits 31: the gzip wrapper, whose CRC and length
    zlib checks). ``max_length`` bounds each piece: a kilobyte of a bomb
    never becomes a gigabyte in memory. Members may follow one another."""
    d = zlib.decompressobj(31)
    while data:
        while data:
            if d.eof:  # the next member
                d = zlib.decompressobj(31)
            out = d.decompress(data, CHUNK)
            data = d.unused_data if d.eof else d.unconsumed_tail
            if out:
                yield out
        data = f.read(CHUNK)
    while not d.eof:  # what zlib still holds of the input it took
        out = d.decompress(b"", CHUNK)
        if not out:
            raise LayerError(f"{what}: broken archive: the gzip stream ends early")
        yield out


class _Prepend:
    """``f`` with the bytes already read from it put back in front."""

    def __init__(self, head: bytes, f: Reader) -> None:
        self.head, self.f = head, f

    def read(self, n: int = -1) -> bytes:
        if not self.head:
            return self.f.read(n)
        n = len(self.head) if n < 0 else n
        data, self.head = self.head[:n], self.head[n:]
        return data


# [book:unpack]
def unpack(blob: str, media_type: str, diff_id: str, dest: str, digest: str | None = None) -> int:
    """Unpack the layer in file ``blob`` (whose digest is ``digest``) into the new
    directory ``dest``; return its size.

    On any failure ``dest`` is removed and LayerError raised.
    """
    with open(blob, "rb") as f:
        return unpack_stream(f, os.path.getsize(blob), media_type, diff_id, dest, digest)


def unpack_stream(f: Reader, blob_size: int, media_type: str, diff_id: str, dest: str,
                  digest: str | None = None) -> int:
    """``unpack``, from a stream of the blob's ``blob_size`` bytes."""
    compression = compression_of(media_type)
    what = describe(digest, diff_id)
    floor = int(os.environ.get("MINI_ENGINE_UNPACK_FLOOR", FLOOR))
    budget = max(floor, RATIO * blob_size)
    os.mkdir(dest, 0o755)
    try:
        stream = HashingReader(f, compression, budget, what)
        try:
            extractor = Extractor(dest, what)
            with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
                extractor.extract_all(tar)
            stream.drain()
        finally:
            stream.close()
        if f"sha256:{stream.sha256.hexdigest()}" != diff_id:
            raise LayerError(f"{what}: content does not match its diff_id "
                             f"(got sha256:{stream.sha256.hexdigest()[:12]}...)")
        extractor.notice()
        return stream.size
    except BaseException as exc:
        shutil.rmtree(dest, ignore_errors=True)
        if isinstance(exc, SourceFailed):
            exc = exc.original
        if isinstance(exc, (tarfile.TarError, EOFError, zlib.error)):
            raise LayerError(f"{what}: broken archive: {exc}") from None
        if type(exc).__name__ == "ZstdError":
            raise LayerError(f"{what}: broken zstd stream: {exc}") from None
        raise exc from None
# [/book:unpack]


def _parts(name: str, what: str) -> list[str]:
    """The components of a member's name, refusing any that leave the layer."""
    if name.startswith("/"):
        raise LayerError(f"{what}: member {name!r} has an absolute name")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"{what}: member {name!r} leaves the layer (..)")
    if len(parts) > MAX_DEPTH:
        raise LayerError(f"{what}: member {name[:60]!r}... is more than {MAX_DEPTH} directories deep")
    return parts


class Extractor:
    """Creates members under one directory, never following a symlink."""

    def __init__(self, root: str, what: str) -> None:
        self.root = root
        self.what = what
        self.dir_times: list[tuple[list[str], int]] = []
        self.skipped: list[str] = []  # device nodes a rootless unpack cannot make
        self.dirs: dict[str, int] = {}  # descriptors of directories walked to, by path (see _dir)
        from mini_engine.base import identity

        self.rootless = identity.rootless()
        self.opaque_xattr = USER_OPAQUE_XATTR if self.rootless else OPAQUE_XATTR

    # [book:open-parent]
    def _open_dir(self, parts: list[str], create: bool) -> int:
        """A descriptor of the directory ``parts`` under the root, walked one
        component at a time with O_NOFOLLOW: a symlink is never a way through."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for i, part in enumerate(parts):
                try:
                    next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                      dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o755, dir_fd=fd)  # a parent the archive did not list
                    next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                      dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        where = "/".join(parts[:i + 1])
                        raise LayerError(f"{self.what}: {where} is not a directory in this layer "
                                         "(a symlink or a file), and a member is written below it") from None
                    raise
                os.close(fd)
                fd = next_fd
            return fd
        except BaseException:
            os.close(fd)
            raise
    # [/book:open-parent]

    def _dir(self, parts: list[str]) -> int:
        """``_open_dir``, remembered (the fast path): most members land in the
        directory the member before them did. The descriptor stays the
        cache's, and a directory removed is forgotten with all below it,
        so that no descriptor outlives the name it was walked to by."""
        key = "/".join(parts)
        fd = self.dirs.get(key)
        if fd is None:
            if len(self.dirs) >= MAX_OPEN_DIRS:
                self._forget("")
            fd = self.dirs[key] = self._open_dir(parts, create=True)
        return fd

    def _forget(self, key: str) -> None:
        """Close the remembered descriptors of ``key`` and below ("": all)."""
        for name in [n for n in self.dirs if not key or n == key or n.startswith(f"{key}/")]:
            os.close(self.dirs.pop(name))

    def extract_all(self, tar: tarfile.TarFile) -> None:
        try:
            self._extract_all(tar)
        finally:
            self._forget("")

    def _extract_all(self, tar: tarfile.TarFile) -> None:
        for member in tar:
            if member.issparse():
                # Holes cost nothing in the stream and everything on disk:
                # they would slip past the size budget. Image tools never make them.
                raise LayerError(f"{self.what}: member {member.name!r} is a sparse file; refused")
            try:
                self.extract(tar, member)
            except (OverflowError, ValueError) as exc:
                raise LayerError(f"{self.what}: member {member.name!r} has an impossible "
                                 f"field ({exc})") from None
            except OSError as exc:
                if exc.errno is None:  # gzip.BadGzipFile and friends: unpack() words them
                    raise
                # The kernel refused what the archive asked (a hard link to a
                # directory, a name past NAME_MAX): the layer's fault, not a bug of ours.
                raise LayerError(f"{self.what}: member {member.name!r} cannot be unpacked: "
                                 f"{os.strerror(exc.errno)}") from None
        # Directory times last: creating a child changes its parent's mtime.
        for parts, mtime in reversed(self.dir_times):
            try:
                fd = self._open_dir(parts, create=False)
            except (OSError, LayerError):
                continue  # a later member of the layer replaced it
            try:
                os.utime(fd, ns=(mtime, mtime))
            finally:
                os.close(fd)

    def extract(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        """One tar member into the layer's directory, whiteouts turned into overlay's forms.

        ``DIR/.wh..wh..opq`` marks DIR opaque (the xattr ``self.opaque_xattr``);
        ``DIR/.wh.NAME`` becomes NAME as a whiteout (``_whiteout(member)``,
        which ``_create`` makes a 0/0 character device); other ``.wh..wh.``
        names are aufs's bookkeeping, skipped. A whiteout of no name
        (``.wh.``, ``.wh..``, ``.wh...``) is refused with LayerError, in words
        the checks compare: ``WHAT: whiteout 'MEMBER NAME' names no file``.
        """
        parts = _parts(member.name, self.what)
        if not parts:  # "./": the layer's root directory itself
            self.dir_times.append(([], int(member.mtime * 1e9)))
            return
        base = parts[-1]
        if base == OPAQUE:
            os.setxattr(self._dir(parts[:-1]), self.opaque_xattr, b"y")
            return
        if base.startswith(WHITEOUT_PREFIX):
            hidden = base[len(WHITEOUT_PREFIX):]
            if hidden in ("", ".", "..") or hidden.startswith(WHITEOUT_PREFIX):
                # ".wh..wh.plnk" and friends are aufs bookkeeping, not deletions.
                if hidden.startswith(WHITEOUT_PREFIX):
                    return
                raise LayerError(f"{self.what}: whiteout {member.name!r} names no file")
            parts, base, member = [*parts[:-1], hidden], hidden, _whiteout(member)
        self._create(tar, member, self._dir(parts[:-1]), base, parts)

    def _create(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parent: int, base: str,
                parts: list[str]) -> None:
        existing = _lstat(base, parent)
        if member.type == WHITEOUT_TYPE:
            if existing is None:  # a file of this same layer is not hidden by it
                os.mknod(base, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)
                os.chown(base, 0, 0, dir_fd=parent, follow_symlinks=False)
            return
        if existing is not None and not (member.isdir() and stat.S_ISDIR(existing.st_mode)):
            if stat.S_ISDIR(existing.st_mode):
                self._forget("/".join(parts))
            _remove(base, parent, existing)  # the archive's later entry wins, as with tar
        uid, gid, mode = member.uid, member.gid, member.mode & 0o7777
        if member.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(base, 0o700, dir_fd=parent)
            fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            try:
                self._finish(fd, member, uid, gid, mode, timed=False)
            except BaseException:
                os.close(fd)
                raise
            key = "/".join(parts)
            if key in self.dirs or len(self.dirs) >= MAX_OPEN_DIRS:
                os.close(fd)
            else:  # its members come next
                self.dirs[key] = fd
            self.dir_times.append((parts, int(member.mtime * 1e9)))
        elif member.isreg():
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=parent)
            try:
                source = tar.extractfile(member)
                assert source is not None
                while chunk := source.read(CHUNK):
                    os.write(fd, chunk)
                self._finish(fd, member, uid, gid, mode, timed=True)
            finally:
                os.close(fd)
        elif member.issym():
            # Any target is fine: it is read inside the container's root, and
            # we never follow it here.
            os.symlink(member.linkname, base, dir_fd=parent)
            self._chown(base, uid, gid, dir_fd=parent, follow_symlinks=False)
            mtime = int(member.mtime * 1e9)
            os.utime(base, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
        elif member.islnk():
            self._hardlink(member, parent, base)
        elif member.isfifo():
            os.mkfifo(base, 0o600, dir_fd=parent)
            fd = os.open(base, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            try:
                self._finish(fd, member, uid, gid, mode, timed=True)
            finally:
                os.close(fd)
        elif member.ischr() or member.isblk():
            self._device(member, parent, base, uid, gid, mode)
        else:
            raise LayerError(f"{self.what}: member {member.name!r} has unsupported tar type {member.type!r}")

    def _hardlink(self, member: tarfile.TarInfo, parent: int, base: str) -> None:
        if member.linkname.startswith("/") or ".." in member.linkname.split("/"):
            raise LayerError(f"{self.what}: hard link {member.name!r} points at "
                             f"{member.linkname!r}, outside the layer")
        target = _parts(member.linkname, self.what)
        if not target:
            raise LayerError(f"{self.what}: hard link {member.name!r} points at the layer's root")
        try:
            source_dir = self._open_dir(target[:-1], create=False)
        except FileNotFoundError:
            source_dir = None
        try:
            if source_dir is None or _lstat(target[-1], source_dir) is None:
                raise LayerError(f"{self.what}: hard link {member.name!r} points at "
                                 f"{member.linkname!r}, which is not in this layer")
            os.link(target[-1], base, src_dir_fd=source_dir, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            if source_dir is not None:
                os.close(source_dir)

    # [book:device]
    def _device(self, member: tarfile.TarInfo, parent: int, base: str, uid: int, gid: int,
                mode: int) -> None:
        """A character or block device, as the layer says (mknod(2)).

        Opening it is another matter: the container's device filter (chapter
        06) refuses every node but a short list, whoever made it."""
        whiteout = member.ischr() and (member.devmajor, member.devminor) == (0, 0)
        if self.rootless and not whiteout:
            # mknod(2) of a device needs CAP_MKNOD in the host's user
            # namespace (user_namespaces(7)); only overlay's whiteout, 0/0, is
            # anyone's to make. Rootless podman and containerd skip them too.
            self.skipped.append(member.name.removeprefix("./"))
            return
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        os.mknod(base, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=parent)
        # Never opened, even to set its owner: opening a device acts on it
        # (a tape rewinds, a terminal becomes ours). So by name, in a
        # directory that no one but this unpack writes; owner first, since
        # chown(2) clears the setuid and setgid bits.
        if not self._chown(base, uid, gid, dir_fd=parent, follow_symlinks=False):
            mode &= ~0o6000
        os.chmod(base, mode, dir_fd=parent)
        mtime = int(member.mtime * 1e9)
        os.utime(base, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
    # [/book:device]

    def notice(self) -> None:
        """One line on stderr for the device nodes a rootless unpack left out."""
        if self.skipped:
            names = ", ".join(self.skipped[:3]) + (", ..." if len(self.skipped) > 3 else "")
            sys.stderr.write(f"mini-engine: {self.what}: skipped {len(self.skipped)} device "
                             f"node{'s' if len(self.skipped) > 1 else ''} ({names}): rootless, "
                             "no one may make them (the container's /dev has its own)\n")

    def _chown(self, target: int | str, uid: int, gid: int, **kw: object) -> bool:
        """chown(2); False if, rootless with one mapped id, the owner cannot be
        mapped: the file stays root's."""
        try:
            os.chown(target, uid, gid, **kw)  # type: ignore[arg-type]
            return True
        except OSError as exc:
            if not (self.rootless and exc.errno == errno.EINVAL):
                raise
            return False

    def _finish(self, fd: int, member: tarfile.TarInfo, uid: int, gid: int, mode: int,
                timed: bool) -> None:
        """Owner, then mode (chown clears setuid bits), then xattrs, then times."""
        if not self._chown(fd, uid, gid):
            mode &= ~0o6000  # setuid and setgid were not root's to give
        os.fchmod(fd, mode)
        for key, value in member.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr."):]
            if name.startswith(XATTR_ALLOWED) and not name.startswith(XATTR_REFUSED):
                os.setxattr(fd, name, value.encode("utf-8", "surrogateescape"))
        if timed:
            mtime = int(member.mtime * 1e9)
            os.utime(fd, ns=(mtime, mtime))


# A pseudo tar type for a whiteout, once its ".wh." name is read.
WHITEOUT_TYPE = b"W"


def _whiteout(member: tarfile.TarInfo) -> tarfile.TarInfo:
    whiteout = copy.copy(member)
    whiteout.type = WHITEOUT_TYPE
    return whiteout


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove(name: str, dir_fd: int, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def is_opaque(path: str) -> bool:
    """Does the directory ``path`` carry overlay's opaque mark (trusted. or, rootless, user.)?"""
    for name in (OPAQUE_XATTR, USER_OPAQUE_XATTR):
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def is_whiteout(st: os.stat_result) -> bool:
    """overlayfs's whiteout: a character device with device number 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
