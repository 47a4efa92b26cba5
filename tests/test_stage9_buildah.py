"""Stage 9 against buildah: the same Containerfiles, built by both, give the same images.

``buildah bud`` (Debian's buildah, with its own storage in the test's
directory: the vfs driver, and RUN in a chroot, since this host's cgroup
controllers are on v1) and ``mini-engine build`` build each Containerfile
from the same context on the same base image (the bundled busybox with a
label, built by mini-engine and handed to buildah as an OCI archive).
Both images go into one OCI layout (buildah push; mini-engine save and
skopeo), ``umoci unpack`` unpacks each, and the root filesystems are
compared file by file: type, mode, owner, content, link target, xattrs,
and which names are hard links of one another. The configs are compared
where the image spec fixes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from conftest import Engine

pytestmark = [pytest.mark.stage(9), pytest.mark.root,
              pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah is not installed "
                                 "(scripts/setup.sh --test installs it)")]

CONTAINERFILES = {
    "whiteouts-and-links": """\
FROM localhost/base AS base
ARG GREETING=hello
ENV WHO=world DIR=/opt/app
RUN mkdir -p $DIR/a $DIR/b /keep && echo "$GREETING ${WHO}" > $DIR/a/one && echo two > $DIR/b/two \\
 && ln $DIR/a/one $DIR/a/one-again && ln -s a/one $DIR/link
FROM base AS second
# Deleted in a later stage than made: whiteouts, and a directory made again (opaque)
RUN rm $DIR/b/two && rm -rf $DIR/a && mkdir $DIR/a && echo new > $DIR/a/new && rm /bin/vi
FROM second
RUN cp /bin/busybox /usr/bin/suid && chmod 4755 /usr/bin/suid && chmod 2755 $DIR && mkdir -m 1777 /shared
""",
    "user-workdir-copy-from": """\
ARG BASE=localhost/base
FROM ${BASE} AS build
ARG VERSION
RUN mkdir -p /out/lib && echo "version ${VERSION:-none}" > /out/VERSION && echo lib > /out/lib/x.so \\
 && chown -R 1000:1000 /out && chmod 640 /out/lib/x.so
FROM ${BASE}
COPY --from=build /out/ /app/
COPY --chown=1000:100 files/ /app/files/
COPY top.txt /app/
WORKDIR /app/work
USER 1000:100
ENV PATH=/app:$PATH LABELLED="${VERSION:-unset}"
LABEL org.example.version=1 "org.example.two words"=yes
EXPOSE 8080 53/udp
VOLUME /data
STOPSIGNAL SIGINT
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/VERSION"]
""",
}
FILES = {"files/a.txt": "a\n", "files/sub/b.txt": "b\n", "top.txt": "top\n"}
# What the image spec fixes in the config (config.md), and both must agree on.
EMPTY = hashlib.sha256(b"").hexdigest()
CONFIG_KEYS = ("Env", "Entrypoint", "Cmd", "WorkingDir", "User", "ExposedPorts", "Volumes", "StopSignal")


def run(*argv: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kw)
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout}{result.stderr}"
    return result


def tree(root: Path) -> tuple[dict[str, tuple[Any, ...]], list[list[str]]]:
    """Every entry under ``root``: (type, mode, uid, gid, content or target, xattrs); and the hard links."""
    entries: dict[str, tuple[Any, ...]] = {}
    inodes: dict[int, list[str]] = defaultdict(list)
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            relative = os.path.relpath(path, root)
            st = os.lstat(path)
            kind = stat.S_IFMT(st.st_mode)
            content: Any = None
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                if st.st_nlink > 1:
                    inodes[st.st_ino].append(relative)
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                content = (os.major(st.st_rdev), os.minor(st.st_rdev))
            xattrs = {x: os.getxattr(path, x, follow_symlinks=False)
                      for x in os.listxattr(path, follow_symlinks=False)
                      if x.startswith(("user.", "security.capability"))}
            entries[relative] = (kind, oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid, content, xattrs)
    return entries, sorted(sorted(names) for names in inodes.values() if len(names) > 1)


# buildah's RUN in a chroot bind-mounts these over whatever the image has, and leaves
# the empty files and directory it made to mount on in the image when it had none.
# docker and podman leave nothing of their own; neither does mini-engine.
BUILDAH_MOUNT_POINTS = {"etc/hostname": EMPTY, "etc/resolv.conf": EMPTY, "etc/hosts": EMPTY, "run": None}


def _buildah_mount_point(path: str, mine: dict[str, Any], theirs: dict[str, Any]) -> bool:
    return path in BUILDAH_MOUNT_POINTS and path not in mine and theirs[path][4] == BUILDAH_MOUNT_POINTS[path]


def layout_config(layout: Path, tag: str) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    manifest = next(m for m in index["manifests"]
                    if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    manifest_json = json.loads((layout / "blobs" / "sha256" / manifest["digest"][7:]).read_text())
    return json.loads((layout / "blobs" / "sha256" / manifest_json["config"]["digest"][7:]).read_text())


@pytest.fixture
def buildah(tmp_path: Path, engine: Engine) -> Any:
    """buildah with storage of its own, and one base image in both stores: localhost/base,
    built by mini-engine from the bundled busybox (so buildah also builds on an image of ours)."""
    storage = tmp_path / "buildah"
    base = ["buildah", "--root", str(storage / "root"), "--runroot", str(storage / "run"),
            "--storage-driver", "vfs"]
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "Containerfile").write_text("FROM busybox\nLABEL org.example.base=yes\n")
    result = engine("build", "-q", "-t", "localhost/base", str(tmp_path / "base"))
    assert result.returncode == 0, result.stderr
    archive = tmp_path / "base.tar"
    assert engine("save", "-o", str(archive), "localhost/base").returncode == 0
    image = run(*base, "pull", "-q", f"oci-archive:{archive}").stdout.strip()
    run(*base, "tag", image, "localhost/base")
    yield base
    subprocess.run([*base, "rmi", "--all", "--force"], capture_output=True, timeout=120)
    shutil.rmtree(storage, ignore_errors=True)
    engine("rmi", "localhost/base")
    engine("image", "prune")


@pytest.mark.parametrize("name", sorted(CONTAINERFILES))
def test_buildah_and_mini_engine_build_the_same_image(engine: Engine, buildah: list[str], tmp_path: Path,
                                                      name: str) -> None:
    context = tmp_path / "ctx"
    for path, content in {"Containerfile": CONTAINERFILES[name], **FILES}.items():
        (context / path).parent.mkdir(parents=True, exist_ok=True)
        (context / path).write_text(content)
    args = ["--build-arg", "VERSION=1.2"]
    # chroot isolation runs on the host's network (it allows no other); no RUN here uses one.
    run(*buildah, "bud", "--isolation", "chroot", "--format", "oci", *args,
        "-t", "localhost/theirs", str(context))
    result = engine("build", *args, "-t", "localhost/mine", str(context), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    layout = tmp_path / "layout"
    run(*buildah, "push", "localhost/theirs", f"oci:{layout}:theirs")
    mine_archive = tmp_path / "mine.tar"
    try:
        assert engine("save", "-o", str(mine_archive), "localhost/mine").returncode == 0
    finally:
        engine("rmi", "-f", "localhost/mine")
        engine("image", "prune")
    run("skopeo", "copy", "-q", f"oci-archive:{mine_archive}", f"oci:{layout}:mine")
    for tag in ("mine", "theirs"):
        run("umoci", "unpack", "--image", f"{layout}:{tag}", str(tmp_path / tag))

    mine, mine_links = tree(tmp_path / "mine" / "rootfs")
    theirs, their_links = tree(tmp_path / "theirs" / "rootfs")
    differ = {path: (mine.get(path), theirs.get(path)) for path in sorted(set(mine) | set(theirs))
              if mine.get(path) != theirs.get(path) and not _buildah_mount_point(path, mine, theirs)}
    assert differ == {}, "\n".join(f"{path}: mine {a}, buildah's {b}" for path, (a, b) in differ.items())
    assert mine_links == their_links

    mine_config, their_config = layout_config(layout, "mine"), layout_config(layout, "theirs")
    for key in CONFIG_KEYS:
        assert mine_config["config"].get(key) == their_config["config"].get(key), key
    their_labels = {k: v for k, v in (their_config["config"].get("Labels") or {}).items()
                    if k != "io.buildah.version"}  # buildah signs its work
    assert mine_config["config"].get("Labels") == (their_labels or None)
    for key in ("os", "architecture"):
        assert mine_config[key] == their_config[key]
