"""Pulling images: the OCI distribution protocol, over HTTP, with the standard library.

Chapter 05 reads this module. Spec: distribution-spec spec.md ("Pulling"),
and docker's token authentication (docs/spec/auth/token.md).

A pull is three kinds of GET under ``/v2/<name>/``:

1. ``manifests/<tag or digest>``, with an Accept header listing the media
   types we understand; an *index* (a list of platforms) is followed to
   this machine's platform, and its manifest fetched by digest;
2. ``blobs/<config digest>``: the image config;
3. ``blobs/<layer digest>`` for each layer not in the store yet, in
   parallel, each checked against its digest and size while it streams.

Then the store records the image, as ``load`` does. A 401 answer carries
a ``WWW-Authenticate`` challenge: ``Bearer realm=...,service=...,scope=...``
sends us to a token server (with the user's credentials, if any), whose
token goes in the next request; ``Basic`` takes the credentials directly.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

from mini_engine.base.errors import ContainerError
from mini_engine.images import reference
from mini_engine.images.imageconfig import NoPlatform, choose_platform, host_platform
from mini_engine.images.reference import Reference
from mini_engine.images.registries import Endpoint
from mini_engine.images.store import (
    INDEX_DOCKER,
    INDEX_OCI,
    JSON_LIMIT,
    MANIFEST_DOCKER,
    MANIFEST_OCI,
    Descriptor,
    ImageError,
    Manifest,
    ShortBlob,
    Store,
    check_config,
    parse_json,
)

ACCEPT = ", ".join((MANIFEST_OCI, MANIFEST_DOCKER, INDEX_OCI, INDEX_DOCKER))
DOCKER_HUB = "registry-1.docker.io"
# Seconds without a byte before a request fails (MINI_ENGINE_REGISTRY_TIMEOUT to change).
TIMEOUT = float(os.environ.get("MINI_ENGINE_REGISTRY_TIMEOUT", "30"))
RETRIES = 3         # a blob download that breaks off is tried this many times
PARALLEL = 4        # layers downloading at once


class RegistryError(ContainerError):
    """The registry refused, failed, or sent something we cannot trust."""


@dataclass
class Credentials:
    username: str
    password: str


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: docker talks plain HTTP to these."""
    name = urllib.parse.urlsplit(f"//{host}").hostname or host
    try:
        return name == "localhost" or ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def credentials_for(registry: str, root: str) -> Credentials | None:
    """From ``mini-engine login``, podman's auth.json or docker's config.json, in that order."""
    home = os.path.expanduser("~")
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    for path in (os.path.join(root, "auth.json"), os.path.join(runtime, "containers", "auth.json"),
                 os.path.join(home, ".docker", "config.json")):
        try:
            with open(path) as f:
                auths = json.load(f).get("auths", {})
        except (OSError, ValueError, AttributeError):
            continue
        if not isinstance(auths, dict):
            continue
        for key in (registry, f"https://{registry}", f"https://{registry}/v1/",
                    *(["https://index.docker.io/v1/", "docker.io"] if registry == DOCKER_HUB else [])):
            entry = auths.get(key)
            if isinstance(entry, dict) and isinstance(entry.get("auth"), str):
                try:
                    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
                    raise RegistryError(f"{path}: the credentials for {registry} are not base64") from None
                return Credentials(user, password)
    return None


@dataclass
class Client:
    """One registry, with the token it earned so far."""

    host: str            # as in the reference: "127.0.0.1:5000", "quay.io"
    root: str            # the engine's root, where `login` keeps credentials
    insecure: bool = False
    quiet: bool = True
    token: str | None = None
    basic: str | None = None
    credentials: Credentials | None = None  # given to `login`, before they are saved
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        host = DOCKER_HUB if self.host == reference.DEFAULT_DOMAIN else self.host
        scheme = "http" if self.insecure or is_loopback(host) else "https"
        return f"{scheme}://{host}/v2/"

    # [book:request]
    def request(self, path: str, accept: str | None = None, scope: str = "", method: str = "GET",
                data: bytes | None = None, headers: dict[str, str] | None = None,
                missing_ok: bool = False) -> Any:
        """``method`` ``path`` under /v2/ (or a URL the registry gave, as an upload's
        Location), answering one auth challenge; the open response (None for a 404
        with ``missing_ok``)."""
        url = urllib.parse.urljoin(self.base, path)
        ours = urllib.parse.urlsplit(url).netloc == urllib.parse.urlsplit(self.base).netloc
        for attempt in (1, 2):
            req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
            if accept:
                req.add_header("Accept", accept)
            with self.lock:
                # Unredirected, and only to the registry itself: a redirect
                # (or an upload's Location) to blob storage on another host
                # must not carry our token there.
                if ours and self.token:
                    req.add_unredirected_header("Authorization", f"Bearer {self.token}")
                elif ours and self.basic:
                    req.add_unredirected_header("Authorization", f"Basic {self.basic}")
            try:
                return urllib.request.urlopen(req, timeout=TIMEOUT)
            except urllib.error.HTTPError as exc:
                if exc.code == 404 and missing_ok:
                    exc.close()
                    return None
                if exc.code != 401 or attempt == 2:
                    raise self.http_error(exc, urllib.parse.urlsplit(path).path.removeprefix("/v2/")) from None
                self.authenticate(exc.headers.get("WWW-Authenticate", ""), scope)
            except (urllib.error.URLError, OSError) as exc:
                raise self.network_error(exc) from None
        raise AssertionError("the second attempt returns or raises")
    # [/book:request]

    # [book:authenticate]
    def authenticate(self, challenge: str, scope: str) -> None:
        """Answer ``WWW-Authenticate``: fetch a bearer token, or use Basic credentials."""
        scheme, _, params = challenge.partition(" ")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        creds = self.credentials or credentials_for(
            DOCKER_HUB if self.host == reference.DEFAULT_DOMAIN else self.host, self.root)
        basic = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode() if creds else None
        if scheme.lower() == "basic":
            if basic is None:
                raise RegistryError(f"{self.host} asks for a password: log in with "
                                    f"'mini-engine login {self.host}'")
            with self.lock:
                self.basic = basic
            return
        if scheme.lower() != "bearer" or "realm" not in fields:
            raise RegistryError(f"{self.host}: unsupported authentication challenge {challenge!r}")
        realm = urllib.parse.urlparse(fields["realm"])
        plain_ok = self.insecure or is_loopback(self.host)
        if realm.scheme != "https" and not (realm.scheme == "http" and plain_ok):
            # file:// would read our own files for the registry; http would
            # send the password in the clear.
            raise RegistryError(f"{self.host}: refusing the token realm {fields['realm']!r} "
                                "(only https, or http for a registry on loopback)")
        # One scope= for each repository: a push that mounts a blob from
        # another repository needs "pull" there too.
        query = {"service": [fields.get("service", "")], "scope": (scope or fields.get("scope", "")).split()}
        req = urllib.request.Request(f"{fields['realm']}?{urllib.parse.urlencode(query, doseq=True)}")
        if basic:
            req.add_unredirected_header("Authorization", f"Basic {basic}")
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as response:
                answer = json.loads(response.read(JSON_LIMIT))
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise RegistryError(f"{self.host}: the token server refused us ({exc.code}): "
                                    f"log in with 'mini-engine login {self.host}'") from None
            raise RegistryError(f"{self.host}: token server: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RegistryError(f"{self.host}: token server {fields['realm']}: {exc}") from None
        token = (answer.get("token") or answer.get("access_token")) if isinstance(answer, dict) else None
        if not isinstance(token, str):
            raise RegistryError(f"{self.host}: the token server sent no token")
        with self.lock:
            self.token = token
    # [/book:authenticate]

    def http_error(self, exc: urllib.error.HTTPError, path: str) -> RegistryError:
        code = exc.code
        if code in (401, 403):
            return RegistryError(f"{self.host}: access denied ({code}) to {path}: log in with "
                                 f"'mini-engine login {self.host}', or check the name")
        if code == 404:
            return RegistryError(f"{self.host}: not found (404): {path}")
        if code == 429:
            wait = exc.headers.get("Retry-After", "a while")
            return RegistryError(f"{self.host}: too many requests (429): retry after {wait} seconds")
        try:  # the spec's error body: {"errors": [{"code": ..., "message": ...}]}
            errors = json.loads(exc.read(JSON_LIMIT))["errors"]
            said = "; ".join(f"{e['code']}: {e.get('message', '')}".rstrip(": ") for e in errors)
        except (OSError, ValueError, TypeError, KeyError, http.client.HTTPException):
            said = ""
        return RegistryError(f"{self.host}: HTTP {code} for {path}" + (f" ({said})" if said else ""))

    def network_error(self, exc: Exception) -> RegistryError:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, socket.gaierror):
            return RegistryError(f"{self.host}: unknown host")
        if isinstance(reason, ConnectionRefusedError):
            return RegistryError(f"{self.host}: connection refused (is the registry running?)")
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return RegistryError(f"{self.host}: timed out after {TIMEOUT:g} s")
        text = str(reason)
        if "SSL" in text or "certificate" in text:
            return RegistryError(f"{self.host}: TLS failed ({text}); for a test registry use "
                                 "--tls-verify=false")
        return RegistryError(f"{self.host}: {text}")


def _read_json(response: Any, what: str) -> tuple[bytes, str]:
    try:
        with response:
            data = response.read(JSON_LIMIT + 1)
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    except (OSError, http.client.HTTPException) as exc:
        raise RegistryError(f"reading the {what} failed: {exc or type(exc).__name__}") from None
    if len(data) > JSON_LIMIT:
        raise RegistryError(f"{what} is larger than {JSON_LIMIT} bytes; refused")
    return data, media_type


# [book:pull-where]
def pull(store: Store, name: str, platform: str | None = None, insecure: bool = False,
         quiet: bool = False) -> dict[str, Any]:
    """Pull ``name`` into ``store``; return its image record. A short name is tried in each
    search registry in turn, a registry through its mirrors first (registries.conf), and
    only what the policy lets in is pulled (policy.json)."""
    from mini_engine.images import policy, registries

    conf = registries.load()
    _platform(platform)  # a mistyped --platform is one error, not one per registry
    failures: list[ContainerError] = []
    for ref in conf.candidates(name):
        try:
            policy.check(ref)
        except policy.Refused as refused:
            failures.append(refused)
            continue
        for endpoint in conf.endpoints(ref, insecure):
            try:
                return pull_from(store, ref, endpoint, platform, quiet)
            except RegistryError as exc:  # not there, or not reachable: the next place
                failures.append(exc)
    if len(failures) == 1:
        raise failures[0]
    raise RegistryError(f"{name}: " + "; ".join(str(f) for f in failures))
# [/book:pull-where]


# [book:pull]
def pull_from(store: Store, ref: Reference, endpoint: Endpoint, platform: str | None = None,
              quiet: bool = False) -> dict[str, Any]:
    """Pull ``ref`` from ``endpoint`` (its registry, or a mirror of it) into ``store``;
    return its image record, under the name ``ref``."""
    source = Reference(endpoint.host, endpoint.path, ref.tag, ref.digest)  # where its bytes come from
    client = Client(endpoint.host, store.root, insecure=endpoint.insecure)
    scope = f"repository:{source.path}:pull"
    wanted = _platform(platform)
    data, media_type = _read_json(client.request(f"{source.path}/manifests/{ref.digest or ref.tag}",
                                                 ACCEPT, scope), "manifest")
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if ref.digest and digest != ref.digest:
        raise RegistryError(f"{ref}: the registry sent a manifest with digest {digest[:19]}...")
    document = parse_json(data, "manifest")
    media_type = document.get("mediaType") or media_type
    if media_type in (INDEX_OCI, INDEX_DOCKER):
        entry = _choose(document, wanted, str(ref))
        data, media_type = _read_json(client.request(f"{source.path}/manifests/{entry.digest}", ACCEPT,
                                                     scope), "manifest")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest != entry.digest:
            raise RegistryError(f"{ref}: the manifest for {wanted['os']}/{wanted['architecture']} "
                                "does not match its digest in the index")
        media_type = parse_json(data, "manifest").get("mediaType") or media_type
    manifest = Manifest.parse(data, media_type)
    with store.lock():
        try:
            store.put_bytes(data, manifest.media_type)
            blobs = [manifest.config, *manifest.layers]
            missing = list({b.digest: b for b in blobs if not store.has_blob(b.digest)}.values())
            progress = Progress(missing, quiet or not sys.stderr.isatty())
            if manifest.config in missing:  # first: its diff_ids name the layers
                fetch_blob(client, store, source, manifest.config, scope, progress)
            diff_ids = check_config(parse_json(store.read_blob(manifest.config.digest), "image config"),
                                    len(manifest.layers))
            # A layer not here yet is unpacked as its blob comes in; all of
            # them at once, as skopeo and containerd fetch them.
            unpack_on_the_way: dict[str, str] = {}
            for blob, diff_id in zip(manifest.layers, diff_ids, strict=True):
                if not store.has_layer(diff_id) and diff_id not in unpack_on_the_way.values():
                    unpack_on_the_way[blob.digest] = diff_id
            layers = [b for b in missing if b != manifest.config]
            with ThreadPoolExecutor(PARALLEL) as pool:
                list(pool.map(lambda b: fetch_blob(client, store, source, b, scope, progress,
                                                   unpack_on_the_way.get(b.digest)), layers))
            progress.done()
            # The name it was pulled by points at this manifest: a tag, or
            # NAME@sha256:..., which keeps the manifest until it is removed.
            record = store.add_image(digest, [str(ref)])
        except BaseException:
            # A pull that fails leaves nothing: what it fetched so far goes.
            store.collect_garbage()
            raise
    _check_platform(store, record, wanted)
    return record
# [/book:pull]


def _check_platform(store: Store, record: dict[str, Any], wanted: dict[str, str]) -> None:
    """A single image, not an index, has one platform, whatever was asked:
    keep it, and say so when it is not the one wanted, as podman does."""
    config = parse_json(store.read_blob(record["Id"]), "image config")
    has = {key: config.get(key) for key in wanted}
    if has != wanted:
        shown = "/".join(str(v) for v in has.values() if v)
        sys.stderr.write(f"mini-engine: warning: image platform ({shown}) does not match the "
                         f"expected platform ({'/'.join(wanted.values())})\n")


def _platform(text: str | None) -> dict[str, str]:
    want = host_platform()
    if text:
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ContainerError(f"--platform {text!r}: expected os/arch[/variant], e.g. linux/amd64")
        want = {"os": parts[0], "architecture": parts[1]}
        if len(parts) == 3:
            want["variant"] = parts[2]
    return want


def _choose(index: dict[str, Any], want: dict[str, str], name: str) -> Descriptor:
    """The index entry for the wanted platform (os, architecture, variant if asked)."""
    entries = index.get("manifests")
    if not isinstance(entries, list):
        raise ImageError(f"{name}: the index has no manifests list")
    try:
        return Descriptor.parse(choose_platform(entries, want, name), f"{name} index entry")
    except NoPlatform as exc:
        raise RegistryError(f"{exc}; choose one with --platform") from None


class Progress:
    """On a terminal, one line rewritten in place: each blob's share, and the total.
    Nothing when stderr is not a terminal, or with -q."""

    def __init__(self, blobs: list[Descriptor], quiet: bool) -> None:
        self.sizes = {b.digest: b.size for b in blobs}
        self.got = dict.fromkeys(self.sizes, 0)
        self.total = sum(self.sizes.values())
        self.quiet = quiet
        self.lock = threading.Lock()
        self.last = 0.0

    def add(self, digest: str, n: int) -> None:
        with self.lock:
            self.got[digest] = self.got.get(digest, 0) + n
            now = time.monotonic()
            if self.quiet or (now - self.last < 0.1 and self.got[digest] < self.sizes.get(digest, 0)):
                return
            self.last = now
            parts = [f"{d[7:19]} {100 * self.got[d] // max(size, 1):3d}%" for d, size in self.sizes.items()]
            done = sum(self.got.values())
            sys.stderr.write(f"\r{' | '.join(parts)} | {done / 1e6:.1f}/{self.total / 1e6:.1f} MB")
            sys.stderr.flush()

    def done(self) -> None:
        if not self.quiet and self.total:
            sys.stderr.write(f"\npulled {len(self.sizes)} blobs, {self.total / 1e6:.1f} MB\n")


class _Counting:
    """A response that tells the progress display how much it has read."""

    def __init__(self, raw: IO[bytes], progress: Progress, digest: str) -> None:
        self.raw, self.progress, self.digest = raw, progress, digest

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.progress.add(self.digest, len(data))
        return data


# [book:fetch-blob]
def fetch_blob(client: Client, store: Store, ref: Reference, blob: Descriptor, scope: str,
               progress: Progress, diff_id: str | None = None) -> None:
    """Stream one blob into the store, checked as it comes; retry a broken transfer.
    With ``diff_id``, the layer is unpacked from the stream on the way."""
    for attempt in range(1, RETRIES + 1):
        response = client.request(f"{ref.path}/blobs/{blob.digest}", scope=scope)
        try:
            with response:
                counting = _Counting(response, progress, blob.digest)
                if diff_id is None:
                    store.put_blob(counting, blob)
                else:
                    store.stream_layer(counting, blob, diff_id)
            return
        except (OSError, http.client.HTTPException, ShortBlob) as exc:
            # The connection broke off (or closed early): try again, a few times.
            if attempt == RETRIES:
                raise RegistryError(f"{client.host}: blob {blob.digest[:19]} broke off "
                                    f"{RETRIES} times ({exc}); giving up") from None
# [/book:fetch-blob]


# [book:login]
def login(root: str, registry: str, username: str, password: str, insecure: bool = False) -> None:
    """Check the credentials against ``registry`` (GET /v2/), then keep them, as docker does."""
    client = Client(registry, root, insecure=insecure, credentials=Credentials(username, password))
    client.request("").close()
    if not (client.token or client.basic):
        raise RegistryError(f"{registry} asked for no credentials; nothing saved")
    entry = base64.b64encode(f"{username}:{password}".encode()).decode()
    update_auths(root, registry, {"auth": entry})
# [/book:login]


def update_auths(root: str, registry: str, entry: dict[str, str] | None) -> bool:
    """Set (or with None, remove) a registry's entry of auth.json, written
    0600 and atomically; False if there was nothing to remove."""
    path = os.path.join(root, "auth.json")
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        saved = {}
    auths = saved.setdefault("auths", {})
    if entry is None and registry not in auths:
        return False
    if entry is None:
        del auths[registry]
    else:
        auths[registry] = entry
    os.makedirs(root, exist_ok=True)
    fd = os.open(f"{path}.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(saved, f, indent=2)
    os.rename(f"{path}.tmp", path)
    return True
