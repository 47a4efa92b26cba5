"""COPY and ADD: files from the build context (or an earlier stage) into the image.

Chapter 09 reads this module. The rules are the Dockerfile reference's
("COPY", "ADD"): a source is relative to the context and may not leave it;
a directory source copies what is in it, not the directory itself; several
sources need a destination ending in ``/``; a relative destination is
relative to ``WORKDIR``; what is copied belongs to root unless ``--chown``
says otherwise; ADD unpacks a local tar archive instead of copying it.

What is copied is also what the layer cache keys on (``content_hash``): the
names, types, modes and bytes of the files, never their times, so that a
fresh checkout of the same files hits the cache (BuildKit's rule).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass

from mini_engine.base.errors import ContainerError
from mini_engine.base.rootpath import resolve_in_root
from mini_engine.build.containerfile import Pattern, ignored


class CopyError(ContainerError):
    """A COPY or ADD that cannot be done; the builder adds the line."""


@dataclass
class Source:
    """One file or directory to copy: where it is, and its name relative to its root."""

    path: str      # on the host
    name: str      # relative to the context (or the stage's root), for the cache and errors
    is_dir: bool


# [book:sources]
def sources(root: str, specs: list[str], patterns: list[Pattern], inside_image: bool) -> list[Source]:
    """The files ``specs`` name under ``root`` (the context, or an earlier stage's
    root filesystem), wildcards expanded, the ignored left out.

    In the context a source may not leave it, by ``..`` or by a symlink; in an
    image, symlinks are resolved as the image's own root would resolve them.
    """
    real_root = os.path.realpath(root)
    found: list[Source] = []
    for spec in specs:
        if inside_image:
            candidates = [resolve_in_root(real_root, spec)]
        else:
            relative = os.path.normpath(spec.lstrip("/")) if spec.strip("/") else "."
            if relative == ".." or relative.startswith("../"):
                raise CopyError(f"{spec}: outside the build context")
            if any(c in relative for c in "*?["):  # a wildcard: Go's filepath.Match, as glob(3)
                matches = sorted(glob.glob(relative, root_dir=real_root))
                candidates = [os.path.join(real_root, m) for m in matches]
            else:
                candidates = [os.path.join(real_root, relative)]
        matched = False
        for candidate in candidates:
            real = os.path.realpath(candidate)
            if real != real_root and not real.startswith(real_root + os.sep):
                raise CopyError(f"{spec}: outside the build context (a symlink leads to {real})")
            name = os.path.relpath(candidate, real_root)
            if not inside_image and name != "." and ignored(name, patterns):
                continue
            if not os.path.lexists(real):
                continue
            found.append(Source(real, name, os.path.isdir(real)))
            matched = True
        if not matched:
            raise CopyError(f"{spec}: no such file or directory in the "
                            f"{'stage' if inside_image else 'build context'}"
                            f"{'' if inside_image else ' (or .containerignore leaves it out)'}")
    return found
# [/book:sources]


def _files(source: Source, patterns: list[Pattern], inside_image: bool) -> list[tuple[str, str]]:
    """(path on the host, path relative to the copy's destination) for every
    entry under a directory source, sorted; a file source is itself."""
    if not source.is_dir:
        return [(source.path, os.path.basename(source.path))]
    out = []
    for top, dirs, files in os.walk(source.path):
        dirs.sort()
        for entry in sorted(dirs + files):
            path = os.path.join(top, entry)
            relative = os.path.relpath(path, source.path)
            name = os.path.normpath(os.path.join(source.name, relative))
            if not inside_image and ignored(name, patterns):
                if entry in dirs and not any(not p.exclude for p in patterns):
                    dirs.remove(entry)  # pruned, unless a "!" line may take something below back
                continue
            out.append((path, relative))
    return sorted(out, key=lambda item: item[1])


# [book:content-hash]
def content_hash(found: list[Source], patterns: list[Pattern], inside_image: bool) -> str:
    """What the cache keys a COPY on: each file's name, type, mode and content."""
    h = hashlib.sha256()
    for source in found:
        h.update(f"source {source.name}\0".encode())
        for path, relative in _files(source, patterns, inside_image):
            st = os.lstat(path)
            h.update(f"{relative}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode):o}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(path).encode())
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
            h.update(b"\0")
    return f"sha256:{h.hexdigest()}"
# [/book:content-hash]


@dataclass
class Owner:
    uid: int = 0
    gid: int = 0
    mode: int | None = None  # --chmod
    chown: bool = False      # --chown given: else root's from the context, the source's own --from a stage


# [book:copy-into]
def copy_into(rootfs: str, found: list[Source], dest: str, workdir: str, owner: Owner,
              patterns: list[Pattern], inside_image: bool, unpack_archives: bool = False) -> None:
    """Copy the sources into the mounted root ``rootfs`` at ``dest`` (COPY), or
    unpack the tar archives among them there (ADD)."""
    target = dest if dest.startswith("/") else os.path.join(workdir or "/", dest)
    into_dir = dest.endswith("/") or dest in (".", "..") or len(found) > 1 or \
        any(s.is_dir for s in found) or os.path.isdir(resolve_in_root(rootfs, target))
    if len(found) > 1 and not dest.endswith("/"):
        raise CopyError(f"{dest}: with more than one source, the destination must be a directory "
                        "and end with /")
    for source in found:
        if unpack_archives and not source.is_dir and tarfile.is_tarfile(source.path):
            _unpack(rootfs, source, target)
            continue
        if source.is_dir:
            base = target
            makedirs(rootfs, base)
            if owner.chown:  # the directory the copy lands in is the copy's too (buildah's rule)
                os.chown(resolve_in_root(rootfs, base), owner.uid, owner.gid)
        elif into_dir:
            makedirs(rootfs, target)
            base = os.path.join(target, os.path.basename(source.path))
            _put(rootfs, source.path, base, owner, inside_image)
            continue
        else:
            makedirs(rootfs, os.path.dirname(target) or "/")
            _put(rootfs, source.path, target, owner, inside_image)
            continue
        for path, relative in _files(source, patterns, inside_image):
            dest_path = os.path.join(base, relative)
            if "/" in relative and not os.path.isdir(resolve_in_root(rootfs, os.path.dirname(dest_path))):
                makedirs(rootfs, os.path.dirname(dest_path))  # its directory was left out, not a file in it
            _put(rootfs, path, dest_path, owner, inside_image)
# [/book:copy-into]


def makedirs(rootfs: str, path: str) -> None:
    """mkdir -p inside the root: each missing directory 0755, root's, as docker makes them."""
    parts = [p for p in path.split("/") if p]
    for i in range(1, len(parts) + 1):
        host = resolve_in_root(rootfs, "/".join(parts[:i]))
        if not os.path.lexists(host):
            os.mkdir(host, 0o755)
            os.chmod(host, 0o755)
        elif not os.path.isdir(host):
            raise CopyError(f"/{'/'.join(parts[:i])} is not a directory in the image")


def _put(rootfs: str, path: str, dest: str, owner: Owner, inside_image: bool) -> None:
    """One entry, at ``dest`` (a path inside the root); its parent exists."""
    parent = resolve_in_root(rootfs, os.path.dirname(dest) or "/")
    host = os.path.join(parent, os.path.basename(dest))
    st = os.lstat(path)
    if inside_image and not owner.chown:
        # From another stage or image, files keep their owners, as docker and buildah keep them;
        # from the context they are root's (its owners are the host's users, not the image's).
        owner = Owner(st.st_uid, st.st_gid, owner.mode)
    existing = os.lstat(host) if os.path.lexists(host) else None
    if existing is not None and not (stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(existing.st_mode)):
        if stat.S_ISDIR(existing.st_mode):
            shutil.rmtree(host)
        else:
            os.unlink(host)
    mode = owner.mode if owner.mode is not None else stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(path), host)
        os.chown(host, owner.uid, owner.gid, follow_symlinks=False)
        os.utime(host, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)
        return
    if stat.S_ISDIR(st.st_mode):
        if existing is None or not stat.S_ISDIR(existing.st_mode):
            os.mkdir(host, 0o700)
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out, open(path, "rb") as f:
            shutil.copyfileobj(f, out, 1 << 20)
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(host, 0o600)
    else:
        return  # a device or socket in a context is no file to ship
    # Owner before mode: chown(2) clears the setuid and setgid bits.
    os.chown(host, owner.uid, owner.gid, follow_symlinks=False)
    os.chmod(host, mode)
    os.utime(host, ns=(st.st_mtime_ns, st.st_mtime_ns))


def _unpack(rootfs: str, source: Source, target: str) -> None:
    """ADD of a local archive: unpacked by chapter 05's extractor, whose rules keep
    every member inside the destination (no absolute names, no ``..``, no
    writing through symlinks), gzip, bzip2 and xz alike."""
    from mini_engine.images.layer import Extractor, LayerError

    makedirs(rootfs, target)
    what = f"ADD {source.name}"
    try:
        with tarfile.open(source.path, "r:*") as tar:
            Extractor(resolve_in_root(rootfs, target), what).extract_all(tar)
    except LayerError as exc:
        raise CopyError(str(exc)) from None
    except (tarfile.TarError, EOFError) as exc:
        raise CopyError(f"{what}: broken archive: {exc}") from None
