"""An overlay upper directory, turned into an OCI layer: the unpack of chapter 05 in reverse.

Chapter 09 reads this module. Spec: image-spec layer.md ("Change Types",
"Whiteouts", "Opaque Whiteout"). Kernel docs: filesystems/overlayfs.rst.
Man pages: tar(5), xattr(7), stat(2).

A build step runs on an overlay (chapter 04): the image's layers below, an
empty ``upper`` above. When it ends, ``upper`` holds exactly what the step
changed, in overlayfs's own notation, which ``images/layer.py`` taught us to
read; here we write it back in the layer's:

- a character device 0/0 is a *whiteout*: the file below was deleted. In
  the tar it becomes an empty file ``.wh.NAME``;
- a directory with the xattr ``trusted.overlay.opaque=y`` replaced the one
  below: the tar holds the directory, then ``DIR/.wh..wh..opq``;
- a file with more than one name in ``upper`` is written once, and each
  further name as a hard link (tar type ``1``) to the first;
- xattrs go in PAX headers (``SCHILY.xattr.NAME``), and only those the
  unpack takes back: ``user.*`` and ``security.capability``, never the
  overlay's own;
- times are kept, but no later than ``SOURCE_DATE_EPOCH`` when it is set
  (the reproducible-builds.org rule, buildah's ``--timestamp``), and owner
  names are left out: the same changes give the same bytes, so the same
  digest.

The tar is written sorted by name, uncompressed bytes hashed as they go:
that hash is the layer's ``diff_id``; the gzip of it (without a time or a
name in its header) is the blob, and its hash the digest.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from mini_engine.base.errors import ContainerError
from mini_engine.images.layer import (
    OPAQUE,
    WHITEOUT_PREFIX,
    XATTR_ALLOWED,
    XATTR_REFUSED,
    is_opaque,
    is_whiteout,
)

# What overlayfs writes when the kernel's redirect_dir or metacopy is on: a
# directory renamed that points at its old name, a file whose data stays
# below. A tar layer can say neither, so such an upper is refused, not shipped half.
UNSHIPPABLE = ("trusted.overlay.redirect", "trusted.overlay.metacopy",
               "user.overlay.redirect", "user.overlay.metacopy")

GZIP_LEVEL = 6  # gzip's default, and Go's compress/gzip's
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass
class Written:
    """The layer as written: its uncompressed and compressed digests and sizes."""

    diff_id: str
    digest: str
    size: int          # of the compressed blob
    changes: int       # tar members (0: the step changed nothing)


class _GzipHashing:
    """A file-like sink: hashes the tar (the diff_id), gzips it, hashes and writes the gzip."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.tar_hash, self.blob_hash = hashlib.sha256(), hashlib.sha256()
        # wbits 31: the gzip wrapper, whose header zlib writes with mtime 0
        # and no file name: nothing of when or where it was made.
        self.gzip = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        self.size = 0

    def write(self, data: bytes) -> int:
        self.tar_hash.update(data)
        self._emit(self.gzip.compress(data))
        return len(data)

    def _emit(self, data: bytes) -> None:
        if data:
            self.blob_hash.update(data)
            self.out.write(data)
            self.size += len(data)

    def finish(self) -> None:
        self._emit(self.gzip.flush())


# [book:write-layer]
def write_layer(upper: str, out: IO[bytes], epoch: int | None = None) -> Written:
    """Write the changes in ``upper`` to ``out`` as a gzipped OCI layer."""
    sink = _GzipHashing(out)
    count = 0
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for member, path in members(upper, epoch):
            if member.isreg() and member.size:
                with open(path, "rb") as f:
                    tar.addfile(member, f)
            else:
                tar.addfile(member)
            count += 1
    sink.finish()
    return Written(f"sha256:{sink.tar_hash.hexdigest()}", f"sha256:{sink.blob_hash.hexdigest()}",
                   sink.size, count)
# [/book:write-layer]


# [book:members]
def members(upper: str, epoch: int | None = None) -> Iterator[tuple[tarfile.TarInfo, str]]:
    """The tar members for ``upper``, sorted by name, each with the path to read it from."""
    first_names: dict[tuple[int, int], str] = {}  # (st_dev, st_ino) -> the name written first
    for name, path, st in _walk(upper):
        if is_whiteout(st):
            parent, _, base = name.rpartition("/")
            yield _header(f"{parent}/{WHITEOUT_PREFIX}{base}" if parent else f"{WHITEOUT_PREFIX}{base}",
                          tarfile.REGTYPE, st, epoch, mode=0), path
            continue
        kind = _type_of(st)
        if kind is None:
            continue
        info = _header(name, kind, st, epoch)
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            if key in first_names:
                info.type, info.linkname, info.size = tarfile.LNKTYPE, first_names[key], 0
            else:
                first_names[key] = name
        if info.type == tarfile.REGTYPE:
            info.size = st.st_size
        elif info.type == tarfile.SYMTYPE:
            info.linkname = os.readlink(path)
        elif info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        info.pax_headers = _xattrs(path)
        yield info, path
        if stat.S_ISDIR(st.st_mode) and is_opaque(path):
            yield _header(f"{name}/{OPAQUE}", tarfile.REGTYPE, st, epoch, mode=0), path
# [/book:members]


def _walk(top: str, prefix: str = "") -> Iterator[tuple[str, str, os.stat_result]]:
    """(name in the layer, path on disk, lstat) for everything below ``top``, sorted
    by name as tar readers and the image-spec's examples list them."""
    directory = os.path.join(top, prefix) if prefix else top
    for entry in sorted(os.listdir(directory)):
        name = f"{prefix}/{entry}" if prefix else entry
        path = os.path.join(top, name)
        st = os.lstat(path)
        yield name, path, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(top, name)


def _type_of(st: os.stat_result) -> bytes | None:
    mode = st.st_mode
    for test, kind in ((stat.S_ISREG, tarfile.REGTYPE), (stat.S_ISDIR, tarfile.DIRTYPE),
                       (stat.S_ISLNK, tarfile.SYMTYPE), (stat.S_ISCHR, tarfile.CHRTYPE),
                       (stat.S_ISBLK, tarfile.BLKTYPE), (stat.S_ISFIFO, tarfile.FIFOTYPE)):
        if test(mode):
            return kind
    # A socket lives only while its program does: tar has no type for it, and
    # docker and buildah leave sockets out of layers too.
    return None


def _header(name: str, kind: bytes, st: os.stat_result, epoch: int | None, mode: int | None = None
            ) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode) if mode is None else mode
    # A whiteout or opaque marker is a name, not a file: root's, as docker writes them.
    info.uid, info.gid = (st.st_uid, st.st_gid) if mode is None else (0, 0)
    info.uname = info.gname = ""
    mtime = int(st.st_mtime)
    info.mtime = min(mtime, epoch) if epoch is not None else mtime
    return info


def _xattrs(path: str) -> dict[str, str]:
    headers = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    for xattr in sorted(names):
        if xattr in UNSHIPPABLE:
            raise ContainerError(f"{path}: overlayfs wrote {xattr} (the overlay module's redirect_dir or "
                                 "metacopy is on), which no layer tar can say; load it with "
                                 "redirect_dir=off metacopy=off")
        if xattr.startswith(XATTR_ALLOWED) and not xattr.startswith(XATTR_REFUSED):
            value = os.getxattr(path, xattr, follow_symlinks=False)
            headers[f"SCHILY.xattr.{xattr}"] = value.decode("utf-8", "surrogateescape")
    return headers
