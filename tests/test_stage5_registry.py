"""Stage 5: pulling from a real registry (docker-registry on 127.0.0.1), filled by skopeo."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Engine, ImageFiles
from fixtures.images import add_index
from fixtures.registry import Registry, TokenServer, free_port

pytestmark = pytest.mark.stage(5)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, test_images: ImageFiles) -> Iterator[Registry]:
    work = tmp_path_factory.mktemp("registry")
    layout = work / "layout"
    shutil.copytree(test_images.layout, layout)
    add_index(layout)
    reg = Registry(work)
    reg.push(f"oci:{layout}:single", "test/single:1")
    reg.push(f"oci:{layout}:multi", "test/multi:v2s2", "--format", "v2s2")
    reg.push(f"oci:{test_images.zstd}:example.test/zstd:1", "test/multi:zstd")  # skopeo made it zstd
    reg.push(f"oci:{layout}:multiarch", "test/multiarch:oci", "--all")
    reg.push(f"oci:{layout}:multiarch", "test/multiarch:list", "--all", "--format", "v2s2")
    reg.push(f"oci:{layout}:single-arm64", "test/arm64:1")
    yield reg
    reg.stop()


@pytest.fixture
def engine_here(tmp_path: Path) -> Engine:
    """An engine with a store of its own, so that every pull starts from nothing."""
    return Engine(tmp_path / "lib", tmp_path / "run")


def _manifest_digest(registry: Registry, name: str, tag: str) -> str:
    accept = "application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json"
    request = urllib.request.Request(f"http://{registry.host}/v2/{name}/manifests/{tag}",
                                     headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        return f"sha256:{hashlib.sha256(response.read()).hexdigest()}"


def test_pull_then_run_as_the_config_says(engine_here: Engine, registry: Registry) -> None:
    pulled = engine_here("--stage", "5", "pull", "-q", f"{registry.host}/test/single:1")
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.startswith("sha256:") and pulled.stderr == ""
    result = engine_here("--stage", "5", "run", "--rm", f"{registry.host}/test/single:1")
    assert result.stdout == "from-image 1000:1000 /srv/app /home/app\n", result.stderr


def test_run_pulls_what_is_missing(engine_here: Engine, registry: Registry) -> None:
    result = engine_here("--stage", "5", "run", "--rm", "--entrypoint", "cat",
                         f"{registry.host}/test/multi:v2s2", "/data/changed")
    assert result.stdout == "after\n", result.stderr
    images = json.loads(engine_here("--stage", "5", "images", "--format", "json").stdout)
    assert [r["RepoTags"] for r in images] == [[f"{registry.host}/test/multi:v2s2"]]


def test_zstd_layers(engine_here: Engine, registry: Registry) -> None:
    assert engine_here("--stage", "5", "pull", "-q", f"{registry.host}/test/multi:zstd").returncode == 0
    inspect = json.loads(engine_here("--stage", "5", "inspect", f"{registry.host}/test/multi:zstd").stdout)[0]
    assert {e["mediaType"] for e in inspect["Layers"]} == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    result = engine_here("--stage", "5", "run", "--rm", "--entrypoint", "ls",
                         f"{registry.host}/test/multi:zstd", "/data/doomed-file")
    assert result.returncode == 1 and "No such file" in result.stderr


@pytest.mark.parametrize("tag", ["oci", "list"])
def test_an_index_is_followed_to_this_platform(engine_here: Engine, registry: Registry, tag: str) -> None:
    name = f"{registry.host}/test/multiarch:{tag}"
    assert engine_here("--stage", "5", "pull", "-q", name).returncode == 0
    assert json.loads(engine_here("--stage", "5", "inspect", name).stdout)[0]["Architecture"] == "amd64"
    ran = engine_here("--stage", "5", "run", "--rm", name)
    assert ran.stdout == "from-image 1000:1000 /srv/app /home/app\n", ran.stderr
    arm = engine_here("--stage", "5", "pull", "-q", "--platform", "linux/arm64", name)
    assert arm.returncode == 0, arm.stderr
    assert json.loads(engine_here("--stage", "5", "inspect", name).stdout)[0]["Architecture"] == "arm64"
    none = engine_here("--stage", "5", "pull", "--platform", "linux/s390x", name)
    assert none.returncode == 125
    assert none.stderr == (f"mini-engine: {name}: no image for linux/s390x (the index has linux/amd64, "
                           "linux/arm64); choose one with --platform\n")


@pytest.mark.parametrize(("name", "platform", "has", "wanted"), [
    ("test/single:1", ["--platform", "linux/s390x"], "linux/amd64", "linux/s390x"),
    ("test/arm64:1", [], "linux/arm64", "linux/amd64"),
], ids=["asked", "host"])
def test_a_single_image_of_another_platform_is_pulled_with_a_warning(
        engine_here: Engine, registry: Registry, name: str, platform: list[str], has: str, wanted: str) -> None:
    """As podman: one image has one platform, whatever is asked; it is pulled, and the mismatch said."""
    pulled = engine_here("--stage", "5", "pull", "-q", *platform, f"{registry.host}/{name}")
    assert pulled.returncode == 0
    assert pulled.stderr == (f"mini-engine: warning: image platform ({has}) does not match the "
                             f"expected platform ({wanted})\n")
    shown = json.loads(engine_here("--stage", "5", "inspect", f"{registry.host}/{name}").stdout)[0]
    assert f"{shown['Os']}/{shown['Architecture']}" == has
    matching = engine_here("--stage", "5", "pull", "-q", "--platform", has, f"{registry.host}/{name}")
    assert (matching.returncode, matching.stderr) == (0, "")


def test_pull_by_digest(engine_here: Engine, registry: Registry) -> None:
    digest = _manifest_digest(registry, "test/single", "1")
    name = f"{registry.host}/test/single@{digest}"
    assert engine_here("--stage", "5", "pull", "-q", name).returncode == 0
    assert engine_here("--stage", "5", "run", "--rm", "--entrypoint", "true", name).returncode == 0
    wrong = f"{registry.host}/test/single@sha256:{'0' * 64}"
    result = engine_here("--stage", "5", "pull", wrong)
    assert result.returncode == 125 and "not found (404)" in result.stderr


def test_layers_in_the_store_are_not_downloaded_again(engine_here: Engine, registry: Registry) -> None:
    assert engine_here("--stage", "5", "pull", "-q", f"{registry.host}/test/single:1").returncode == 0
    before = registry.blob_gets()
    # multiarch:oci's amd64 entry is single itself: same config, same layer.
    assert engine_here("--stage", "5", "pull", "-q", f"{registry.host}/test/multiarch:oci").returncode == 0
    assert registry.blob_gets() == before


@pytest.mark.parametrize(("name", "message"), [
    ("{host}/test/nothing:1", "{host}: not found (404): test/nothing/manifests/1"),
    ("{host}/test/single:nope", "{host}: not found (404): test/single/manifests/nope"),
    ("127.0.0.1:{closed}/x:1", "127.0.0.1:{closed}: connection refused (is the registry running?)"),
    ("no-such-host.invalid/x:1", "no-such-host.invalid: unknown host"),
])
def test_pull_failures_are_one_line(engine_here: Engine, registry: Registry, name: str, message: str) -> None:
    closed = free_port()
    values = {"host": registry.host, "closed": closed}
    result = engine_here("--stage", "5", "pull", name.format(**values))
    assert result.returncode == 125
    assert result.stderr == f"mini-engine: {message.format(**values)}\n"
    assert not (engine_here.root / "images").exists() or not list((engine_here.root / "images").iterdir())


def test_basic_auth_and_login(engine_here: Engine, tmp_path: Path, test_images: ImageFiles) -> None:
    work = tmp_path / "private"
    work.mkdir()
    private = Registry(work, users={"alice": "wonderland"})
    try:
        private.push(f"oci:{test_images.layout}:single", "team/app:1", creds="alice:wonderland")
        name = f"{private.host}/team/app:1"
        denied = engine_here("--stage", "5", "pull", name)
        assert denied.returncode == 125
        assert denied.stderr == (f"mini-engine: {private.host} asks for a password: log in with "
                                 f"'mini-engine login {private.host}'\n")
        wrong = engine_here("--stage", "5", "login", "-u", "alice", "--password-stdin", private.host,
                            input="rabbit\n")
        assert wrong.returncode == 125 and "log in with" in wrong.stderr
        assert not (engine_here.root / "auth.json").exists()
        ok = engine_here("--stage", "5", "login", "-u", "alice", "--password-stdin", private.host,
                         input="wonderland\n")
        assert ok.stdout == "Login Succeeded\n", ok.stderr
        assert (engine_here.root / "auth.json").stat().st_mode & 0o777 == 0o600
        assert engine_here("--stage", "5", "pull", "-q", name).returncode == 0
        assert engine_here("--stage", "5", "logout", private.host).returncode == 0
        # podman's auth.json under XDG_RUNTIME_DIR serves as well as our login.
        runtime = tmp_path / "xdg"
        (runtime / "containers").mkdir(parents=True)
        entry = base64.b64encode(b"alice:wonderland").decode()
        auths = {"auths": {private.host: {"auth": entry}}}
        (runtime / "containers" / "auth.json").write_text(json.dumps(auths))
        engine_here("--stage", "5", "rmi", name)
        env = dict(engine_here.env, XDG_RUNTIME_DIR=str(runtime))
        again = engine_here("--stage", "5", "pull", "-q", name, env=env)
        assert again.returncode == 0, again.stderr
    finally:
        private.stop()


def test_token_auth_as_docker_hub_does_it(engine_here: Engine, tmp_path: Path, test_images: ImageFiles) -> None:
    """The registry trusts a token server (JWT signed by a test key); the
    client follows the Bearer challenge there, with the login's credentials."""
    work = tmp_path / "token"
    work.mkdir()
    tokens = TokenServer(work, {"alice": "wonderland"})
    private = Registry(work, token=tokens.registry_config)
    try:
        private.push(f"oci:{test_images.layout}:single", "team/app:1", creds="alice:wonderland")
        name = f"{private.host}/team/app:1"
        anonymous = engine_here("--stage", "5", "pull", name)
        assert anonymous.returncode == 125
        assert anonymous.stderr == (f"mini-engine: {private.host}: access denied (401) to "
                                    f"team/app/manifests/1: log in with 'mini-engine login {private.host}', "
                                    "or check the name\n")
        wrong = engine_here("--stage", "5", "login", "-u", "alice", "--password-stdin", private.host,
                            input="rabbit\n")
        assert wrong.stderr == (f"mini-engine: {private.host}: the token server refused us (401): "
                                f"log in with 'mini-engine login {private.host}'\n")
        ok = engine_here("--stage", "5", "login", "-u", "alice", "--password-stdin", private.host,
                         input="wonderland\n")
        assert ok.stdout == "Login Succeeded\n", ok.stderr
        pulled = engine_here("--stage", "5", "pull", "-q", name)
        assert pulled.returncode == 0, pulled.stderr
        result = engine_here("--stage", "5", "run", "--rm", name)
        assert result.stdout == "from-image 1000:1000 /srv/app /home/app\n", result.stderr
    finally:
        private.stop()
        tokens.stop()


def test_progress_on_a_terminal_only(engine_here: Engine, registry: Registry) -> None:
    import os
    import pty

    from conftest import read_until_closed

    master, slave = pty.openpty()
    name = f"{registry.host}/test/multi:v2s2"
    proc = engine_here.popen("--stage", "5", "pull", name, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    out = read_until_closed(master)
    assert proc.wait(timeout=60) == 0, out
    assert "pulled 4 blobs" in out and "100%" in out and "MB" in out  # a config and three layers
    quiet = engine_here("--stage", "5", "pull", name)  # stderr not a terminal: nothing there
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_a_digest_pulled_stays_beside_a_tag_of_the_same_image(engine_here: Engine, registry: Registry) -> None:
    """multi by its docker (v2s2, gzip) tag, then by the digest of its zstd
    manifest: one image, and each name keeps the manifest it was pulled by."""
    repo = f"{registry.host}/test/multi"
    v2s2, zstd = (_manifest_digest(registry, "test/multi", tag) for tag in ("v2s2", "zstd"))
    for name in (f"{repo}:v2s2", f"{repo}@{zstd}"):
        pulled = engine_here("--stage", "5", "pull", "-q", name)
        assert pulled.returncode == 0, pulled.stderr

    def inspect(name: str) -> dict:
        result = engine_here("--stage", "5", "inspect", name)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)[0]

    tagged, pinned = inspect(f"{repo}:v2s2"), inspect(f"{repo}@{zstd}")
    assert tagged["Id"] == pinned["Id"] and (tagged["Manifest"], pinned["Manifest"]) == (v2s2, zstd)
    assert {e["mediaType"] for e in tagged["Layers"]} == {"application/vnd.docker.image.rootfs.diff.tar.gzip"}
    assert {e["mediaType"] for e in pinned["Layers"]} == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    assert tagged["RepoTags"] == [f"{repo}:v2s2"]
    assert tagged["RepoDigests"] == sorted([f"{repo}@{v2s2}", f"{repo}@{zstd}"])
    listed = engine_here("--stage", "5", "images", "--digests").stdout.splitlines()[1:]
    assert [line.split()[:3] for line in listed] == [[repo, "v2s2", v2s2], [repo, "<none>", zstd]]
    # A digest pulled is a name: prune leaves it, rmi of it removes it (and its blobs).
    assert engine_here("--stage", "5", "image", "prune").returncode == 0
    assert inspect(f"{repo}@{zstd}")["Manifest"] == zstd
    blobs = engine_here.root / "blobs" / "sha256"
    zstd_blobs = [blobs / e["digest"][7:] for e in pinned["Layers"]]
    assert all(b.exists() for b in zstd_blobs)
    removed = engine_here("--stage", "5", "rmi", f"{repo}@{zstd}")
    assert (removed.stdout, removed.returncode) == (f"Untagged: {repo}@{zstd}\n", 0)
    assert not any(b.exists() for b in zstd_blobs)
    assert engine_here("--stage", "5", "inspect", f"{repo}@{zstd}").returncode == 125
    ran = engine_here("--stage", "5", "run", "--rm", "--entrypoint", "cat", f"{repo}:v2s2", "/data/changed")
    assert ran.stdout == "after\n", ran.stderr
