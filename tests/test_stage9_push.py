"""Stage 9: push, the distribution protocol's upload, to a real registry (docker-registry on 127.0.0.1).

What was pushed is read back by skopeo and pulled back by mini-engine;
what the engine asked is read from the registry's access log.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PODMAN_NEEDS_V2, Engine, ImageFiles
from fixtures.registry import Registry, TokenServer, free_port

pytestmark = pytest.mark.stage(9)

SINGLE_SAYS = "from-image 1000:1000 /srv/app /home/app\n"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, test_images: ImageFiles) -> Iterator[Registry]:
    reg = Registry(tmp_path_factory.mktemp("registry"))
    reg.push(f"oci:{test_images.layout}:single", "test/single:1")  # the source of the mount tests
    yield reg
    reg.stop()


@pytest.fixture
def engine_here(tmp_path: Path, test_images: ImageFiles) -> Engine:
    """An engine with a store of its own, holding example.test/single:1 (one layer)."""
    engine = Engine(tmp_path / "lib", tmp_path / "run")
    loaded = engine("load", "-q", "-i", str(test_images.single))
    assert loaded.returncode == 0, loaded.stderr
    return engine


def requests(registry: Registry, since: int = 0) -> list[tuple[str, str, int]]:
    """(method, path, status) of each request in the registry's access log, from line ``since`` on."""
    registry.log.flush()
    lines = (registry.work / "registry.log").read_text().splitlines()[since:]
    return [(m[1], m[2], int(m[3])) for line in lines
            if (m := re.search(r'"([A-Z]+) (/v2/\S*) HTTP/[\d.]+" (\d{3})', line))]


def log_length(registry: Registry) -> int:
    registry.log.flush()
    return len((registry.work / "registry.log").read_text().splitlines())


def skopeo_inspect(name: str, *flags: str) -> dict:
    result = subprocess.run(["skopeo", "inspect", "--tls-verify=false", *flags, f"docker://{name}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def layer_digests(engine: Engine, name: str) -> list[str]:
    inspected = engine("inspect", name)
    assert inspected.returncode == 0, inspected.stderr
    return [entry["digest"] for entry in json.loads(inspected.stdout)[0]["Layers"]]


def test_push_then_skopeo_and_a_pull_read_it_back(engine_here: Engine, registry: Registry,
                                                  tmp_path: Path) -> None:
    dest = f"{registry.host}/pushed/single:1"
    (layer,) = layer_digests(engine_here, "example.test/single:1")
    since = log_length(registry)
    pushed = engine_here("push", "example.test/single:1", dest)
    assert pushed.returncode == 0, pushed.stderr
    lines = pushed.stdout.splitlines()
    manifest = engine_here("inspect", "--format", "{{.Manifest}}", "example.test/single:1").stdout.strip()
    assert lines[:2] == [f"The push refers to repository [{registry.host}/pushed/single]",
                         f"{layer[7:19]}: Pushed"]
    assert re.fullmatch(r"[0-9a-f]{12}: Pushed", lines[2])  # the config
    assert lines[3] == f"1: digest: {manifest} size: {len(skopeo_raw(dest))}"
    # Small blobs go whole: POST, then PUT with the digest; no PATCH.
    methods = [(method, status) for method, path, status in requests(registry, since) if "/blobs/" in path]
    assert methods == [("HEAD", 404), ("POST", 202), ("PUT", 201)] * 2
    # skopeo reads the same manifest, byte for byte, and the same layers.
    assert hashlib.sha256(skopeo_raw(dest)).hexdigest() == manifest[7:]
    seen = skopeo_inspect(dest)
    assert (seen["Digest"], seen["Layers"], seen["Architecture"]) == (manifest, [layer], "amd64")
    # Another engine pulls it and runs it.
    other = Engine(tmp_path / "lib2", tmp_path / "run2")
    assert other("pull", "-q", dest).returncode == 0
    ran = other("run", "--rm", dest)
    assert ran.stdout == SINGLE_SAYS, ran.stderr


def skopeo_raw(name: str, *flags: str) -> bytes:
    result = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", *flags, f"docker://{name}"],
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_second_push_sends_no_blob_again(engine_here: Engine, registry: Registry) -> None:
    dest = f"{registry.host}/again/single:1"
    assert engine_here("push", "-q", "example.test/single:1", dest).returncode == 0
    since = log_length(registry)
    again = engine_here("push", "example.test/single:1", f"{registry.host}/again/single:2")
    assert again.returncode == 0, again.stderr
    name = "example.test/single:1"
    blobs = [*layer_digests(engine_here, name), _config_digest(engine_here, name)]
    assert again.stdout.splitlines()[1:3] == [f"{d[7:19]}: Layer already exists" for d in blobs]
    asked = requests(registry, since)
    assert [(m, s) for m, p, s in asked if "/blobs/" in p] == [("HEAD", 200), ("HEAD", 200)]
    manifests = [(m, p, s) for m, p, s in asked if "/manifests/" in p]
    assert manifests == [("PUT", "/v2/again/single/manifests/2", 201)]


def _config_digest(engine: Engine, name: str) -> str:
    return engine("inspect", "--format", "{{.Id}}", name).stdout.strip()


def test_a_large_blob_goes_in_chunks(engine_here: Engine, registry: Registry, tmp_path: Path) -> None:
    dest = f"{registry.host}/chunked/single:1"
    (layer,) = layer_digests(engine_here, "example.test/single:1")
    size = json.loads(engine_here("inspect", "example.test/single:1").stdout)[0]["Layers"][0]["size"]
    chunk = size // 3 + 1  # three chunks, the last one shorter
    since = log_length(registry)
    pushed = engine_here("push", "example.test/single:1", dest,
                         env={**engine_here.env, "MINI_ENGINE_PUSH_CHUNK": str(chunk)})
    assert pushed.returncode == 0, pushed.stderr
    asked = [(m, s) for m, p, s in requests(registry, since) if "/blobs/" in p]
    # The layer: POST, three PATCHes, a closing PUT; the config (small) whole.
    assert asked == [("HEAD", 404), ("POST", 202), ("PATCH", 202), ("PATCH", 202), ("PATCH", 202), ("PUT", 201),
                     ("HEAD", 404), ("POST", 202), ("PUT", 201)]
    assert skopeo_inspect(dest)["Layers"] == [layer]
    other = Engine(tmp_path / "lib2", tmp_path / "run2")
    assert other("pull", "-q", dest).returncode == 0
    assert other("run", "--rm", dest).stdout == SINGLE_SAYS


def test_a_blob_of_another_repository_is_mounted(tmp_path: Path, registry: Registry) -> None:
    """Pulled from test/single, pushed to mounted/single: the registry links what it has."""
    engine = Engine(tmp_path / "lib", tmp_path / "run")
    source = f"{registry.host}/test/single:1"
    assert engine("pull", "-q", source).returncode == 0
    since = log_length(registry)
    pushed = engine("push", source, f"{registry.host}/mounted/single:1")
    assert pushed.returncode == 0, pushed.stderr
    (layer,) = layer_digests(engine, source)
    config = _config_digest(engine, source)
    assert pushed.stdout.splitlines()[1:3] == [f"{layer[7:19]}: Mounted from test/single",
                                               f"{config[7:19]}: Mounted from test/single"]
    asked = [(m, p, s) for m, p, s in requests(registry, since) if "/blobs/" in p]
    assert [(m, s) for m, p, s in asked] == [("HEAD", 404), ("POST", 201)] * 2
    assert asked[1][1] == f"/v2/mounted/single/blobs/uploads/?mount=sha256%3A{layer[7:]}&from=test%2Fsingle"
    assert skopeo_inspect(f"{registry.host}/mounted/single:1")["Layers"] == [layer]


def test_a_mount_the_registry_cannot_make_falls_back_to_an_upload(engine_here: Engine,
                                                                  registry: Registry) -> None:
    """Named as if it came from nowhere/single, which the registry has never seen: 202, then upload."""
    assert engine_here("tag", "example.test/single:1", f"{registry.host}/nowhere/single:1").returncode == 0
    since = log_length(registry)
    pushed = engine_here("push", f"{registry.host}/nowhere/single:1", f"{registry.host}/fallback/single:1")
    assert pushed.returncode == 0, pushed.stderr
    assert [line.split(": ")[1] for line in pushed.stdout.splitlines()[1:3]] == ["Pushed", "Pushed"]
    asked = [(m, s) for m, p, s in requests(registry, since) if "/blobs/" in p]
    assert asked == [("HEAD", 404), ("POST", 202), ("PUT", 201)] * 2
    assert all("mount=" in p for m, p, s in requests(registry, since) if m == "POST")
    assert skopeo_inspect(f"{registry.host}/fallback/single:1")["Layers"] == \
        layer_digests(engine_here, "example.test/single:1")


def _store_files(engine: Engine) -> dict[str, bytes]:
    out = {}
    for directory, _, names in os.walk(engine.root):
        for name in names:
            path = Path(directory, name)
            if path.name != ".lock" and not path.is_symlink():
                out[str(path.relative_to(engine.root))] = path.read_bytes()
    return out


def test_basic_auth_login_then_push(engine_here: Engine, tmp_path: Path) -> None:
    work = tmp_path / "private"
    work.mkdir()
    private = Registry(work, users={"alice": "wonderland"})
    try:
        dest = f"{private.host}/team/app:1"
        before = _store_files(engine_here)
        denied = engine_here("push", "example.test/single:1", dest)
        assert (denied.returncode, denied.stderr) == (125, f"mini-engine: {private.host} asks for a password: "
                                                           f"log in with 'mini-engine login {private.host}'\n")
        assert _store_files(engine_here) == before
        ok = engine_here("login", "-u", "alice", "--password-stdin", private.host, input="wonderland\n")
        assert ok.returncode == 0, ok.stderr
        pushed = engine_here("push", "-q", "example.test/single:1", dest)
        assert (pushed.returncode, pushed.stdout, pushed.stderr) == (0, "", "")
        seen = skopeo_inspect(dest, "--creds", "alice:wonderland")
        assert seen["Layers"] == layer_digests(engine_here, "example.test/single:1")
    finally:
        private.stop()


def test_token_auth_and_a_mount_ask_for_both_repositories(tmp_path: Path, test_images: ImageFiles) -> None:
    """Bearer tokens carry scopes: the mount needs push here and pull there, in one token."""
    work = tmp_path / "token"
    work.mkdir()
    tokens = TokenServer(work, {"alice": "wonderland"})
    private = Registry(work, token=tokens.registry_config)
    engine = Engine(tmp_path / "lib", tmp_path / "run")
    try:
        private.push(f"oci:{test_images.layout}:single", "team/app:1", creds="alice:wonderland")
        login = engine("login", "-u", "alice", "--password-stdin", private.host, input="wonderland\n")
        assert login.returncode == 0, login.stderr
        assert engine("pull", "-q", f"{private.host}/team/app:1").returncode == 0
        pushed = engine("push", f"{private.host}/team/app:1", f"{private.host}/team/copy:1")
        assert pushed.returncode == 0, pushed.stderr
        assert pushed.stdout.splitlines()[1].endswith(": Mounted from team/app")
        assert skopeo_inspect(f"{private.host}/team/copy:1", "--creds", "alice:wonderland")["Layers"] == \
            layer_digests(engine, f"{private.host}/team/app:1")
    finally:
        private.stop()
        tokens.stop()


@pytest.mark.parametrize(("args", "message"), [
    (["example.test/nothing:1", "{host}/x:1"],
     "image \"example.test/nothing:1\" is not here (example.test/nothing:1): load it with "
     "'mini-engine load -i FILE' (see 'mini-engine images')"),
    (["example.test/single:1", "127.0.0.1:{closed}/x:1"],
     "127.0.0.1:{closed}: connection refused (is the registry running?)"),
    (["example.test/single:1", "{host}/Bad_Name:1"],
     "invalid reference format: repository name must be lowercase: '{host}/Bad_Name:1'"),
    (["{id}"], "{id} is an image id: name where it goes, 'mini-engine push IMAGE REGISTRY/NAME[:TAG]'"),
])
def test_push_failures_are_one_line_and_leave_nothing(engine_here: Engine, registry: Registry,
                                                      args: list[str], message: str) -> None:
    values = {"host": registry.host, "closed": free_port(),
              "id": _config_digest(engine_here, "example.test/single:1")[7:19]}
    before = _store_files(engine_here)
    result = engine_here("push", *(a.format(**values) for a in args))
    assert (result.returncode, result.stdout.count("Pushed")) == (125, 0)
    assert result.stderr == f"mini-engine: {message.format(**values)}\n"
    assert _store_files(engine_here) == before


MULTI_STAGE = """\
FROM busybox AS make
RUN mkdir /out && echo "made in the first stage" > /out/message && chmod 640 /out/message
FROM busybox
COPY --from=make --chown=1000:1000 /out/message /srv/message
ENV GREETING="hello from the second"
WORKDIR /srv
USER 1000:1000
ENTRYPOINT ["sh", "-c"]
CMD ["echo $GREETING; cat message; ls -ln message | cut -c1-10; echo $(id -u):$(id -g); pwd"]
"""


@pytest.mark.vm
@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
@PODMAN_NEEDS_V2
def test_a_built_multi_stage_image_runs_the_same_under_podman(tmp_path: Path) -> None:
    """Built by mini-engine, pushed by mini-engine, pulled and run by podman: the same output."""
    # The VM's /tmp is an overlay, where overlays cannot be mounted: roots on /run, a tmpfs.
    base = Path(tempfile.mkdtemp(prefix="me-", dir="/run"))
    engine = Engine(base / "lib", base / "run")
    podman = ["podman", "--root", str(base / "podman"), "--runroot", str(base / "prun"),
              "--cgroup-manager", "cgroupfs", "--storage-driver", "vfs", "--events-backend", "none",
              "--runtime", "runc"]
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Containerfile").write_text(MULTI_STAGE)
    (tmp_path / "registry").mkdir()
    try:
        built = engine("build", "-q", "-t", "localhost/multi:1", str(context), timeout=600)
        assert built.returncode == 0, built.stderr
        ours = engine("run", "--rm", "localhost/multi:1")
        assert ours.stdout == ("hello from the second\nmade in the first stage\n-rw-r-----\n"
                               "1000:1000\n/srv\n"), ours.stderr
        with Registry(tmp_path / "registry") as registry:
            name = f"{registry.host}/built/multi:1"
            pushed = engine("push", "-q", "localhost/multi:1", name, timeout=300)
            assert pushed.returncode == 0, pushed.stderr
            pulled = subprocess.run([*podman, "pull", "-q", "--tls-verify=false", name], capture_output=True,
                                    text=True, timeout=600)
            assert pulled.returncode == 0, pulled.stderr
        # Lower rlimits than podman's default: raising them takes CAP_SYS_RESOURCE (bench/network.py).
        run = [*podman, "run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024",
               "--ulimit", "nproc=1024:1024"]
        theirs = subprocess.run([*run, name], capture_output=True, text=True, timeout=300)
        assert (theirs.returncode, theirs.stdout) == (0, ours.stdout), theirs.stderr
    finally:
        subprocess.run([*podman, "rmi", "-af"], capture_output=True)
        subprocess.run(["umount", "-R", str(base)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
