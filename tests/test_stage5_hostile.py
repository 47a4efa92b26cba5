"""Stage 5: hostile and broken image input is refused, and leaves nothing behind.

``mini-engine load`` reads archives from strangers. Whatever is wrong with
one (a layer that climbs out of its directory, writes through a symlink,
a blob that is not what its descriptor says, a manifest or config that is
not one), the load fails with one line on stderr and exit
code 125, writes nothing outside the layer's directory, and leaves no
image, no layer and no half blob in the store.

Real tools refuse to make such archives, so these are built by hand: an
OCI image layout (oci-layout, index.json, blobs/sha256/...) whose layers
are tar streams written with tarfile, member by member.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Engine

from mini_engine.images.imageconfig import host_platform

pytestmark = [pytest.mark.stage(5), pytest.mark.root]

GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
TAR = "application/vnd.oci.image.layer.v1.tar"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"

Member = tuple[tarfile.TarInfo, bytes | None]


# -- tar members -------------------------------------------------------------

def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 1_700_000_000
    return info


def reg(name: str, data: bytes = b"", mode: int = 0o644) -> Member:
    info = _info(name, tarfile.REGTYPE, mode)
    info.size = len(data)
    return info, data


def directory(name: str, mode: int = 0o755) -> Member:
    return _info(name, tarfile.DIRTYPE, mode), None


def symlink(name: str, target: str) -> Member:
    info = _info(name, tarfile.SYMTYPE, 0o777)
    info.linkname = target
    return info, None


def hardlink(name: str, target: str) -> Member:
    info = _info(name, tarfile.LNKTYPE, 0o644)
    info.linkname = target
    return info, None


def device(name: str, kind: bytes, major: int, minor: int) -> Member:
    info = _info(name, kind, 0o666)
    info.devmajor, info.devminor = major, minor
    return info, None


def tar_bytes(members: list[Member]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def busybox_layer() -> list[Member]:
    """Enough of a root filesystem for ``cat``: the host's static busybox."""
    return [directory("bin/"), reg("bin/busybox", Path("/bin/busybox").read_bytes(), 0o755),
            symlink("bin/cat", "busybox")]


# -- an OCI image layout -----------------------------------------------------

def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@dataclass
class Layout:
    path: Path
    tag: str
    diff_ids: list[str]       # what the layers' tars hash to (the config may say otherwise)
    layers: list[dict[str, Any]]  # the layer descriptors the manifest names


def _keep(_: int, value: Any) -> Any:
    return value


def _keep1(value: Any) -> Any:
    return value


def make_layout(path: Path, tag: str, layers: list[list[Member]], *, media_type: str = GZIP,
                compressed: Callable[[int, bytes], bytes] = _keep,
                blob: Callable[[int, bytes], bytes] = _keep,
                descriptor: Callable[[int, dict[str, Any]], dict[str, Any]] = _keep,
                config: Callable[[dict[str, Any]], dict[str, Any] | bytes] = _keep1,
                manifest: Callable[[dict[str, Any]], dict[str, Any] | bytes] = _keep1) -> Layout:
    """An OCI image layout at ``path``, its manifest tagged ``tag``, one layer per
    list of members (gzip-compressed unless ``media_type`` is plain tar).

    Every digest, size and diff_id is right unless a hook breaks it:
    ``compressed(i, bytes)``: layer i's blob, before its descriptor is made from it;
    ``blob(i, bytes)``: layer i's blob as written, after its descriptor was made;
    ``descriptor(i, dict)``: layer i's descriptor in the manifest;
    ``config(dict)`` and ``manifest(dict)``: the JSON, or bytes written as they are.
    """
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def write(data: bytes, digest: str | None = None) -> str:
        digest = digest or sha256(data)
        (blobs / digest[len("sha256:"):]).write_bytes(data)
        return digest

    def encode(value: dict[str, Any] | bytes) -> bytes:
        return value if isinstance(value, bytes) else json.dumps(value).encode()

    diff_ids, descriptors = [], []
    for i, members in enumerate(layers):
        tar = tar_bytes(members)
        diff_ids.append(sha256(tar))
        data = compressed(i, gzip.compress(tar, mtime=0) if media_type == GZIP else tar)
        d = {"mediaType": media_type, "digest": sha256(data), "size": len(data)}
        write(blob(i, data), d["digest"])
        descriptors.append(descriptor(i, d))
    config_bytes = encode(config({
        **host_platform(),
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }))
    manifest_bytes = encode(manifest({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": write(config_bytes), "size": len(config_bytes)},
        "layers": descriptors,
    }))
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [{
        "mediaType": MANIFEST, "digest": write(manifest_bytes), "size": len(manifest_bytes),
        "annotations": {REF_NAME: tag}}]}
    (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (path / "index.json").write_text(json.dumps(index))
    return Layout(path, tag, diff_ids, descriptors)


def named(layout: Layout, i: int = 0, diff_id: str | None = None) -> str:
    """How an error names layer ``i``: by the digest its manifest lists (the
    blob's), and by the diff_id its config lists."""
    return f"layer {layout.layers[i]['digest'][:19]} (diff_id {(diff_id or layout.diff_ids[i])[:19]})"


# -- the store, before and after ---------------------------------------------

def one_line(result) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mini-engine: ")
    assert "internal error" not in lines[0]
    return lines[0]


def _listdir(path: Path) -> list[str]:
    return sorted(os.listdir(path)) if path.exists() else []


def snapshot(engine: Engine) -> tuple[str, list[str], list[str]]:
    """The images the engine lists, the layer directories and their short links."""
    images = engine("--stage", "5", "images", "--format", "json")
    assert images.returncode == 0, images.stderr
    return images.stdout, _listdir(engine.root / "layers"), _listdir(engine.root / "l")


def refused(engine: Engine, path: Path | str, **kw: Any) -> str:
    """Load ``path``, which must fail cleanly; the one line it printed."""
    before = snapshot(engine)
    blobs = engine.root / "blobs" / "sha256"
    blobs_before = set(_listdir(blobs))
    result = engine("--stage", "5", "load", "-i", str(path), **kw)
    assert result.returncode == 125, (result.stdout, result.stderr)
    assert result.stdout == ""
    line = one_line(result)
    # No image, no layer, no short link: as before.
    assert snapshot(engine) == before
    # Blobs that passed their digest check may stay, garbage for prune;
    # never a half one (a .tmp- name, or bytes that are not their name).
    for name in set(_listdir(blobs)) - blobs_before:
        assert sha256((blobs / name).read_bytes()) == f"sha256:{name}", name
    prune = engine("--stage", "5", "image", "prune")
    assert prune.returncode == 0, prune.stderr
    assert set(_listdir(blobs)) <= blobs_before
    return line


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the store that a hostile layer aims at."""
    d = tmp_path / "outside"
    d.mkdir()
    return d


# -- names that leave the layer ----------------------------------------------

@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "./../escape", "../escape-dir/", "AIMED"])
def test_member_that_goes_up_is_refused(engine: Engine, tmp_path: Path, outside: Path, name: str) -> None:
    if name == "AIMED":  # enough ..s to reach / from anywhere, then down into outside
        name = "../" * 64 + f"{str(outside).lstrip('/')}/escape"
    member = directory(name) if name.endswith("/") else reg(name, b"escaped\n")
    layout = make_layout(tmp_path / "image", "example.test/hostile:1", [[reg("ok", b"ok\n"), member]])
    line = refused(engine, layout.path)
    shown = name.rstrip("/")  # tarfile reads a directory's name without its slash
    assert line == f"mini-engine: {named(layout)}: member {shown!r} leaves the layer (..)"
    assert _listdir(outside) == []
    assert not (engine.root / "escape").exists() and not (engine.root / "layers" / "escape").exists()


@pytest.mark.parametrize("name", ["/abs", "OUTSIDE"])
def test_member_with_absolute_name_is_refused(engine: Engine, tmp_path: Path, outside: Path, name: str) -> None:
    if name == "OUTSIDE":
        name = f"{outside}/abs"
    layout = make_layout(tmp_path / "image", "example.test/hostile:2", [[reg(name, b"abs\n")]])
    line = refused(engine, layout.path)
    assert line == f"mini-engine: {named(layout)}: member {name!r} has an absolute name"
    assert _listdir(outside) == []
    assert not os.path.exists("/abs")


# -- symlinks ----------------------------------------------------------------

@pytest.mark.parametrize("below", [reg("evil/pwned", b"pwned\n"), directory("evil/sub/"),
                                   reg("evil/sub/deeper", b"pwned\n")],
                         ids=["file", "directory", "deeper"])
def test_writing_below_a_symlink_of_the_same_layer_is_refused(
        engine: Engine, tmp_path: Path, outside: Path, below: Member) -> None:
    layout = make_layout(tmp_path / "image", "example.test/hostile:3",
                         [[symlink("evil", str(outside)), below]])
    line = refused(engine, layout.path)
    assert line == (f"mini-engine: {named(layout)}: evil is not a directory in this layer "
                    "(a symlink or a file), and a member is written below it")
    assert _listdir(outside) == []


def test_hard_link_through_a_symlink_is_refused(engine: Engine, tmp_path: Path, outside: Path) -> None:
    victim = outside / "victim"
    victim.write_text("host secret\n")
    layout = make_layout(tmp_path / "image", "example.test/hostile:3",
                         [[symlink("evil", str(outside)), hardlink("stolen", "evil/victim")]])
    line = refused(engine, layout.path)
    assert "evil is not a directory in this layer" in line
    assert _listdir(outside) == ["victim"]
    assert os.stat(victim).st_nlink == 1


def test_symlink_in_one_layer_is_shadowed_by_a_directory_in_the_next(
        engine: Engine, tmp_path: Path, outside: Path) -> None:
    # Each layer unpacks into a directory of its own (as docker's overlay2
    # does): layer 2 makes a real directory evil, which hides layer 1's
    # symlink in the overlay. Not an escape, so not an error.
    before = snapshot(engine)
    layout = make_layout(tmp_path / "image", "example.test/hostile:4", [
        busybox_layer(), [symlink("evil", str(outside))], [reg("evil/pwned", b"kept inside\n")]])
    result = engine("--stage", "5", "load", "-i", str(layout.path))
    assert result.returncode == 0, result.stderr
    try:
        assert result.stdout == f"Loaded image: {layout.tag}\n"
        assert _listdir(outside) == []
        layers = engine.root / "layers"
        assert os.readlink(layers / layout.diff_ids[1][7:] / "diff" / "evil") == str(outside)
        evil = os.lstat(layers / layout.diff_ids[2][7:] / "diff" / "evil")
        assert stat.S_ISDIR(evil.st_mode)
        run = engine("--stage", "5", "run", "--rm", layout.tag, "cat", "/evil/pwned")
        assert run.returncode == 0, run.stderr
        assert run.stdout == "kept inside\n"
        assert _listdir(outside) == []
    finally:
        rmi = engine("--stage", "5", "rmi", layout.tag)
        assert rmi.returncode == 0, rmi.stderr
    assert snapshot(engine) == before


# -- hard links --------------------------------------------------------------

@pytest.mark.parametrize("target, message", [
    ("../../etc/passwd", "hard link 'etc/passwd' points at '../../etc/passwd', outside the layer"),
    ("/etc/passwd", "hard link 'etc/passwd' points at '/etc/passwd', outside the layer"),
])
def test_hard_link_out_of_the_layer_is_refused(engine: Engine, tmp_path: Path, target: str,
                                               message: str) -> None:
    links = os.stat("/etc/passwd").st_nlink
    layout = make_layout(tmp_path / "image", "example.test/hostile:5",
                         [[directory("etc/"), hardlink("etc/passwd", target)]])
    line = refused(engine, layout.path)
    assert line == f"mini-engine: {named(layout)}: {message}"
    assert os.stat("/etc/passwd").st_nlink == links


@pytest.mark.parametrize("members", [
    [hardlink("h", "etc/shadow")],
    [hardlink("h", "later"), reg("later", b"too late\n")],
    [directory("etc/"), hardlink("h", "etc/shadow")],
], ids=["missing", "later-in-the-layer", "missing-in-a-directory"])
def test_hard_link_to_a_name_not_in_the_layer_is_refused(engine: Engine, tmp_path: Path,
                                                         members: list[Member]) -> None:
    layout = make_layout(tmp_path / "image", "example.test/hostile:6", [members])
    line = refused(engine, layout.path)
    target = next(info.linkname for info, _ in members if info.islnk())
    assert line == (f"mini-engine: {named(layout)}: hard link 'h' points at "
                    f"{target!r}, which is not in this layer")


@pytest.mark.parametrize("members, name, reason", [
    ([directory("d/"), hardlink("h", "d")], "h", "Operation not permitted"),
    ([reg("n" * 300, b"x\n")], "n" * 300, "File name too long"),
    ([symlink("s", "t" * 5000)], "s", "File name too long"),
], ids=["hard-link-to-a-directory", "name-past-NAME_MAX", "symlink-target-past-PATH_MAX"])
def test_member_the_kernel_refuses_is_a_layer_error(engine: Engine, tmp_path: Path, members: list[Member],
                                                    name: str, reason: str) -> None:
    # Not "internal error": the archive asked for something impossible.
    layout = make_layout(tmp_path / "image", "example.test/hostile:6", [members])
    line = refused(engine, layout.path)
    assert line == f"mini-engine: {named(layout)}: member {name!r} cannot be unpacked: {reason}"


# -- whiteouts ---------------------------------------------------------------

@pytest.mark.parametrize("name, message", [
    ("dir/.wh..", "whiteout 'dir/.wh..' names no file"),
    (".wh...", "whiteout '.wh...' names no file"),
    ("dir/.wh.", "whiteout 'dir/.wh.' names no file"),
    ("../.wh.x", "member '../.wh.x' leaves the layer (..)"),
    ("dir/../../.wh.x", "member 'dir/../../.wh.x' leaves the layer (..)"),
])
def test_whiteout_that_names_no_file_of_the_layer_is_refused(engine: Engine, tmp_path: Path,
                                                             name: str, message: str) -> None:
    layout = make_layout(tmp_path / "image", "example.test/hostile:7",
                         [[directory("dir/"), reg("dir/a", b"a\n"), reg(name)]])
    line = refused(engine, layout.path)
    assert line == f"mini-engine: {named(layout)}: {message}"


# -- files in the way ----------------------------------------------------------

def test_writing_below_a_file_that_replaced_a_directory_is_refused(engine: Engine, tmp_path: Path) -> None:
    layout = make_layout(tmp_path / "image", "example.test/hostile:9", [[
        directory("d/"), reg("d/inside", b"1\n"), reg("d", b"now a file\n"), reg("d/below", b"2\n")]])
    line = refused(engine, layout.path)
    assert line == (f"mini-engine: {named(layout)}: d is not a directory in this layer "
                    "(a symlink or a file), and a member is written below it")


# -- blobs that are not what their descriptor says ------------------------------

def test_blob_with_wrong_digest_is_refused(engine: Engine, tmp_path: Path) -> None:
    def flip(_: int, data: bytes) -> bytes:
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]

    layout = make_layout(tmp_path / "image", "example.test/hostile:10",
                         [[reg("file", b"the real content\n" * 100)]], blob=flip)
    line = refused(engine, layout.path)
    digest = layout.layers[0]["digest"]
    actual = sha256((layout.path / "blobs" / "sha256" / digest[7:]).read_bytes())
    assert actual != digest
    assert line == (f"mini-engine: blob {digest[:19]} has digest {actual[:19]}: "
                    "the content is not what the manifest names")


@pytest.mark.parametrize("delta", [1, -1, 1000])
def test_blob_with_wrong_size_is_refused(engine: Engine, tmp_path: Path, delta: int) -> None:
    def resize(_: int, d: dict[str, Any]) -> dict[str, Any]:
        return dict(d, size=d["size"] + delta)

    layout = make_layout(tmp_path / "image", "example.test/hostile:11",
                         [[reg("file", b"content\n" * 100)]], descriptor=resize)
    line = refused(engine, layout.path)
    digest, said = layout.layers[0]["digest"], layout.layers[0]["size"]
    real = said - delta
    if delta > 0:
        assert line == f"mini-engine: blob {digest[:19]} is {real} bytes, its descriptor says {said}"
    else:
        assert line == f"mini-engine: blob {digest[:19]} is larger than its descriptor's {said} bytes"


def test_a_gzip_layer_in_two_members_loads(engine: Engine, tmp_path: Path) -> None:
    """gzip lets members follow one another (pigz and cat make such files):
    the layer is what they hold one after the other."""
    members = [reg("first", b"1\n"), reg("second", b"2\n" * 5000)]
    tar = tar_bytes(members)
    half = len(tar) // 2
    layout = make_layout(tmp_path / "image", "example.test/members:1", [members],
                         compressed=lambda _, __: gzip.compress(tar[:half]) + gzip.compress(tar[half:]))
    result = engine("--stage", "5", "load", "-i", str(layout.path))
    assert result.returncode == 0, result.stderr
    try:
        diff = engine.root / "layers" / layout.diff_ids[0][7:] / "diff"
        assert (diff / "first").read_bytes() == b"1\n" and (diff / "second").read_bytes() == b"2\n" * 5000
    finally:
        engine("--stage", "5", "rmi", layout.tag)


def test_truncated_gzip_layer_is_refused(engine: Engine, tmp_path: Path) -> None:
    noise = random.Random(5).randbytes(256 << 10)  # incompressible: half the blob is half the tar
    layout = make_layout(tmp_path / "image", "example.test/hostile:12", [[reg("noise", noise)]],
                         compressed=lambda _, data: data[:len(data) // 2])
    line = refused(engine, layout.path)
    assert line.startswith(f"mini-engine: {named(layout)}: broken archive: ")


def test_gzip_media_type_on_a_plain_tar_is_refused(engine: Engine, tmp_path: Path) -> None:
    layout = make_layout(tmp_path / "image", "example.test/hostile:12", [[reg("file", b"plain\n")]],
                         media_type=TAR, descriptor=lambda _, d: dict(d, mediaType=GZIP))
    line = refused(engine, layout.path)
    assert line == "mini-engine: layer says gzip but is not gzip-compressed"


def test_decompression_bomb_is_refused(engine: Engine, tmp_path: Path) -> None:
    layout = make_layout(tmp_path / "image", "example.test/hostile:13", [[reg("zeros", bytes(64 << 20))]])
    floor = 1 << 20
    line = refused(engine, layout.path, env=dict(engine.env, MINI_ENGINE_UNPACK_FLOOR=str(floor)))
    budget = max(floor, 100 * layout.layers[0]["size"])
    assert budget < 64 << 20
    assert line == (f"mini-engine: {named(layout)}: uncompressed size passes {budget} "
                    "bytes (a decompression bomb?); refused")


# -- manifests and configs -------------------------------------------------------

def _without(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda value: {k: v for k, v in value.items() if k != key}


@pytest.mark.parametrize("hooks, message", [
    ({"manifest": lambda _: b"{not json"}, "manifest is not JSON: "),
    ({"config": lambda _: b"\x00garbage"}, "image config is not JSON: "),
    ({"config": _without("rootfs")}, 'image config has no rootfs of type "layers"'),
    ({"manifest": _without("layers")}, "manifest has no layers list"),
    ({"config": lambda c: dict(c, rootfs={"type": "layers", "diff_ids": []})},
     "image config lists 0 diff_ids for 1 layers"),
], ids=["manifest-not-json", "config-not-json", "config-without-rootfs", "manifest-without-layers",
        "config-diff-ids-short"])
def test_broken_manifest_or_config_is_refused(engine: Engine, tmp_path: Path, hooks: dict[str, Any],
                                              message: str) -> None:
    layout = make_layout(tmp_path / "image", "example.test/hostile:14", [[reg("file", b"x\n")]], **hooks)
    line = refused(engine, layout.path)
    assert line.startswith(f"mini-engine: {message}"), line


def test_unknown_layer_media_type_is_refused(engine: Engine, tmp_path: Path) -> None:
    lz4 = "application/vnd.oci.image.layer.v1.tar+lz4"
    layout = make_layout(tmp_path / "image", "example.test/hostile:15", [[reg("file", b"x\n")]],
                         descriptor=lambda _, d: dict(d, mediaType=lz4))
    line = refused(engine, layout.path)
    assert line == f"mini-engine: unknown layer media type {lz4!r}"


def test_too_many_layers_are_refused(engine: Engine, tmp_path: Path) -> None:
    def many(value: dict[str, Any]) -> dict[str, Any]:
        return dict(value, layers=value["layers"] * 126)

    def many_diff_ids(value: dict[str, Any]) -> dict[str, Any]:
        return dict(value, rootfs=dict(value["rootfs"], diff_ids=value["rootfs"]["diff_ids"] * 126))

    layout = make_layout(tmp_path / "image", "example.test/hostile:16", [[reg("file", b"x\n")]],
                         manifest=many, config=many_diff_ids)
    line = refused(engine, layout.path)
    assert line == "mini-engine: image has 126 layers; at most 125 are supported"


def test_diff_id_mismatch_is_refused(engine: Engine, tmp_path: Path) -> None:
    wrong = sha256(b"some other layer")

    def lie(value: dict[str, Any]) -> dict[str, Any]:
        return dict(value, rootfs=dict(value["rootfs"], diff_ids=[wrong]))

    layout = make_layout(tmp_path / "image", "example.test/hostile:17",
                         [[reg("file", b"x\n")]], config=lie)
    line = refused(engine, layout.path)
    assert line == (f"mini-engine: {named(layout, diff_id=wrong)}: content does not match its diff_id "
                    f"(got {layout.diff_ids[0][:19]}...)")
    assert not (engine.root / "layers" / wrong[7:]).exists()
    assert not (engine.root / "layers" / layout.diff_ids[0][7:]).exists()


# -- not an image at all -----------------------------------------------------------

@pytest.mark.parametrize("content", [random.Random(18).randbytes(64 << 10), b""], ids=["noise", "empty"])
def test_a_file_that_is_not_an_archive_is_refused(engine: Engine, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "noise.tar"
    path.write_bytes(content)
    line = refused(engine, path)
    assert line == f"mini-engine: {path}: not an image archive (not a tar file, plain or compressed)"


def test_missing_path(engine: Engine, tmp_path: Path) -> None:
    line = refused(engine, tmp_path / "nope.tar")
    assert line == f"mini-engine: {tmp_path}/nope.tar: no such file or directory"


def test_empty_directory_is_not_an_image(engine: Engine, tmp_path: Path) -> None:
    line = refused(engine, tmp_path)
    assert line == (f"mini-engine: {tmp_path}: neither an OCI image layout (oci-layout, index.json) "
                    "nor a docker save archive (manifest.json)")


# -- the positive control: whiteouts in overlay form ------------------------------

def test_whiteout_and_opaque_marker_become_overlay_whiteouts(engine: Engine, tmp_path: Path) -> None:
    before = snapshot(engine)
    layout = make_layout(tmp_path / "image", "example.test/hostile:19", [[
        directory("dir/"), reg("dir/kept", b"kept\n"), reg("dir/.wh..wh..opq"), reg(".wh.gone"),
        directory("etc/"), reg("etc/.wh..wh.plnk")]])
    result = engine("--stage", "5", "load", "-i", str(layout.path))
    assert result.returncode == 0, result.stderr
    try:
        assert result.stdout == f"Loaded image: {layout.tag}\n"
        diff = engine.root / "layers" / layout.diff_ids[0][7:] / "diff"
        gone = os.lstat(diff / "gone")
        assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
        assert (os.major(gone.st_rdev), os.minor(gone.st_rdev)) == (0, 0)
        assert os.getxattr(diff / "dir", "trusted.overlay.opaque", follow_symlinks=False) == b"y"
        assert (diff / "dir" / "kept").read_bytes() == b"kept\n"
        assert sorted(os.listdir(diff)) == ["dir", "etc", "gone"]
        assert os.listdir(diff / "etc") == []  # aufs bookkeeping is dropped
        assert sorted(os.listdir(diff / "dir")) == ["kept"]
    finally:
        rmi = engine("--stage", "5", "rmi", layout.tag)
        assert rmi.returncode == 0, rmi.stderr
    assert snapshot(engine) == before


def test_an_opaque_directory_hides_the_layers_below_it(engine: Engine, tmp_path: Path) -> None:
    """Across layers, in a running container: layer 2 deletes a file and a
    directory of layer 1, and makes dir/ opaque, so only its own dir/c shows."""
    layout = make_layout(tmp_path / "image", "example.test/hostile:20", [
        [*busybox_layer(), symlink("bin/ls", "busybox"), directory("dir/"), reg("dir/a", b"a\n"),
         directory("dir/sub/"), reg("dir/sub/b", b"b\n"), reg("file", b"f\n"), directory("gone-dir/"),
         reg("gone-dir/x", b"x\n")],
        [directory("dir/"), reg("dir/.wh..wh..opq"), reg("dir/c", b"c\n"), reg(".wh.file"),
         reg(".wh.gone-dir")],
    ])
    assert engine("--stage", "5", "load", "-i", str(layout.path)).returncode == 0
    try:
        result = engine("--stage", "5", "run", "--rm", layout.tag, "ls", "-A", "/", "/dir")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split("\n\n")[1] == "/dir:\nc\n"
        top = result.stdout.split("\n\n")[0].splitlines()[1:]
        assert "file" not in top and "gone-dir" not in top and "dir" in top
    finally:
        assert engine("--stage", "5", "rmi", layout.tag).returncode == 0



def test_a_sparse_member_is_refused(engine: Engine, tmp_path: Path) -> None:
    """A sparse file's holes cost nothing in the stream: 64 MiB for a few bytes, past the budget."""
    import gzip
    import subprocess

    sparse = tmp_path / "src" / "holes"
    sparse.parent.mkdir()
    with open(sparse, "wb") as f:
        f.truncate(64 << 20)
        f.write(b"data")
    tar = subprocess.run(["tar", "--sparse", "--format=gnu", "-C", str(sparse.parent), "-cf", "-", "holes"],
                         capture_output=True, check=True).stdout
    layout = make_layout(tmp_path / "image", "example.test/hostile:21", [[reg("placeholder")]],
                         compressed=lambda i, data: gzip.compress(tar))
    line = refused(engine, layout.path)
    assert line.endswith("member 'holes' is a sparse file; refused")


def test_a_member_too_deep_is_refused(engine: Engine, tmp_path: Path) -> None:
    layout = make_layout(tmp_path / "image", "example.test/hostile:22", [[reg("d/" * 300 + "f")]])
    assert "is more than 256 directories deep" in refused(engine, layout.path)


def test_the_store_is_not_open_to_other_users(engine: Engine, tmp_path: Path) -> None:
    """Layers hold setuid programs of strangers: 0700, as docker keeps /var/lib/docker."""
    layout = make_layout(tmp_path / "image", "example.test/hostile:23", [[reg("setuid", b"x", 0o4755)]])
    assert engine("--stage", "5", "load", "-i", str(layout.path)).returncode == 0
    try:
        for name in ("layers", "blobs", "l"):
            assert (engine.root / name).stat().st_mode & 0o777 == 0o700, name
    finally:
        assert engine("--stage", "5", "rmi", layout.tag).returncode == 0
