"""Stage 5: a registry that lies, breaks off, stalls or redirects: clear errors, nothing stored.

The hostile registry is a small HTTP server in this file, on 127.0.0.1
(and a second one on 127.0.0.2, "another host", for redirects). It speaks
just enough of the distribution protocol, with a bearer-token challenge,
and misbehaves in one way per repository name.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import Engine

pytestmark = pytest.mark.stage(5)

TOKEN = "hostile-test-token"


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _layer() -> tuple[bytes, bytes]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"hello\n"))
    return raw.getvalue(), gzip.compress(raw.getvalue(), mtime=0)


TAR, LAYER = _layer()
CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/hello"]},
                     "rootfs": {"type": "layers", "diff_ids": [sha(TAR)]}}).encode()


def _escaping() -> bytes:
    """A plain tar: a file, then a member that climbs out of the layer."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in (("ok", b"x" * 1000), ("../escape", b"escaped\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


ESCAPING = _escaping()
# The same length, one byte of the first file's content changed: still a tar
# that climbs out, but no longer the blob its manifest names.
TAMPERED = ESCAPING[:600] + bytes([ESCAPING[600] ^ 1]) + ESCAPING[601:]
ESCAPING_CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/hello"]},
                              "rootfs": {"type": "layers", "diff_ids": [sha(ESCAPING)]}}).encode()


def manifest(layer_digest: str = sha(LAYER), layer_size: int = len(LAYER), config: bytes = CONFIG,
             media_type: str = "application/vnd.oci.image.layer.v1.tar+gzip") -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config),
                   "size": len(config)},
        "layers": [{"mediaType": media_type, "digest": layer_digest, "size": layer_size}],
    }).encode()


class Hostile(BaseHTTPRequestHandler):
    server: HostileServer

    def log_message(self, *args: object) -> None:
        pass

    def send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None,
             length: int | None = None) -> None:
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        if self.server.other:  # the other host: blob storage, which must get no token
            self.send(200, LAYER)
            return
        if self.path.startswith("/token"):
            self.send(200, json.dumps({"token": TOKEN}).encode())
            return
        if "/filerealm/" in self.path:  # a realm that would make us read our own file
            self.send(401, b"", {"WWW-Authenticate": 'Bearer realm="file:///etc/hostname#",service="x"'})
            return
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            realm = f"http://127.0.0.1:{self.server.server_port}/token"
            self.send(401, b"", {"WWW-Authenticate": f'Bearer realm="{realm}",service="hostile"'})
            return
        if self.path == "/v2/":
            self.send(200, b"{}")
            return
        _, _, name, kind, ref = self.path.split("/", 4)
        if kind == "manifests":
            self.manifest(name)
        else:
            self.blob(name, ref)

    def manifest(self, name: str) -> None:
        mt = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        if name == "huge":
            self.send(200, b" " * (5 << 20), mt)
        elif name == "denied":
            self.send(403, b"")
        elif name == "busy":
            self.send(429, b"", {"Retry-After": "17"})
        elif name == "slow":
            time.sleep(3)
            self.send(200, manifest(), mt)
        elif name == "long":
            self.send(200, manifest(layer_size=len(LAYER) - 10), mt)
        elif name in ("escape", "escapetampered"):
            self.send(200, manifest(sha(ESCAPING), len(ESCAPING), ESCAPING_CONFIG,
                                    "application/vnd.oci.image.layer.v1.tar"), mt)
        else:
            self.send(200, manifest(), mt)

    def blob(self, name: str, digest: str) -> None:
        if digest == sha(CONFIG):
            self.send(200, CONFIG)
        elif digest == sha(ESCAPING_CONFIG):
            self.send(200, ESCAPING_CONFIG)
        elif name == "escape":
            self.send(200, ESCAPING)
        elif name == "escapetampered":
            self.send(200, TAMPERED)
        elif name == "wrongdigest":
            self.send(200, LAYER[:-1] + bytes([LAYER[-1] ^ 1]))
        elif name == "truncated":  # promises all, sends half, hangs up
            self.send(200, LAYER[: len(LAYER) // 2], length=len(LAYER))
            self.close_connection = True
        elif name == "redirect":
            other = self.server.partner
            self.send(307, b"", {"Location": f"http://127.0.0.2:{other.server_port}/storage/{digest}"})
        else:
            self.send(200, LAYER)


class HostileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, other: bool = False) -> None:
        super().__init__((host, 0), Hostile)
        self.other = other
        self.seen: list[tuple[str, str | None]] = []
        self.partner: HostileServer | None = None


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    main, storage = HostileServer("127.0.0.1"), HostileServer("127.0.0.2", other=True)
    main.partner = storage
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (main, storage)]
    for t in threads:
        t.start()
    yield main
    for s in (main, storage):
        s.shutdown()
        s.server_close()


@pytest.fixture
def fresh(tmp_path: Path) -> Engine:
    return Engine(tmp_path / "lib", tmp_path / "run")


def pull(engine: Engine, hostile: HostileServer, name: str, **env: str) -> tuple[int, str]:
    ref = f"127.0.0.1:{hostile.server_port}/{name}:1"
    result = engine("--stage", "5", "pull", "-q", ref, env=dict(engine.env, **env))
    assert len(result.stderr.splitlines()) <= 1 and "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stderr.strip()


def nothing_stored(engine: Engine) -> bool:
    return all(not (engine.root / d).exists() or not any((engine.root / d).rglob("*"))
               for d in ("images", "layers", "blobs/sha256"))


def test_a_good_pull_through_the_token_dance(fresh: Engine, hostile: HostileServer) -> None:
    code, err = pull(fresh, hostile, "good")
    assert code == 0, err
    assert any(path.startswith("/token?") for path, _ in hostile.seen)


@pytest.mark.parametrize(("name", "message"), [
    ("wrongdigest", "has digest"),
    ("long", "is larger than its descriptor's"),
    ("truncated", "broke off 3 times"),
    ("huge", "is larger than 4194304 bytes; refused"),
    ("denied", "access denied (403)"),
    ("busy", "too many requests (429): retry after 17 seconds"),
    ("filerealm", "refusing the token realm 'file:///etc/hostname#' (only https, or http for a registry "
                  "on loopback)"),
])
def test_a_lying_registry_is_refused(fresh: Engine, hostile: HostileServer, name: str, message: str) -> None:
    code, err = pull(fresh, hostile, name)
    assert code == 125
    assert err.startswith("mini-engine: ") and message in err
    assert nothing_stored(fresh)


def test_a_layer_unpacked_as_it_arrives_keeps_the_rules(fresh: Engine, hostile: HostileServer) -> None:
    """A pull unpacks a layer while it downloads: a member that climbs out is
    refused as in a load, and nothing of the blob or the layer is kept."""
    code, err = pull(fresh, hostile, "escape")
    layer = f"layer {sha(ESCAPING)[:19]}"
    assert (code, err) == (125, f"mini-engine: {layer}: member '../escape' leaves the layer (..)")
    assert nothing_stored(fresh)
    assert not list(fresh.root.rglob("escape"))


def test_a_blob_not_named_by_its_manifest_is_refused_as_such(fresh: Engine, hostile: HostileServer) -> None:
    """The same climbing layer, one byte of content changed: the unpack fails
    first, but what is reported is the blob that is not what the manifest names."""
    code, err = pull(fresh, hostile, "escapetampered")
    assert (code, err) == (125, f"mini-engine: blob {sha(ESCAPING)[:19]} has digest {sha(TAMPERED)[:19]}: "
                                "the content is not what the manifest names")
    assert nothing_stored(fresh)


def test_a_slow_registry_times_out(fresh: Engine, hostile: HostileServer) -> None:
    code, err = pull(fresh, hostile, "slow", MINI_ENGINE_REGISTRY_TIMEOUT="1")
    assert code == 125 and "timed out after 1 s" in err
    assert nothing_stored(fresh)


def test_a_redirect_to_another_host_carries_no_token(fresh: Engine, hostile: HostileServer) -> None:
    code, err = pull(fresh, hostile, "redirect")
    assert code == 0, err
    storage = hostile.partner
    assert storage is not None and storage.seen
    assert all(auth is None for _, auth in storage.seen)
    assert any(auth == f"Bearer {TOKEN}" for path, auth in hostile.seen if "/blobs/" in path)
