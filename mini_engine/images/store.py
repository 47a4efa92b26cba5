"""The image store: content-addressed blobs, unpacked layers, image records, tags.

Chapter 05 reads this module. Spec: image-spec (descriptor.md, manifest.md,
config.md). Under the engine's root:

- ``blobs/sha256/<hex>``: manifests, configs and compressed layers, each
  named by the sha256 of its bytes, checked (digest and size) on the way in;
- ``layers/<hex>/diff``: a layer unpacked for overlayfs, keyed by its
  *diff_id* (the sha256 of the uncompressed tar), shared by every image
  and container that uses it; ``layers/<hex>/link`` names its short link;
- ``l/<short>``: a short symlink to each layer's ``diff``, so that an
  overlay mount with many layers fits the kernel's one-page limit on mount
  options (chapter 04);
- ``images/<hex>.json``: one record per image, named by its config's
  digest, which is the image's id (as docker's is), with every manifest
  the image came by (gzip or zstd, OCI or docker), each by its own digest;
- ``repositories.json``: the names, ``docker.io/library/busybox:latest``
  or ``REPOSITORY@sha256:...``, each to an image id and the manifest it
  came by (containers/storage keeps an image's manifests the same way).

Writers take ``.lock`` (flock(2)): two engines may pull or remove at once.
A blob or layer appears under its final name only when complete (write to
a temp name, then rename(2)), so a crash leaves garbage at worst, never a
half layer that looks whole.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mini_engine.base import files
from mini_engine.base.errors import ContainerError
from mini_engine.images import layer, reference

MANIFEST_OCI = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_OCI = "application/vnd.oci.image.index.v1+json"
INDEX_DOCKER = "application/vnd.docker.distribution.manifest.list.v2+json"
CONFIG_OCI = "application/vnd.oci.image.config.v1+json"
CONFIG_DOCKER = "application/vnd.docker.container.image.v1+json"

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
JSON_LIMIT = 4 << 20   # manifests and configs larger than this are refused (containerd's limit)
MAX_LAYERS = 125       # docker's overlay2 limit; the kernel allows 500 lowers at most


class ImageError(ContainerError):
    """An image that is malformed, or not in the store."""


class ShortBlob(ImageError):
    """A blob that ended before its descriptor's size: a transfer that broke off."""


def check_digest(digest: Any, what: str) -> str:
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        algorithm = digest.split(":")[0] if isinstance(digest, str) and ":" in digest else None
        if algorithm and algorithm != "sha256":
            raise ImageError(f"{what}: unsupported digest algorithm {algorithm!r} (only sha256)")
        raise ImageError(f"{what}: {digest!r} is not a sha256 digest")
    return digest


def parse_json(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > JSON_LIMIT:
        raise ImageError(f"{what} is larger than {JSON_LIMIT} bytes; refused")
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ImageError(f"{what} is not a JSON object")
    return value


@dataclass(frozen=True)
class Descriptor:
    """image-spec descriptor.md: what a blob is, how big, and its digest."""

    media_type: str
    digest: str
    size: int

    @classmethod
    def parse(cls, value: Any, what: str) -> Descriptor:
        if not isinstance(value, dict):
            raise ImageError(f"{what}: a descriptor must be an object")
        media_type, size = value.get("mediaType"), value.get("size")
        if not isinstance(media_type, str):
            raise ImageError(f"{what}: descriptor has no mediaType")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ImageError(f"{what}: descriptor has no valid size")
        return cls(media_type, check_digest(value.get("digest"), what), size)

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Manifest:
    """An image manifest, parsed and checked: one config and its layers."""

    media_type: str
    config: Descriptor
    layers: list[Descriptor]

    @classmethod
    def parse(cls, data: bytes, media_type: str | None = None) -> Manifest:
        value = parse_json(data, "manifest")
        media_type = value.get("mediaType", media_type) or MANIFEST_OCI
        if media_type in (INDEX_OCI, INDEX_DOCKER):
            raise ImageError("manifest is an index (a list of platforms), not an image manifest")
        if media_type not in (MANIFEST_OCI, MANIFEST_DOCKER):
            raise ImageError(f"unknown manifest media type {media_type!r}")
        if value.get("schemaVersion") != 2:
            raise ImageError(f"manifest schemaVersion is {value.get('schemaVersion')!r}, not 2")
        config = Descriptor.parse(value.get("config"), "manifest config")
        if config.media_type not in (CONFIG_OCI, CONFIG_DOCKER):
            raise ImageError(f"unknown image config media type {config.media_type!r}")
        layers = value.get("layers")
        if not isinstance(layers, list):
            raise ImageError("manifest has no layers list")
        if len(layers) > MAX_LAYERS:
            raise ImageError(f"image has {len(layers)} layers; at most {MAX_LAYERS} are supported")
        parsed = [Descriptor.parse(d, f"manifest layer {i}") for i, d in enumerate(layers)]
        for d in parsed:
            layer.compression_of(d.media_type)  # refuse an unknown type before any download
        return cls(media_type, config, parsed)


def check_config(config: dict[str, Any], layers: int) -> list[str]:
    """The config's diff_ids, after checking the fields the engine relies on."""
    rootfs = config.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise ImageError('image config has no rootfs of type "layers"')
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list):
        raise ImageError("image config has no rootfs.diff_ids")
    if len(diff_ids) != layers:
        raise ImageError(f"image config lists {len(diff_ids)} diff_ids for {layers} layers")
    for key in ("architecture", "os"):
        if not isinstance(config.get(key), str):
            raise ImageError(f"image config has no {key}")
    return [check_digest(d, "image config diff_id") for d in diff_ids]


# [book:blob-writer]
class BlobWriter:
    """A blob on its way into the store: written to a temp name in the same
    directory, hashed and measured as it comes, and renamed to its digest on
    leaving the ``with`` block only if complete and what ``expected`` says."""

    def __init__(self, store: Store, expected: Descriptor | None) -> None:
        self.store, self.expected = store, expected
        directory = store.path("blobs", "sha256")
        store._private("blobs")
        os.makedirs(directory, exist_ok=True)
        self.temp = os.path.join(directory, f".tmp-{secrets.token_hex(8)}")
        self.out = open(self.temp, "wb")
        self.digest, self.size = hashlib.sha256(), 0
        self.written = Descriptor(expected.media_type if expected else "", "", 0)

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        # Stop at once when a blob outgrows its descriptor: a hostile
        # source could stream forever.
        if self.expected is not None and self.size > self.expected.size:
            raise ImageError(f"blob {self.expected.digest[:19]} is larger than its "
                             f"descriptor's {self.expected.size} bytes")
        self.digest.update(chunk)
        self.out.write(chunk)

    def check(self) -> str:
        """The blob's digest, once it is all here; raise if it is not the one expected."""
        actual = f"sha256:{self.digest.hexdigest()}"
        if self.expected is not None:
            if self.size != self.expected.size:
                raise ShortBlob(f"blob {self.expected.digest[:19]} is {self.size} bytes, "
                                f"its descriptor says {self.expected.size}")
            if actual != self.expected.digest:
                raise ImageError(f"blob {self.expected.digest[:19]} has digest {actual[:19]}: "
                                 "the content is not what the manifest names")
        return actual

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        try:
            if kind is None:
                actual = self.check()
                self.out.flush()
                os.fsync(self.out.fileno())  # the bytes on disk before the name says they are
                self.out.close()
                os.rename(self.temp, self.store.blob_path(actual))
                self.written = Descriptor(self.written.media_type, actual, self.size)
        except BaseException:
            kind = Exception
            raise
        finally:
            if kind is not None:
                self.out.close()
                _unlink(self.temp)
# [/book:blob-writer]


class Store:
    def __init__(self, root: str) -> None:
        self.root = root

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def _private(self, name: str) -> None:
        """0700: an image's setuid programs and secrets are not the host users' to run or read."""
        os.makedirs(self.path(name), mode=0o700, exist_ok=True)
        os.chmod(self.path(name), 0o700)

    @contextmanager
    def lock(self) -> Iterator[None]:
        os.makedirs(self.root, exist_ok=True)
        with open(self.path(".lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    # -- blobs ---------------------------------------------------------------

    def blob_path(self, digest: str) -> str:
        return self.path("blobs", "sha256", check_digest(digest, "blob")[len("sha256:"):])

    def has_blob(self, digest: str) -> bool:
        return os.path.exists(self.blob_path(digest))

    # [book:put-blob]
    def put_blob(self, source: layer.Reader, expected: Descriptor | None) -> Descriptor:
        """Copy ``source`` into the store, checking it against ``expected``
        (digest and size) as it streams; return what it really was."""
        with BlobWriter(self, expected) as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)
        return out.written
    # [/book:put-blob]

    def put_bytes(self, data: bytes, media_type: str) -> Descriptor:
        import io

        return self.put_blob(io.BytesIO(data), Descriptor(
            media_type, f"sha256:{hashlib.sha256(data).hexdigest()}", len(data)))

    def read_blob(self, digest: str) -> bytes:
        with open(self.blob_path(digest), "rb") as f:
            return f.read(JSON_LIMIT + 1)

    # -- layers --------------------------------------------------------------

    def layer_dir(self, diff_id: str) -> str:
        return self.path("layers", check_digest(diff_id, "layer")[len("sha256:"):])

    def has_layer(self, diff_id: str) -> bool:
        return os.path.exists(os.path.join(self.layer_dir(diff_id), "link"))

    def short_link(self, diff_id: str) -> str:
        """``l/<short>``, relative to the store: what overlay's lowerdir= names."""
        with open(os.path.join(self.layer_dir(diff_id), "link")) as f:
            return os.path.join("l", f.read().strip())

    def _layer_workspace(self) -> str:
        """A private directory beside the layers, where one is unpacked before
        it is renamed into place (a crash leaves a .tmp- that prune removes)."""
        self._private("layers")
        self._private("l")
        temp = self.path("layers", f".tmp-{secrets.token_hex(8)}")
        os.mkdir(temp, 0o700)
        return temp

    def ensure_layer(self, blob: Descriptor, diff_id: str) -> None:
        """Unpack the layer in ``blob`` unless a layer with ``diff_id`` is here."""
        if self.has_layer(diff_id):
            return
        final, temp = self.layer_dir(diff_id), self._layer_workspace()
        try:
            size = layer.unpack(self.blob_path(blob.digest), blob.media_type, diff_id,
                                os.path.join(temp, "diff"), blob.digest)
            self._install_layer(temp, final, size)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise

    def stream_layer(self, source: layer.Reader, blob: Descriptor, diff_id: str) -> None:
        """The fast path of a pull: the blob is unpacked as it arrives, while it
        is written to the store, as containerd does. Nothing is renamed into
        place before both are checked: the blob (size, digest) and the layer
        (diff_id, and every rule of the unpack)."""
        final, temp = self.layer_dir(diff_id), self._layer_workspace()
        try:
            with BlobWriter(self, blob) as out:
                tee = _Tee(source, out)
                try:
                    size = layer.unpack_stream(tee, blob.size, blob.media_type, diff_id,
                                               os.path.join(temp, "diff"), blob.digest)
                    failed = None
                except layer.LayerError as exc:
                    failed = exc
                # A blob that is not what its manifest names is refused as
                # such, whatever its content made of the unpack.
                while tee.read(1 << 20):
                    pass
                out.check()
                if failed is not None:
                    raise failed
            self._install_layer(temp, final, size)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise

    def _install_layer(self, temp: str, final: str, size: int) -> None:
        """Give the layer unpacked in ``temp`` its short link and its final name."""
        # 10 hex digits: short enough for 125 layers in a page of mount
        # options, random so that no image can choose a colliding one.
        short = secrets.token_hex(5)
        os.symlink(os.path.join("..", "layers", os.path.basename(final), "diff"), self.path("l", short))
        with open(os.path.join(temp, "size"), "w") as f:
            f.write(str(size))
        with open(os.path.join(temp, "link"), "w") as f:
            f.write(short)
        os.chmod(temp, 0o755)
        if os.path.exists(final):  # a leftover of a crash: it has no link file
            shutil.rmtree(final)
        os.rename(temp, final)

    def remove_layer(self, diff_id: str) -> None:
        directory = self.layer_dir(diff_id)
        try:
            _unlink(self.path(self.short_link(diff_id)))
        except OSError:
            pass
        shutil.rmtree(directory, ignore_errors=True)

    # -- images --------------------------------------------------------------

    # [book:add-image]
    def add_image(self, manifest_digest: str, names: list[str]) -> dict[str, Any]:
        """Record the image whose manifest (and every blob it names) is in the
        store: check the config, unpack each layer, then name it.

        The image is its config; a manifest is one way of shipping it (gzip
        or zstd layers, OCI or docker media types). An image that comes in
        again by another manifest keeps the ones it had: each is kept by its
        own digest, and each name points at the manifest it came by."""
        manifest = Manifest.parse(self.read_blob(manifest_digest))
        config_bytes = self.read_blob(manifest.config.digest)
        config = parse_json(config_bytes, "image config")
        diff_ids = check_config(config, len(manifest.layers))
        for blob, diff_id in zip(manifest.layers, diff_ids, strict=True):
            self.ensure_layer(blob, diff_id)
        names_before = self.references()  # read before the record changes (see references)
        image_id = manifest.config.digest
        record = self._record(image_id) or {"Id": image_id, "Manifests": []}
        entry = {"Digest": manifest_digest,
                 "Layers": [dict(blob.to_json(), diffID=diff_id)
                            for blob, diff_id in zip(manifest.layers, diff_ids, strict=True)]}
        # The newest manifest last: it is the one the image id alone means.
        record["Manifests"] = [m for m in record["Manifests"] if m["Digest"] != manifest_digest] + [entry]
        record.update(Manifest=manifest_digest, Created=config.get("created"),
                      Architecture=config.get("architecture"), Os=config.get("os"),
                      Size=sum(self.layer_size(d) for d in diff_ids))
        os.makedirs(self.path("images"), exist_ok=True)
        files.write_json(self.image_file(image_id), record)
        for name in names:
            names_before[self.normal_name(name)] = {"Id": image_id, "Manifest": manifest_digest}
        self._write_references(names_before)
        return self.image(image_id, manifest_digest)
    # [/book:add-image]

    def layer_size(self, diff_id: str) -> int:
        try:
            with open(os.path.join(self.layer_dir(diff_id), "size")) as f:
                return int(f.read())
        except (OSError, ValueError):
            return 0

    def image_file(self, image_id: str) -> str:
        return self.path("images", f"{check_digest(image_id, 'image id')[len('sha256:'):]}.json")

    def _record(self, image_id: str) -> dict[str, Any] | None:
        """The record as stored, or None."""
        try:
            with open(self.image_file(image_id)) as f:
                return _upgrade(json.load(f))
        except FileNotFoundError:
            return None

    def _records(self) -> list[dict[str, Any]]:
        out = []
        for name in _listdir(self.path("images")):
            if not name.endswith(".json"):
                continue
            try:
                with open(self.path("images", name)) as f:
                    out.append(_upgrade(json.load(f)))
            except (OSError, ValueError, KeyError):
                continue
        return out

    def _view(self, record: dict[str, Any], manifest: str | None,
              references: dict[str, dict[str, str]]) -> dict[str, Any]:
        """What the commands show of an image, as reached by one of its manifests
        (None: the newest): that manifest's layers, and the image's names."""
        entry = next((m for m in record["Manifests"] if m["Digest"] == manifest), record["Manifests"][-1])
        mine = {name: r["Manifest"] for name, r in references.items() if r["Id"] == record["Id"]}
        return {
            "Id": record["Id"],
            "Manifest": entry["Digest"],
            "Digests": [m["Digest"] for m in record["Manifests"]],
            "Layers": entry["Layers"],
            "RepoTags": sorted(name for name in mine if "@" not in name),
            # docker's "repository@digest" for every manifest a name of it points at.
            "RepoDigests": sorted({f"{reference.parse(name).name}@{digest}" for name, digest in mine.items()}),
            **{key: record.get(key) for key in ("Created", "Architecture", "Os", "Size")},
        }

    def images(self) -> list[dict[str, Any]]:
        references = self.references()
        return [self._view(record, None, references) for record in self._records()]

    # [book:references]
    def references(self) -> dict[str, dict[str, str]]:
        """Every name, a tag (``repository:tag``) or a digest
        (``repository@sha256:...``), and what it points at: an image id and
        the digest of the manifest it came by."""
        try:
            with open(self.path("repositories.json")) as f:
                saved = json.load(f)
        except FileNotFoundError:
            return {}
        out = {}
        for name, value in saved.items():
            if isinstance(value, str):
                # A store of an older engine named images only: such a name
                # means the manifest its image had then, the newest one.
                record = self._record(value)
                if record is None:
                    continue
                value = {"Id": value, "Manifest": record["Manifest"]}
            out[name] = value
        return out
    # [/book:references]

    def _write_references(self, references: dict[str, dict[str, str]]) -> None:
        files.write_json(self.path("repositories.json"), dict(sorted(references.items())))

    def repositories(self) -> dict[str, str]:
        """Every name, and the id of the image it names."""
        return {name: value["Id"] for name, value in self.references().items()}

    @staticmethod
    def normal_name(text: str) -> str:
        """A name as the store keeps it: normalised, and a digest without the tag
        beside it (the digest alone decides, as with docker)."""
        ref = reference.parse(text)
        if ref.digest:
            ref = reference.Reference(ref.domain, ref.path, None, ref.digest)
        return str(ref)

    def tag(self, image_id: str, name: str, manifest: str | None = None) -> None:
        """Point ``name`` at the image, by ``manifest`` (default: its newest)."""
        record = self._record(image_id)
        if record is None:
            raise ImageError(f"image {image_id[:19]} is not in the store")
        key = self.normal_name(name)
        if "@" in key:
            manifest = key.rpartition("@")[2]
        manifest = manifest or record["Manifest"]
        if manifest not in [m["Digest"] for m in record["Manifests"]]:
            raise ImageError(f"image {image_id[:19]} has no manifest {manifest[:19]}")
        references = self.references()
        references[key] = {"Id": image_id, "Manifest": manifest}
        self._write_references(references)

    def images_tags(self, image_id: str) -> list[str]:
        return sorted(tag for tag, i in self.repositories().items() if i == image_id and "@" not in tag)

    def names(self, image_id: str) -> list[str]:
        """Every name of the image: its tags and its digest references."""
        return sorted(name for name, i in self.repositories().items() if i == image_id)

    # [book:untag]
    def untag(self, name: str) -> None:
        """Remove the name; the manifest it came by goes with it when no other
        name points at it, unless it is the image's last."""
        references = self.references()
        gone = references.pop(name, None)
        self._write_references(references)
        if gone is None:
            return
        record = self._record(gone["Id"])
        if record is None or len(record["Manifests"]) == 1:
            return
        if any(r == gone for r in references.values()):
            return
        record["Manifests"] = [m for m in record["Manifests"] if m["Digest"] != gone["Manifest"]]
        record["Manifest"] = record["Manifests"][-1]["Digest"]
        files.write_json(self.image_file(record["Id"]), record)
    # [/book:untag]

    def image(self, image_id: str, manifest: str | None = None) -> dict[str, Any]:
        record = self._record(image_id)
        if record is None:
            raise ImageError(f"image {image_id[:19]} is not in the store")
        return self._view(record, manifest, self.references())

    # [book:lookup]
    def lookup(self, name: str) -> dict[str, Any]:
        """The image ``name`` means, by the manifest it means: a name (normalised),
        or an id or its prefix (the newest manifest), or a digest of a manifest."""
        records = self._records()
        references = self.references()
        hexpart = name.removeprefix("sha256:")
        if re.fullmatch(r"[0-9a-f]{4,64}", hexpart):
            by_id = [r for r in records if r["Id"][len("sha256:"):].startswith(hexpart)]
            if len(by_id) == 1:
                return self._view(by_id[0], None, references)
            if len(by_id) > 1:
                raise ImageError(f'image id prefix "{name}" is ambiguous')
        ref = reference.parse(name)
        found = references.get(self.normal_name(name))
        if found is None and ref.domain == reference.DEFAULT_DOMAIN and \
                not name.startswith(reference.DEFAULT_DOMAIN):
            # A short name may also mean an image made here, as podman's
            # "localhost/NAME" images (the bundled busybox is one).
            local = reference.Reference("localhost", ref.path.removeprefix("library/"), ref.tag, ref.digest)
            found = references.get(self.normal_name(str(local)))
        if found is None:
            # Or one pulled from a search registry of registries.conf, as podman resolves it.
            from mini_engine.images import registries

            conf = registries.load()
            if conf.search and registries.is_short(name):
                known = [self.normal_name(str(c)) for c in conf.candidates(name)]
                found = next((references[n] for n in known if n in references), None)
        if found is None and ref.digest:
            # A digest names its manifest wherever it came from.
            by_manifest = [r for r in records if ref.digest in (m["Digest"] for m in r["Manifests"])]
            if by_manifest:
                found = {"Id": by_manifest[0]["Id"], "Manifest": ref.digest}
        if found is None:
            raise ImageError(f'image "{name}" is not here ({ref}): load it with '
                             "'mini-engine load -i FILE' (see 'mini-engine images')")
        record = next((r for r in records if r["Id"] == found["Id"]), None)
        if record is None:
            raise ImageError(f"image {found['Id'][:19]} is not in the store")
        return self._view(record, found["Manifest"], references)
    # [/book:lookup]

    def remove_image(self, image_id: str) -> None:
        references = self.references()
        self._write_references({n: r for n, r in references.items() if r["Id"] != image_id})
        _unlink(self.image_file(image_id))

    # [book:gc]
    def collect_garbage(self) -> tuple[int, int]:
        """Delete every layer and blob no image record names; (layers, blobs) deleted."""
        used_layers, used_blobs = set(), set()
        for record in self._records():
            used_blobs.add(record["Id"])
            for manifest in record["Manifests"]:  # every manifest the image came by
                used_blobs.add(manifest["Digest"])
                for entry in manifest["Layers"]:
                    used_layers.add(entry["diffID"][len("sha256:"):])
                    used_blobs.add(entry["digest"])
        layers = blobs = 0
        for name in _listdir(self.path("layers")):
            if name in used_layers:
                continue
            if DIGEST.fullmatch(f"sha256:{name}"):
                self.remove_layer(f"sha256:{name}")
            else:  # a .tmp- directory a crash left behind
                shutil.rmtree(self.path("layers", name), ignore_errors=True)
            layers += 1
        for name in _listdir(self.path("blobs", "sha256")):
            if f"sha256:{name}" not in used_blobs:
                _unlink(self.path("blobs", "sha256", name))
                blobs += 1
        for name in _listdir(self.path("l")):  # links whose layer went with a crash
            if not os.path.exists(self.path("l", name)):
                _unlink(self.path("l", name))
        return layers, blobs
    # [/book:gc]


class _Tee:
    """A reader that writes what it reads into a blob."""

    def __init__(self, source: layer.Reader, out: BlobWriter) -> None:
        self.source, self.out = source, out

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n)
        self.out.write(data)
        return data


def _upgrade(record: dict[str, Any]) -> dict[str, Any]:
    """A record of an older engine kept one manifest, and its layers, at the top."""
    if "Manifests" not in record:
        record["Manifests"] = [{"Digest": record["Manifest"], "Layers": record.pop("Layers")}]
    return record


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
