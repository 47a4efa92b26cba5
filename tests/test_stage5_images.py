"""Stage 5: images built by umoci and skopeo load into the store and run as their config says."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Engine, ImageFiles

from mini_engine.base.errors import ContainerError
from mini_engine.containers import overlay
from mini_engine.images import reference

pytestmark = pytest.mark.stage(5)


@pytest.mark.parametrize(("text", "normal"), [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("someone/tool:v2", "docker.io/someone/tool:v2"),
    ("localhost/busybox", "localhost/busybox:latest"),
    ("localhost:5000/a/b:c", "localhost:5000/a/b:c"),
    ("127.0.0.1:5000/busybox", "127.0.0.1:5000/busybox:latest"),
    ("quay.io/org/app", "quay.io/org/app:latest"),
    ("busybox@sha256:" + "a" * 64, "docker.io/library/busybox@sha256:" + "a" * 64),
    ("ghcr.io/o/p:1@sha256:" + "b" * 64, "ghcr.io/o/p:1@sha256:" + "b" * 64),
])
def test_references_normalise_like_docker(text: str, normal: str) -> None:
    assert str(reference.parse(text)) == normal


@pytest.mark.parametrize(("text", "why"), [
    ("BusyBox", "must be lowercase"), ("busybox:", "bad tag"), ("a//b", "bad name component"),
    ("busybox@sha256:abc", "digest must be"), ("", "invalid reference"), ("-x", "bad name component"),
])
def test_bad_references_are_refused(text: str, why: str) -> None:
    with pytest.raises(ContainerError, match=why):
        reference.parse(text)


@pytest.fixture
def loaded(engine: Engine, test_images: ImageFiles) -> Iterator[Engine]:
    """The engine with single, multi (docker save), zstd and many loaded; removed after."""
    for source in (test_images.single, test_images.multi_docker, test_images.zstd, test_images.many):
        result = engine("--stage", "5", "load", "-i", str(source))
        assert result.returncode == 0, result.stderr
    yield engine
    engine("--stage", "5", "rmi", "-f", "example.test/single:1", "example.test/multi:docker",
           "example.test/zstd:1", "example.test/many:1")


def _images(engine: Engine) -> list[dict]:
    return json.loads(engine("--stage", "5", "images", "--format", "json").stdout)


def test_each_format_loads_with_its_tags(loaded: Engine) -> None:
    tags = {tag: len(r["Layers"]) for r in _images(loaded) for tag in r["RepoTags"]}
    assert tags["example.test/single:1"] == 1
    assert tags["example.test/multi:docker"] == 3
    assert tags["example.test/zstd:1"] == 3
    assert tags["example.test/many:1"] == 45
    # One image in two encodings: the same config, so one id (as docker's
    # image id is its config's digest), now with skopeo's zstd blobs.
    multi = next(r for r in _images(loaded) if "example.test/multi:docker" in r["RepoTags"])
    assert multi["RepoTags"] == ["example.test/multi:docker", "example.test/zstd:1"]
    inspect = json.loads(loaded("--stage", "5", "inspect", "example.test/zstd:1").stdout)[0]
    zstd = "application/vnd.oci.image.layer.v1.tar+zstd"
    assert {entry["mediaType"] for entry in inspect["Layers"]} == {zstd}
    single = json.loads(loaded("--stage", "5", "inspect", "example.test/single:1").stdout)[0]
    assert single["Config"]["Entrypoint"] == ["/bin/sh"] and single["Config"]["User"] == "app"


def test_the_store_is_content_addressed(loaded: Engine) -> None:
    root = loaded.root
    for blob in (root / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    record = next(r for r in _images(loaded) if "example.test/single:1" in r["RepoTags"])
    # An image's id is its config's digest; its layers are unpacked under their diff_id.
    config = (root / "blobs" / "sha256" / record["Id"][7:]).read_bytes()
    diff_id = json.loads(config)["rootfs"]["diff_ids"][0]
    assert record["Layers"][0]["diffID"] == diff_id
    link = (root / "layers" / diff_id[7:] / "link").read_text()
    assert os.path.realpath(root / "l" / link) == str(root / "layers" / diff_id[7:] / "diff")


def test_the_image_config_becomes_the_process(loaded: Engine) -> None:
    def run(*args: str) -> str:
        result = loaded("--stage", "5", "run", "--rm", *args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    # Entrypoint sh -c, Cmd 'echo "$FOO $(id -u):$(id -g) $(pwd) $HOME"', User app, WorkingDir /srv/app.
    image = "example.test/single:1"
    assert run(image) == "from-image 1000:1000 /srv/app /home/app\n"
    assert run("-u", "0", image) == "from-image 0:0 /srv/app /root\n"
    assert run("-u", "root:app", image) == "from-image 0:1000 /srv/app /root\n"
    assert run("-u", "4321", image) == "from-image 4321:0 /srv/app /\n"  # a uid the image lacks
    assert run("-e", "FOO=flag", "-w", "/made/here", image) == "flag 1000:1000 /made/here /home/app\n"
    # ARGS replace Cmd, and the Entrypoint stays.
    assert run(image, "-c", "echo args") == "args\n"
    # --entrypoint replaces it and drops Cmd.
    assert run("--entrypoint", "id", image) == "uid=1000(app) gid=1000(app) groups=2000(extra)\n"
    assert run("--entrypoint", "echo", image, "only", "these") == "only these\n"


def test_user_errors_name_the_file(loaded: Engine) -> None:
    result = loaded("--stage", "5", "run", "--rm", "-u", "ghost", "example.test/single:1")
    assert result.returncode == 125
    assert result.stderr == "mini-engine: unable to find user ghost: no matching entries in passwd file\n"
    result = loaded("--stage", "5", "run", "--rm", "-u", "app:ghosts", "example.test/single:1")
    assert "unable to find group ghosts: no matching entries in group file" in result.stderr
    result = loaded("--stage", "5", "run", "--rm", "--entrypoint", "", "example.test/single:1")
    assert result.returncode == 125 and "no command specified" in result.stderr


def test_whiteouts_across_layers(loaded: Engine) -> None:
    for image in ("example.test/multi:docker", "example.test/zstd:1"):
        result = loaded("--stage", "5", "run", "--rm", image, "sh", "-c",
                        "ls /data/doomed-file /data/doomed-dir 2>&1; cat /data/changed; cat /data/original")
        assert "doomed-file: No such file or directory" in result.stdout
        assert "doomed-dir: No such file or directory" in result.stdout
        assert result.stdout.endswith("after\nlinked twice\n")


def test_forty_five_layers_run(loaded: Engine) -> None:
    result = loaded("--stage", "5", "run", "--rm", "--entrypoint", "ls", "example.test/many:1", "/layers")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"{i:02d}" for i in range(44)]


def _tree(root: Path) -> dict[str, tuple]:
    """Everything a rootfs comparison cares about, per path."""
    out = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            st = os.lstat(path)
            rel = str(path.relative_to(root))
            kind = stat.S_IFMT(st.st_mode)
            extra: object = None
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                extra = (path.read_bytes(), st.st_nlink, int(st.st_mtime),
                         sorted((x, os.getxattr(path, x)) for x in os.listxattr(path) if x.startswith("user.")))
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra)
    return out


@pytest.mark.root
def test_unpacked_layers_equal_umoci_unpack(loaded: Engine, test_images: ImageFiles, tmp_path: Path) -> None:
    """The overlay of our layers shows the same tree as umoci's flat unpack."""
    subprocess.run(["umoci", "unpack", "--image", f"{test_images.layout}:multi", str(tmp_path / "umoci")],
                   check=True, capture_output=True)
    record = next(r for r in _images(loaded) if "example.test/multi:docker" in r["RepoTags"])
    links = [(loaded.root / "layers" / e["diffID"][7:] / "link").read_text() for e in record["Layers"]]
    for d in ("upper", "work", "merged"):
        (tmp_path / d).mkdir()
    overlay.mount([f"l/{link}" for link in reversed(links)], str(tmp_path / "upper"),
                  str(tmp_path / "work"), str(tmp_path / "merged"), cwd=str(loaded.root))
    try:
        ours, theirs = _tree(tmp_path / "merged"), _tree(tmp_path / "umoci" / "rootfs")
    finally:
        overlay.unmount(str(tmp_path / "merged"))
    assert sorted(ours) == sorted(theirs)
    different = {path: (ours[path], theirs[path]) for path in ours if ours[path] != theirs[path]}
    assert different == {}
    # and the awkward files are what the fixture made
    assert stat.S_IMODE(os.lstat(tmp_path / "umoci/rootfs/data/setuid").st_mode) == 0o4755
    assert ours["data/sticky"][1] == 0o1777 and ours["data/owned"][2:4] == (1000, 1000)


def test_save_writes_an_archive_skopeo_reads(loaded: Engine, tmp_path: Path) -> None:
    out = tmp_path / "saved.tar"
    result = loaded("--stage", "5", "save", "-o", str(out), "example.test/multi:docker")
    assert result.returncode == 0, result.stderr
    inspected = subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{out}"],
                               capture_output=True, check=True).stdout
    record = json.loads(loaded("--stage", "5", "inspect", "example.test/multi:docker").stdout)[0]
    assert f"sha256:{hashlib.sha256(inspected).hexdigest()}" == record["Manifest"]
    config = subprocess.run(["skopeo", "inspect", "--config", f"oci-archive:{out}"],
                            capture_output=True, check=True, text=True).stdout
    assert json.loads(config)["rootfs"]["diff_ids"] == [e["diffID"] for e in record["Layers"]]
    # and a round trip through a fresh store gives the same image
    other = Engine(tmp_path / "lib", tmp_path / "run")
    again = other("--stage", "5", "load", "-i", str(out))
    assert again.stdout == "Loaded image: example.test/multi:docker\n", again.stderr
    assert [r["Id"] for r in _images(other)] == [record["Id"]]


def test_save_where_it_cannot_write_is_one_line(loaded: Engine, tmp_path: Path) -> None:
    for target, reason in ((Path("/nonexistent/dir/x.tar"), "No such file or directory"),
                           (tmp_path, "Is a directory")):
        result = loaded("--stage", "5", "save", "-o", str(target), "example.test/single:1")
        assert (result.returncode, result.stdout) == (125, "")
        assert result.stderr == f"mini-engine: cannot write {target}: {reason}\n"
    assert os.listdir(tmp_path) == []  # no temp file left


def test_rmi_deletes_layers_only_when_no_image_uses_them(loaded: Engine) -> None:
    record = next(r for r in _images(loaded) if "example.test/zstd:1" in r["RepoTags"])
    layers = [loaded.root / "layers" / e["diffID"][7:] for e in record["Layers"]]
    untag = loaded("--stage", "5", "rmi", "example.test/zstd:1")
    assert untag.stdout == "Untagged: example.test/zstd:1\n"
    assert all(p.exists() for p in layers)  # multi:docker still has them
    # A container holds its image even when untagged.
    assert loaded("--stage", "5", "run", "example.test/multi:docker", "true").returncode == 0
    container = json.loads(loaded("ps", "-a", "--format", "json").stdout)
    container_id = max(container, key=lambda r: r["Created"])["Id"]
    refused = loaded("--stage", "5", "rmi", "example.test/multi:docker")
    assert refused.returncode == 1 and f"used by container {container_id[:12]}" in refused.stderr
    assert loaded("rm", container_id).returncode == 0
    gone = loaded("--stage", "5", "rmi", "example.test/multi:docker")
    assert gone.returncode == 0 and f"Deleted: {record['Id']}" in gone.stdout
    # The first layer (busybox) is shared with single and many: it stays.
    assert layers[0].exists() and not layers[1].exists() and not layers[2].exists()


def test_image_prune_removes_untagged_images(engine: Engine, test_images: ImageFiles) -> None:
    result = engine("--stage", "5", "load", "-i", str(test_images.layout))
    assert result.returncode == 0, result.stderr
    # The layout's tags are bare ("single"): they name no repository, so the images are untagged.
    ids = [line.split()[-1] for line in result.stdout.splitlines()]
    assert len(ids) == 4 and all(line.startswith("Loaded image ID: ") for line in result.stdout.splitlines())
    pruned = engine("--stage", "5", "image", "prune")
    assert pruned.returncode == 0
    remaining = {r["Id"] for r in _images(engine)}
    assert not remaining & set(ids)


def test_bundled_busybox_is_an_image_in_the_store(engine: Engine) -> None:
    result = engine("--stage", "5", "run", "--rm", "busybox", "echo", "hello")
    assert result.stdout == "hello\n", result.stderr
    tags = [t for r in _images(engine) for t in r["RepoTags"]]
    assert "localhost/busybox:latest" in tags


def test_image_commands_need_stage_5(engine: Engine) -> None:
    result = engine("--stage", "4", "images")
    assert result.returncode == 125
    assert result.stderr == "mini-engine: 'images' needs stage 5 or above (this is stage 4, overlayfs)\n"
    result = engine("--stage", "4", "run", "--rm", "-u", "0", "busybox", "true")
    assert "--user needs stage 5 or above" in result.stderr


@pytest.mark.root
def test_podman_loads_what_save_writes(loaded: Engine, tmp_path: Path) -> None:
    out = tmp_path / "saved.tar"
    assert loaded("--stage", "5", "save", "-o", str(out), "example.test/single:1").returncode == 0
    # podman with a store of its own (vfs: no mounts), so the host's is untouched;
    # its runroot must be short (50 characters at most).
    runroot = tempfile.mkdtemp(prefix="podman-", dir="/tmp")
    podman = ["podman", "--root", str(tmp_path / "podman"), "--runroot", runroot, "--storage-driver", "vfs"]
    try:
        _podman_reads(loaded, podman, out)
    finally:
        shutil.rmtree(runroot)


def _podman_reads(loaded: Engine, podman: list[str], out: Path) -> None:
    loaded_by_podman = subprocess.run([*podman, "load", "-i", str(out)], capture_output=True, text=True)
    assert "Loaded image: example.test/single:1" in loaded_by_podman.stdout, loaded_by_podman.stderr
    inspected = subprocess.run([*podman, "image", "inspect", "example.test/single:1"],
                               capture_output=True, text=True, check=True)
    image = json.loads(inspected.stdout)[0]
    ours = next(r for r in _images(loaded) if "example.test/single:1" in r["RepoTags"])
    assert f"sha256:{image['Id']}" == ours["Id"]
    assert image["Config"]["Entrypoint"] == ["/bin/sh"] and image["Config"]["WorkingDir"] == "/srv/app"


def _index_manifest(archive: Path) -> str:
    """The digest of the one manifest an OCI archive's index.json names."""
    with tarfile.open(archive) as tar:
        index = tar.extractfile("index.json")
        assert index is not None
        return json.load(index)["manifests"][0]["digest"]


def _digest_rows(engine: Engine) -> dict[tuple[str, str], str]:
    """``images --digests``: (repository, tag) -> digest."""
    result = engine("--stage", "5", "images", "--digests")
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["REPOSITORY", "TAG", "DIGEST", "IMAGE", "ID", "LAYERS", "SIZE"]
    return {(line.split()[0], line.split()[1]): line.split()[2] for line in lines}


def test_one_image_keeps_the_manifest_each_name_came_by(engine: Engine, test_images: ImageFiles,
                                                         tmp_path: Path) -> None:
    """multi loaded three ways, one config: an OCI archive (gzip), a docker
    archive, a zstd copy. One image, three manifests; each name keeps its own."""
    names = ["example.test/multi:1", "example.test/multi:docker", "example.test/zstd:1"]
    for source in (test_images.multi_oci, test_images.multi_docker, test_images.zstd):
        result = engine("--stage", "5", "load", "-i", str(source))
        assert result.returncode == 0, result.stderr
    try:
        shown = {name: json.loads(engine("--stage", "5", "inspect", name).stdout)[0] for name in names}
        oci, docker, zstd = (shown[name]["Manifest"] for name in names)
        assert oci == _index_manifest(test_images.multi_oci)
        assert len({oci, docker, zstd}) == 3 and len({r["Id"] for r in shown.values()}) == 1
        assert all(r["Digests"] == [oci, docker, zstd] for r in shown.values())
        media = {name: {e["mediaType"] for e in r["Layers"]} for name, r in shown.items()}
        layer = "application/vnd.oci.image.layer.v1.tar"  # docker save writes plain tars
        assert media == {names[0]: {f"{layer}+gzip"}, names[1]: {layer}, names[2]: {f"{layer}+zstd"}}
        blobs = engine.root / "blobs" / "sha256"
        layer_blobs = {name: {e["digest"][7:] for e in r["Layers"]} for name, r in shown.items()}
        assert all((blobs / b).exists() for found in layer_blobs.values() for b in found)
        assert _digest_rows(engine)[("example.test/multi", "1")] == oci
        assert _digest_rows(engine)[("example.test/zstd", "1")] == zstd
        # save writes the manifest the name points at, and its digest finds it.
        out = tmp_path / "saved.tar"
        assert engine("--stage", "5", "save", "-o", str(out), names[0]).returncode == 0
        raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{out}"],
                             capture_output=True, check=True).stdout
        assert f"sha256:{hashlib.sha256(raw).hexdigest()}" == oci
        by_digest = json.loads(engine("--stage", "5", "inspect", f"example.test/multi@{oci}").stdout)[0]
        assert by_digest["Manifest"] == oci and by_digest["Layers"] == shown[names[0]]["Layers"]
        # Removing a name takes its manifest, and the blobs only that one used.
        untag = engine("--stage", "5", "rmi", names[2])
        assert (untag.stdout, untag.returncode) == (f"Untagged: {names[2]}\n", 0)
        assert not any((blobs / b).exists() for b in layer_blobs[names[2]])
        assert all((blobs / b).exists() for b in layer_blobs[names[0]] | layer_blobs[names[1]])
        assert json.loads(engine("--stage", "5", "inspect", names[0]).stdout)[0]["Digests"] == [oci, docker]
        gone = engine("--stage", "5", "inspect", f"example.test/zstd@{zstd}")
        assert gone.returncode == 125 and "is not here" in gone.stderr
        ran = engine("--stage", "5", "run", "--rm", "--entrypoint", "cat", names[0], "/data/changed")
        assert ran.stdout == "after\n", ran.stderr
    finally:
        engine("--stage", "5", "rmi", "-f", *names)
