"""Pushing images: the OCI distribution protocol's upload, with the pull's client.

Chapter 09 reads this module. Spec: distribution-spec spec.md ("Pushing"),
and docker's token authentication, as for a pull (``registry.py``).

A registry refuses a manifest that names a blob it has not got, so a push
sends the blobs first (the layers, then the config) and the manifest last.
For each blob, under ``/v2/<name>/``:

1. ``HEAD blobs/<digest>``: 200 means the registry has it; nothing to send;
2. ``POST blobs/uploads/?mount=<digest>&from=<other name>``, when the store
   knows the blob came from another repository of the same registry: 201
   means the registry linked its own copy, nothing to send; 202 means it
   could not, and opened an upload session instead, at ``Location``;
3. otherwise ``POST blobs/uploads/``: 202 and a session at ``Location``;
4. a small blob goes in one ``PUT <location>?digest=<digest>`` (monolithic);
   a large one in ``PATCH <location>`` requests of ``CHUNK`` bytes each,
   each with its ``Content-Range`` and each answer's ``Location`` the next,
   then an empty ``PUT <location>?digest=<digest>`` that closes it (chunked).
   The registry checks the digest of what it got, and refuses a mismatch.

Then ``PUT manifests/<tag>`` with the manifest's bytes as the store keeps
them: the same bytes, the same digest, wherever the image goes.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from typing import Any

from mini_engine.base.errors import ContainerError
from mini_engine.images import reference
from mini_engine.images.reference import Reference
from mini_engine.images.registry import Client, RegistryError
from mini_engine.images.store import Descriptor, ImageError, Manifest, Store

# A blob larger than this goes in chunks of this size (MINI_ENGINE_PUSH_CHUNK, in bytes).
CHUNK = int(os.environ.get("MINI_ENGINE_PUSH_CHUNK", str(16 << 20)))
OCTETS = {"Content-Type": "application/octet-stream"}


def _destination(name: str, dest: str | None) -> Reference:
    if dest is None and re.fullmatch(r"(sha256:)?[0-9a-f]{4,64}", name):
        raise ContainerError(f"{name} is an image id: name where it goes, "
                             "'mini-engine push IMAGE REGISTRY/NAME[:TAG]'")
    return reference.parse((dest or name).removeprefix("docker://"))


def _sources(store: Store, ref: Reference) -> dict[str, list[str]]:
    """For each blob, the other repositories of ``ref``'s registry it came
    from: the store names every image by where it was pulled from (or
    pushed to), and the blobs of that name's manifest are in that repository."""
    found: dict[str, set[str]] = {}
    for name, points in store.references().items():
        other = reference.parse(name)
        if other.domain != ref.domain or other.path == ref.path:
            continue
        view = store.image(points["Id"], points["Manifest"])
        for digest in (view["Id"], *(entry["digest"] for entry in view["Layers"])):
            found.setdefault(digest, set()).add(other.path)
    return {digest: sorted(paths) for digest, paths in found.items()}


def push(store: Store, name: str, dest: str | None = None, insecure: bool = False,
         say: Any = print) -> str:
    """Push the image ``name`` to ``dest`` (default: ``name`` itself); its manifest's digest."""
    ref = _destination(name, dest)
    view = store.lookup(name)
    digest: str = view["Manifest"]
    if ref.digest and ref.digest != digest:
        raise ContainerError(f"{ref}: the image's manifest is {digest}, not the digest named")
    manifest_bytes = store.read_blob(digest)
    manifest = Manifest.parse(manifest_bytes)
    blobs = [*manifest.layers, manifest.config]
    for blob in blobs:  # everything at hand before the registry hears of us
        if not store.has_blob(blob.digest):
            raise ImageError(f"{name}: blob {blob.digest[:19]} is not in the store; cannot push")
    sources = _sources(store, ref)
    mounting = sorted({path for blob in blobs for path in sources.get(blob.digest, [])})
    scope = " ".join([f"repository:{ref.path}:pull,push", *(f"repository:{p}:pull" for p in mounting)])
    client = Client(ref.domain, store.root, insecure=insecure)
    say(f"The push refers to repository [{ref.name}]")
    for blob in blobs:
        outcome = send_blob(client, store, ref, blob, sources.get(blob.digest, []), scope)
        say(f"{blob.digest[7:19]}: {outcome}")
    with client.request(f"{ref.path}/manifests/{ref.digest or ref.tag}", scope=scope, method="PUT",
                        data=manifest_bytes, headers={"Content-Type": manifest.media_type}) as response:
        answered = response.headers.get("Docker-Content-Digest")
    if answered and answered != digest:
        raise RegistryError(f"{ref.domain}: the registry took the manifest as {answered[:19]}, "
                            f"not {digest[:19]}")
    say(f"{ref.tag or ref.digest}: digest: {digest} size: {len(manifest_bytes)}")
    return digest


# [book:send-blob]
def send_blob(client: Client, store: Store, ref: Reference, blob: Descriptor, sources: list[str],
              scope: str) -> str:
    """Make the registry have ``blob`` in ``ref``'s repository; say how it came to."""
    blobs = f"{ref.path}/blobs"
    head = client.request(f"{blobs}/{blob.digest}", scope=scope, method="HEAD", missing_ok=True)
    if head is not None:
        head.close()
        return "Layer already exists"
    location = None
    if sources:
        query = urllib.parse.urlencode({"mount": blob.digest, "from": sources[0]})
        with client.request(f"{blobs}/uploads/?{query}", scope=scope, method="POST", data=b"") as response:
            if response.status == 201:
                return f"Mounted from {sources[0]}"
            location = response.headers.get("Location")  # 202: not there; upload here instead
    if location is None:
        with client.request(f"{blobs}/uploads/", scope=scope, method="POST", data=b"") as response:
            location = response.headers.get("Location")
    with open(store.blob_path(blob.digest), "rb") as f:
        if blob.size > CHUNK:
            offset = 0
            while chunk := f.read(CHUNK):
                if not location:
                    break
                headers = {**OCTETS, "Content-Range": f"{offset}-{offset + len(chunk) - 1}"}
                with client.request(location, scope=scope, method="PATCH", data=chunk,
                                    headers=headers) as response:
                    location = response.headers.get("Location")
                offset += len(chunk)
            body = b""
        else:
            body = f.read()
    if not location:
        raise RegistryError(f"{client.host}: the registry gave no upload Location for {blob.digest[:19]}")
    closing = location + ("&" if "?" in location else "?") + urllib.parse.urlencode({"digest": blob.digest})
    with client.request(closing, scope=scope, method="PUT", data=body, headers=OCTETS) as response:
        if response.status != 201:
            raise RegistryError(f"{client.host}: blob {blob.digest[:19]}: HTTP {response.status}, not 201")
    return "Pushed"
# [/book:send-blob]
