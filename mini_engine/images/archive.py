"""Images as files: ``mini-engine load`` and ``mini-engine save``.

Chapter 05 reads this module. Spec: image-spec image-layout.md (the OCI
layout: ``oci-layout``, ``index.json``, ``blobs/sha256/<hex>``) and docker's
``docker save`` format (``manifest.json`` with Config, RepoTags, Layers).

Loading copies every blob into the store, checking digest and size as it
streams, and only then records the image, so a broken archive leaves no
image behind; the blobs it had copied are collected at once.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import stat
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from mini_engine.base.errors import ContainerError
from mini_engine.images import reference
from mini_engine.images.imageconfig import NoPlatform, choose_platform, host_platform
from mini_engine.images.store import (
    CONFIG_OCI,
    INDEX_DOCKER,
    INDEX_OCI,
    MANIFEST_DOCKER,
    MANIFEST_OCI,
    Descriptor,
    ImageError,
    Manifest,
    Store,
    parse_json,
)

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
LAYOUT = {"imageLayoutVersion": "1.0.0"}
MAX_INDEX_DEPTH = 4


class Source:
    """Files of an image layout, from a directory or from a tar archive."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.tar: tarfile.TarFile | None = None
        if not os.path.isdir(path):
            try:
                self.tar = tarfile.open(path, "r:*")
            except (tarfile.TarError, OSError) as exc:
                # "r:*" lists each method it tried, one per line: the error must stay one line.
                reason = "not a tar file, plain or compressed" if isinstance(exc, tarfile.ReadError) else exc
                raise ImageError(f"{path}: not an image archive ({reason})") from None

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()

    def exists(self, name: str) -> bool:
        if self.tar is None:
            return os.path.isfile(os.path.join(self.path, name))
        member = self._member(name)
        return member is not None and member.isfile()

    def _member(self, name: str) -> tarfile.TarInfo | None:
        """The member called ``name``, also when the archive says ``./name``."""
        assert self.tar is not None
        if not hasattr(self, "_names"):
            self._names = {m.name.removeprefix("./"): m for m in self.tar.getmembers()}
        return self._names.get(name)

    @contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        parts = name.split("/")
        if name.startswith("/") or ".." in parts:
            raise ImageError(f"{self.path}: the archive names {name!r}, outside itself")
        if self.tar is None:
            try:
                # A regular file, not followed through a symlink: a layout must
                # not lead us to /dev/zero or a file of the host's.
                fd = os.open(os.path.join(self.path, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except FileNotFoundError:
                raise ImageError(f"{self.path}: {name} is missing") from None
            except OSError as exc:
                raise ImageError(f"{self.path}: {name}: {exc.strerror}") from None
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise ImageError(f"{self.path}: {name} is not a regular file")
            with os.fdopen(fd, "rb") as f:
                yield f
            return
        member = self._member(name)
        if member is None:
            raise ImageError(f"{self.path}: {name} is missing from the archive")
        if not member.isfile():  # links inside an archive: refused, not followed
            raise ImageError(f"{self.path}: {name} is not a regular file in the archive")
        f = self.tar.extractfile(member)  # type: ignore[assignment]
        if f is None:
            raise ImageError(f"{self.path}: {name} is not a file")
        yield f

    def read(self, name: str, limit: int = 4 << 20) -> bytes:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ImageError(f"{self.path}: {name} is larger than {limit} bytes; refused")
        return data


def _blob_name(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"blobs/{algorithm}/{hexpart}"


# [book:load]
def load(store: Store, path: str) -> list[tuple[str, list[str]]]:
    """Load every image in the archive or layout at ``path``: [(id, tags)]."""
    if not os.path.exists(path):
        raise ImageError(f"{path}: no such file or directory")
    source = Source(path)
    try:
        with store.lock():
            try:
                if source.exists("oci-layout") and source.exists("index.json"):
                    return _load_oci(store, source)
                if source.exists("manifest.json"):
                    return _load_docker(store, source)
            except BaseException:
                store.collect_garbage()  # a failed load leaves no blob behind
                raise
            raise ImageError(f"{path}: neither an OCI image layout (oci-layout, index.json) "
                             "nor a docker save archive (manifest.json)")
    finally:
        source.close()
# [/book:load]


def _copy_blob(store: Store, source: Source, wanted: Descriptor) -> None:
    if store.has_blob(wanted.digest):
        return  # content-addressed: the same digest is the same bytes
    with source.open(_blob_name(wanted.digest)) as f:
        store.put_blob(f, wanted)


def _load_oci(store: Store, source: Source) -> list[tuple[str, list[str]]]:
    layout = parse_json(source.read("oci-layout"), "oci-layout")
    if not isinstance(layout.get("imageLayoutVersion"), str):
        raise ImageError(f"{source.path}: oci-layout has no imageLayoutVersion")
    index = parse_json(source.read("index.json"), "index.json")
    loaded = []
    for entry in _manifests(index, "index.json"):
        descriptor, annotations = _pick(store, source, entry, 0)
        tags = [t for t in (_tag_from(annotations), _tag_from(entry.get("annotations", {}))) if t]
        loaded.append(_load_manifest(store, source, descriptor, sorted(set(tags))))
    if not loaded:
        raise ImageError(f"{source.path}: index.json lists no manifests")
    return loaded


def _manifests(index: dict[str, Any], what: str) -> list[dict[str, Any]]:
    if index.get("schemaVersion") != 2:
        raise ImageError(f"{what}: schemaVersion is {index.get('schemaVersion')!r}, not 2")
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
        raise ImageError(f"{what} has no manifests list")
    return manifests


def _pick(store: Store, source: Source, entry: dict[str, Any], depth: int
          ) -> tuple[Descriptor, dict[str, Any]]:
    """The image manifest ``entry`` leads to: an index is followed to this host's platform."""
    descriptor = Descriptor.parse(entry, "index entry")
    annotations = entry.get("annotations") or {}
    if descriptor.media_type not in (INDEX_OCI, INDEX_DOCKER):
        return descriptor, annotations
    if depth >= MAX_INDEX_DEPTH:
        raise ImageError(f"{source.path}: indexes nested deeper than {MAX_INDEX_DEPTH}")
    _copy_blob(store, source, descriptor)
    nested = parse_json(store.read_blob(descriptor.digest), "image index")
    try:
        candidate = choose_platform(_manifests(nested, "image index"), host_platform(), str(source.path))
    except NoPlatform as exc:
        raise ImageError(str(exc)) from None
    return _pick(store, source, candidate, depth + 1)[0], annotations


def _tag_from(annotations: Any) -> str | None:
    """A full reference from an index annotation; a bare tag ("latest") names no repository."""
    if not isinstance(annotations, dict):
        return None
    for key in (CONTAINERD_NAME, REF_NAME):
        name = annotations.get(key)
        if isinstance(name, str) and ("/" in name or ":" in name):
            try:
                ref = reference.parse(name)
            except ContainerError:
                continue
            if ref.tag:
                return str(ref)
    return None


def _load_manifest(store: Store, source: Source, descriptor: Descriptor,
                   tags: list[str]) -> tuple[str, list[str]]:
    if descriptor.media_type not in (MANIFEST_OCI, MANIFEST_DOCKER):
        raise ImageError(f"unknown manifest media type {descriptor.media_type!r}")
    _copy_blob(store, source, descriptor)
    manifest = Manifest.parse(store.read_blob(descriptor.digest), descriptor.media_type)
    for blob in (manifest.config, *manifest.layers):
        _copy_blob(store, source, blob)
    record = store.add_image(descriptor.digest, tags)
    return record["Id"], tags


def _load_docker(store: Store, source: Source) -> list[tuple[str, list[str]]]:
    """``docker save``: layers are plain tars named in manifest.json; no manifest blob,
    so we write the OCI manifest docker would have pushed."""
    try:
        entries = json.loads(source.read("manifest.json"))
    except ValueError as exc:
        raise ImageError(f"{source.path}: manifest.json is not JSON: {exc}") from None
    if not isinstance(entries, list) or not entries:
        raise ImageError(f"{source.path}: manifest.json is not a list of images")
    loaded = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not isinstance(entry.get("Layers"), list):
            raise ImageError(f"{source.path}: manifest.json entry lacks Config or Layers")
        config = store.put_bytes(source.read(entry["Config"]), CONFIG_OCI)
        layers = []
        for name in entry["Layers"]:
            if not isinstance(name, str):
                raise ImageError(f"{source.path}: manifest.json names a layer that is not a path")
            with source.open(name) as f:
                blob = store.put_blob(f, None)
            with open(store.blob_path(blob.digest), "rb") as f:
                gzipped = f.read(2) == b"\x1f\x8b"
            media_type = f"application/vnd.oci.image.layer.v1.tar{'+gzip' if gzipped else ''}"
            layers.append(Descriptor(media_type, blob.digest, blob.size).to_json())
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST_OCI,
                    "config": Descriptor(CONFIG_OCI, config.digest, config.size).to_json(),
                    "layers": layers}
        written = store.put_bytes(json.dumps(manifest).encode(), MANIFEST_OCI)
        tags = [str(reference.parse(t)) for t in entry.get("RepoTags") or [] if isinstance(t, str)]
        record = store.add_image(written.digest, tags)
        loaded.append((record["Id"], tags))
    return loaded


# [book:save]
def save(store: Store, names: list[str], output: IO[bytes]) -> None:
    """Write the images ``names`` as one OCI archive (what skopeo calls oci-archive)."""
    records = [(name, store.lookup(name)) for name in names]
    manifests = []
    blobs: list[str] = []
    for name, record in records:
        data = store.read_blob(record["Manifest"])
        media_type = json.loads(data).get("mediaType", MANIFEST_OCI)
        ref = _saved_name(store, name, record)
        annotations = {REF_NAME: ref, CONTAINERD_NAME: ref} if ref else {}
        manifests.append(dict(Descriptor(media_type, record["Manifest"], len(data)).to_json(),
                              annotations=annotations))
        for digest in (record["Manifest"], record["Id"], *(layer["digest"] for layer in record["Layers"])):
            if digest not in blobs:
                blobs.append(digest)
    index = {"schemaVersion": 2, "mediaType": INDEX_OCI, "manifests": manifests}
    with tarfile.open(fileobj=output, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", json.dumps(LAYOUT).encode())
        _add_bytes(tar, "index.json", json.dumps(index).encode())
        for digest in blobs:
            path = store.blob_path(digest)
            info = tar.gettarinfo(path, arcname=_blob_name(digest))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(path, "rb") as f:
                tar.addfile(info, f)
# [/book:save]


def save_docker(store: Store, names: list[str], output: IO[bytes]) -> None:
    """Write the images ``names`` as ``docker save`` does (what skopeo and podman call
    docker-archive): ``manifest.json``, a list of {Config, RepoTags, Layers}; each
    config as ``<hex>.json``; each layer as ``<diff_id hex>/layer.tar``.

    The format has no manifest blob and no media types: a layer there is the
    tar itself, uncompressed, so that its sha256 is the config's diff_id, which
    is how docker and podman check it when they load it. Names of one image
    share its entry, as docker writes them.
    """
    entries: dict[str, dict[str, Any]] = {}
    with tarfile.open(fileobj=output, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            record = store.lookup(name)
            tag = _saved_name(store, name, record)
            if record["Id"] in entries:
                if tag and tag not in entries[record["Id"]]["RepoTags"]:
                    entries[record["Id"]]["RepoTags"].append(tag)
                continue
            config = f"{record['Id'].removeprefix('sha256:')}.json"
            _add_bytes(tar, config, store.read_blob(record["Id"]))
            layers = []
            for blob in record["Layers"]:
                member = f"{blob['diffID'].removeprefix('sha256:')}/layer.tar"
                if member not in layers and not any(member in e["Layers"] for e in entries.values()):
                    _add_inflated(tar, member, store.blob_path(blob["digest"]), blob["mediaType"],
                                  blob["diffID"])
                layers.append(member)
            entries[record["Id"]] = {"Config": config, "RepoTags": [tag] if tag else [], "Layers": layers}
        _add_bytes(tar, "manifest.json", json.dumps(list(entries.values())).encode())


def _add_inflated(tar: tarfile.TarFile, member: str, blob: str, media_type: str, diff_id: str) -> None:
    """A layer blob, uncompressed, as ``member``: through a temporary file, since a
    tar header states the size before the bytes, and the size is known only after."""
    import hashlib
    import tempfile

    from mini_engine.images import layer

    digest = hashlib.sha256()
    with open(blob, "rb") as f, tempfile.TemporaryFile() as plain:
        for chunk in layer.inflated(f, layer.compression_of(media_type), blob):
            digest.update(chunk)
            plain.write(chunk)
        if f"sha256:{digest.hexdigest()}" != diff_id:
            raise ImageError(f"layer {diff_id[:19]}: its blob does not unpack to it; pull the image again")
        info = tarfile.TarInfo(member)
        info.size, info.mode = plain.tell(), 0o644
        plain.seek(0)
        tar.addfile(info, plain)


def _saved_name(store: Store, name: str, record: dict[str, Any]) -> str | None:
    """The tag to write for ``name``: itself if it is a tag of the image, else the
    first tag that points at the manifest written."""
    try:
        parsed: reference.Reference | None = reference.parse(name)
    except ContainerError:
        parsed = None
    if parsed is not None:
        candidates = [str(parsed)]
        if parsed.domain == reference.DEFAULT_DOMAIN and not name.startswith(reference.DEFAULT_DOMAIN):
            # A short name means an image made here too, localhost/NAME, as Store.lookup reads it.
            candidates.append(str(reference.Reference("localhost", parsed.path.removeprefix("library/"),
                                                      parsed.tag, parsed.digest)))
        for ref in candidates:
            if ref in record.get("RepoTags", []):
                return ref
    same = [tag for tag, r in store.references().items()
            if tag in record["RepoTags"] and r["Manifest"] == record["Manifest"]]
    return same[0] if same else None


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


FORMATS = {"oci-archive": save, "docker-archive": save_docker}  # save --format, skopeo's names


def save_to_file(store: Store, names: list[str], path: str, fmt: str = "oci-archive") -> None:
    """Write to ``path`` through a temp file: an interrupted save leaves no half archive."""
    temp = f"{path}.tmp-{secrets.token_hex(4)}"
    try:
        with open(temp, "wb") as f:
            FORMATS[fmt](store, names, f)
        os.rename(temp, path)
    except OSError as exc:
        if os.path.exists(temp):
            os.unlink(temp)
        # Our output, not the store (whose errors name a blob): a missing
        # directory, no permission, a full disk. The user's to fix.
        if exc.filename not in (None, temp) or exc.errno is None:
            raise
        raise ImageError(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
