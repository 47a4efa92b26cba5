"""Everyday docker habits with images (issue 21, item 8), typed as a docker user types them.

``login`` that asks for the user and the password on the terminal, ``load`` from
stdin (``load < x.tar``, ``load -i -``), ``save`` of several images into one
archive, and ``save --format docker-archive``, docker save's ``manifest.json``
layout, which skopeo (containers/image, podman's library) reads back.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import select
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
from conftest import PODMAN_NEEDS_V2, Engine, ImageFiles, ok
from fixtures.registry import Registry

pytestmark = pytest.mark.stage(5)


@pytest.fixture
def engine_here(tmp_path: Path) -> Engine:
    """An engine with a store of its own."""
    return Engine(tmp_path / "lib", tmp_path / "run")


def shell(engine: Engine, script: str) -> subprocess.CompletedProcess[str]:
    """``script`` in sh, ``$ME`` the engine under test, as a user's shell runs it."""
    env = dict(engine.env, ME=" ".join(engine.argv()))
    return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=120)


def loaded_two(engine: Engine, images: ImageFiles) -> dict[str, str]:
    """example.test/single:1 and example.test/multi:1 in the store: name -> image id."""
    for archive in (images.single, images.multi_oci):
        ok(engine("--stage", "5", "load", "-q", "-i", str(archive)))
    return {name: json.loads(ok(engine("--stage", "5", "inspect", name)))[0]["Id"]
            for name in ("example.test/single:1", "example.test/multi:1")}


def leftovers(engine: Engine) -> list[str]:
    """A copy of stdin that load did not remove, or a half-written archive."""
    return sorted(p.name for p in engine.root.iterdir() if p.name.startswith((".load-", ".tmp-")))


def test_save_of_two_images_is_one_archive_that_load_reads_from_stdin(
        engine_here: Engine, test_images: ImageFiles, tmp_path: Path) -> None:
    ids = loaded_two(engine_here, test_images)
    archive = tmp_path / "two.tar"
    ok(engine_here("--stage", "5", "save", "-o", str(archive), *ids))
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    assert sorted(m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]) == \
        sorted(ids)
    assert ok(engine_here("--stage", "5", "rmi", *ids)).count("Deleted:") == 2
    # docker's two spellings of stdin: a redirect, and -i -.
    loaded = shell(engine_here, f"$ME --stage 5 load < {archive}")
    assert sorted(ok(loaded).splitlines()) == sorted(f"Loaded image: {name}" for name in ids)
    for name, image_id in ids.items():
        assert json.loads(ok(engine_here("--stage", "5", "inspect", name)))[0]["Id"] == image_id
    ok(engine_here("--stage", "5", "rmi", *ids))
    again = shell(engine_here, f"cat {archive} | $ME --stage 5 load -i - -q")
    assert (ok(again), len(ok(engine_here("--stage", "5", "images", "-q")).split())) == ("", 2)
    assert leftovers(engine_here) == []


def test_save_docker_archive_is_docker_saves_layout(engine_here: Engine, test_images: ImageFiles,
                                                     tmp_path: Path) -> None:
    ids = loaded_two(engine_here, test_images)
    archive = tmp_path / "docker.tar"
    # single twice under two names: one entry, both tags, as docker writes it.
    ok(engine_here("--stage", "5", "tag", "example.test/single:1", "example.test/single:again"))
    ok(engine_here("--stage", "5", "save", "--format", "docker-archive", "-o", str(archive),
                   "example.test/single:1", "example.test/multi:1", "example.test/single:again"))
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        members = {m.name: m for m in tar.getmembers()}
        single = manifest[0]
        assert single["RepoTags"] == ["example.test/single:1", "example.test/single:again"]
        assert [entry["Config"] for entry in manifest] == \
            [f"{ids[name][7:]}.json" for name in ("example.test/single:1", "example.test/multi:1")]
        # Each layer is the uncompressed tar its config's diff_id is the digest of.
        for entry in manifest:
            config = json.load(tar.extractfile(entry["Config"]))  # type: ignore[arg-type]
            assert [f"{d[7:]}/layer.tar" for d in config["rootfs"]["diff_ids"]] == entry["Layers"]
            for name in entry["Layers"]:
                assert members[name].isfile()
                data = tar.extractfile(name).read()  # type: ignore[union-attr]
                assert f"sha256:{hashlib.sha256(data).hexdigest()}" == f"sha256:{name.split('/')[0]}"
                assert data[257:262] == b"ustar"  # a tar, not a gzip stream
    # containers/image (skopeo's, podman's) reads it, and copies it checking every layer's digest.
    inspected = subprocess.run(["skopeo", "inspect", f"docker-archive:{archive}:example.test/multi:1"],
                               capture_output=True, text=True, timeout=120)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Layers"] == \
        [f"sha256:{name.split('/')[0]}" for name in manifest[1]["Layers"]]
    copied = subprocess.run(["skopeo", "copy", "-q", f"docker-archive:{archive}:example.test/single:again",
                             f"oci:{tmp_path / 'layout'}:copied"], capture_output=True, text=True, timeout=120)
    assert copied.returncode == 0, copied.stderr
    # And load reads it back: the same images, by id.
    ok(engine_here("--stage", "5", "rmi", "-f", "example.test/single:again", *ids))
    assert sorted(ok(engine_here("--stage", "5", "load", "-i", str(archive))).splitlines()) == \
        ["Loaded image: example.test/multi:1", "Loaded image: example.test/single:1",
         "Loaded image: example.test/single:again"]
    for name, image_id in ids.items():
        assert json.loads(ok(engine_here("--stage", "5", "inspect", name)))[0]["Id"] == image_id
    run = engine_here("--stage", "5", "run", "--rm", "example.test/single:again")
    assert run.stdout == "from-image 1000:1000 /srv/app /home/app\n", run.stderr


def test_save_keeps_each_name_given_of_one_image(engine_here: Engine, tmp_path: Path) -> None:
    """busybox is the bundled localhost/busybox: saved by that short name beside another
    tag of the same image, both names go into the archive, in either format."""
    ok(engine_here("--stage", "5", "run", "--rm", "busybox", "true"))
    ok(engine_here("tag", "busybox", "example.test/box:1"))
    for fmt in ("docker-archive", "oci-archive"):
        archive = tmp_path / f"{fmt}.tar"
        ok(engine_here("save", "--format", fmt, "-o", str(archive), "busybox", "example.test/box:1"))
        with tarfile.open(archive) as tar:
            if fmt == "docker-archive":
                names = json.load(tar.extractfile("manifest.json"))[0]["RepoTags"]  # type: ignore[arg-type]
            else:
                index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
                names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
        assert sorted(names) == ["example.test/box:1", "localhost/busybox:latest"]


@pytest.mark.vm
@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
@PODMAN_NEEDS_V2
def test_podman_loads_a_docker_archive_and_load_reads_podmans(tmpfs_engine: Engine) -> None:
    engine = tmpfs_engine
    ok(engine("--stage", "5", "run", "--rm", "busybox", "true"))  # the bundled image, in the store
    image_id = json.loads(ok(engine("inspect", "busybox")))[0]["Id"]
    ok(engine("tag", "busybox", "example.test/box:1"))
    work = engine.root.parent
    ours, theirs = work / "ours.tar", work / "theirs.tar"
    ok(engine("save", "--format", "docker-archive", "-o", str(ours), "busybox", "example.test/box:1"))
    runroot = tempfile.mkdtemp(prefix="me-podman-")  # podman wants a runroot of at most 50 characters
    podman = ["podman", "--root", str(work / "podman"), "--runroot", runroot,
              "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"]

    def run(*args: str) -> str:
        done = subprocess.run([*podman, *args], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    try:
        run("load", "-i", str(ours))
        listed = run("images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").splitlines()
        assert sorted(listed) == [f"example.test/box:1 {image_id}", f"localhost/busybox:latest {image_id}"]
        # And the other way: podman's docker-archive, read by load.
        run("save", "--format", "docker-archive", "-o", str(theirs), "example.test/box:1")
        ok(engine("rmi", "-f", "busybox"))  # -f: the image, with both its names
        assert ok(engine("load", "-i", str(theirs))) == "Loaded image: example.test/box:1\n"
        assert json.loads(ok(engine("inspect", "example.test/box:1")))[0]["Id"] == image_id
    finally:
        subprocess.run([*podman, "system", "reset", "-f"], capture_output=True, timeout=300)
        shutil.rmtree(runroot, ignore_errors=True)


@pytest.mark.parametrize(("script", "message"), [
    ("$ME --stage 5 load < /dev/null",
     "requested load from stdin, but stdin is empty: load < FILE, or -i FILE"),
    ("echo junk | $ME --stage 5 load -i -",
     "stdin: not an image archive (not a tar file, plain or compressed)"),
    ("$ME --stage 5 save --format docker-dir busybox > /dev/null",
     "argument --format: invalid choice: 'docker-dir' (choose from 'oci-archive', 'docker-archive') "
     "(see 'mini-engine save --help')"),
    ("$ME --stage 5 save --format docker-archive -o /nonexistent/x.tar busybox",
     "cannot write /nonexistent/x.tar: No such file or directory"),
])
def test_load_and_save_errors_are_one_line(engine_here: Engine, script: str, message: str) -> None:
    ok(engine_here("--stage", "5", "run", "--rm", "busybox", "true"))  # the bundled image, in the store
    result = shell(engine_here, script)
    assert (result.returncode, result.stdout, result.stderr) == (125, "", f"mini-engine: {message}\n")
    assert leftovers(engine_here) == []
    assert len(ok(engine_here("--stage", "5", "images", "-q")).split()) == 1


def _read_until(master: int, wanted: bytes, seen: bytearray, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no {wanted!r} in {bytes(seen)!r}"
        try:
            seen += os.read(master, 1024)
        except OSError:  # EIO: the other side closed
            raise AssertionError(f"no {wanted!r} in {bytes(seen)!r}") from None


def test_login_asks_for_what_the_flags_do_not_give(engine_here: Engine, tmp_path: Path) -> None:
    work = tmp_path / "private"
    work.mkdir()
    private = Registry(work, users={"alice": "wonderland"})
    try:
        master, slave = pty.openpty()
        proc = engine_here.popen("--stage", "5", "login", private.host, stdin=slave, stdout=slave,
                                 stderr=subprocess.PIPE)
        os.close(slave)
        seen = bytearray()
        _read_until(master, b"Username: ", seen)
        os.write(master, b"alice\n")
        _read_until(master, b"Password: ", seen)
        os.write(master, b"wonderland\n")
        _read_until(master, b"Login Succeeded\r\n", seen)
        assert proc.wait(timeout=60) == 0, proc.stderr.read()  # type: ignore[union-attr]
        os.close(master)
        text = bytes(seen).replace(b"\r", b"").decode()
        # The terminal echoed the user name, not the password.
        assert text == "Username: alice\nPassword: \nLogin Succeeded\n"
        auths = json.loads((engine_here.root / "auth.json").read_text())["auths"]
        assert list(auths) == [private.host]
        # -u given: only the password is asked for.
        ok(engine_here("--stage", "5", "logout", private.host))
        master, slave = pty.openpty()
        proc = engine_here.popen("--stage", "5", "login", "-u", "alice", private.host, stdin=slave,
                                 stdout=slave, stderr=subprocess.PIPE)
        os.close(slave)
        seen = bytearray()
        _read_until(master, b"Password: ", seen)
        os.write(master, b"rabbit\n")
        assert proc.wait(timeout=60) == 125
        assert "log in with" in proc.stderr.read()  # type: ignore[union-attr]
        os.close(master)
        assert "Username" not in bytes(seen).decode()
        assert not (engine_here.root / "auth.json").exists() or \
            json.loads((engine_here.root / "auth.json").read_text())["auths"] == {}
        # No terminal and nothing to read the password from: one line, nothing asked.
        piped = engine_here("--stage", "5", "login", private.host, input="")
        assert (piped.returncode, piped.stdout, piped.stderr) == (
            125, "", "mini-engine: login: no terminal to ask on: give -u USER and --password-stdin (or -p)\n")
    finally:
        private.stop()
