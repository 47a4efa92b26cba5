# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lab 05: OCI images, from an archive to a running process
#
# Chapter: `chapters/05-images.md`. Run as root, headless with
# `python labs/05-images/lab.py`, or open this file as a notebook.
#
# The lab builds an image with real tools (umoci makes the layer and the
# config, skopeo writes the archive), loads it into the engine's store,
# looks at every file the store keeps, runs it, saves it back and removes
# it. It uses an engine root of its own (labkit.own_roots), so your
# store in /var/lib/mini-engine is not touched.

# %%
import gzip
import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from typing import IO

from mini_engine.base.errors import ContainerError
from mini_engine.images import busybox, reference
from mini_engine.labkit import CheckFailed, Result, check, check_answers, engine, own_roots, require_root, show
from mini_engine.paths import Paths

require_root()
# Every `mini-engine` below inherits the lab's own store and runtime state.
store = own_roots("05-images")
work = tempfile.mkdtemp(prefix="lab05-")  # the lab's files: the layout, the archives
IMAGE = "example.test/lab:1"


def sh(*argv: str) -> str:
    """Run a tool as you would type it; stop the lab if it fails."""
    print(f"$ {shlex.join(argv)}")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    show(Result(done.returncode, done.stdout, done.stderr))
    if done.returncode:
        raise CheckFailed(f"{argv[0]} failed")
    return done.stdout


def sha256_of(f: IO[bytes]) -> str:
    return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def blob(digest: str) -> str:
    """Where the store keeps the blob ``digest``."""
    return os.path.join(store, "blobs", "sha256", digest.removeprefix("sha256:"))


# %% [markdown]
# ## 1. References: what a name means
# `busybox` is short for `docker.io/library/busybox:latest`. The first
# component is a registry only if it has a "." or a ":", or is `localhost`.

# %%
for text in ("busybox", "busybox:1.36", "team/app", "localhost/busybox", "localhost:5000/team/app:v2",
             "ghcr.io/owner/tool", "busybox@sha256:" + "ab" * 32):
    print(f"{text:<32} -> {reference.parse(text)}")
check(str(reference.parse("busybox")) == "docker.io/library/busybox:latest",
      "a one-word name is an official image on Docker Hub, tag latest")
check(reference.parse("team/app").domain == "docker.io", "team/app: 'team' is no registry (no '.', no ':')")
check(reference.parse("localhost:5000/team/app:v2").domain == "localhost:5000",
      "localhost:5000 is a registry: its ':' is a port, not a tag")
refused = []
for bad in ("Busybox", "busybox:", "team//app"):
    try:
        reference.parse(bad)
    except ContainerError as exc:
        print(exc)
        refused.append(bad)
check(len(refused) == 3, "upper case, an empty tag, an empty component: refused")

# %% [markdown]
# ## 2. Build an image with umoci, write an archive with skopeo
# umoci makes an OCI image layout, unpacks the (empty) image into a bundle,
# repacks it with the bundled busybox copied in (one gzip layer), and
# writes the image config: Entrypoint, Cmd, Env, User, WorkingDir.

# %%
rootfs = busybox.image(Paths.from_options(None, None)).rootfs
layout, bundle = os.path.join(work, "layout"), os.path.join(work, "bundle")
archive = os.path.join(work, "lab.tar")
sh("umoci", "init", "--layout", layout)
sh("umoci", "new", "--image", f"{layout}:lab")
sh("umoci", "unpack", "--image", f"{layout}:lab", bundle)
shutil.copytree(rootfs, os.path.join(bundle, "rootfs"), symlinks=True, dirs_exist_ok=True)
with open(os.path.join(bundle, "rootfs", "etc", "passwd"), "w") as f:
    f.write("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n")
with open(os.path.join(bundle, "rootfs", "etc", "group"), "w") as f:
    f.write("root:x:0:\napp:x:1000:\nstaff:x:50:app\n")
sh("umoci", "repack", "--image", f"{layout}:lab", bundle)
sh("umoci", "config", "--image", f"{layout}:lab", "--config.entrypoint", "/bin/sh",
   "--config.cmd", "-c", "--config.cmd", 'echo "$GREETING from $(id -un) ($(id -u):$(id -g)) in $PWD"',
   "--config.env", "GREETING=hello", "--config.user", "app", "--config.workingdir", "/srv")
sh("skopeo", "--insecure-policy", "copy", f"oci:{layout}:lab", f"oci-archive:{archive}:{IMAGE}")
check(os.path.getsize(archive) > 0, f"{archive} holds the image, named {IMAGE}")

# %% [markdown]
# ## 3. Load it, and look into the store
# `load` copies each blob into `blobs/sha256/`, checking its digest,
# unpacks each layer into `layers/<diff_id>/diff`, gives it a short link in
# `l/`, records the image in `images/<id>.json` and its tag in `repositories.json`
# (with the manifest it came by: one image may come by several).

# %%
engine(f"--stage 5 load -i {archive}")
engine("--stage 5 images")
info = json.loads(engine(f"--stage 5 inspect {IMAGE}").stdout)[0]
check(info["Config"]["Entrypoint"] == ["/bin/sh"] and info["Config"]["User"] == "app",
      "the image config came with it")

blobs = os.path.join(store, "blobs", "sha256")
print("blobs/sha256:")
for name in sorted(os.listdir(blobs)):
    print(f"  {name[:16]}...  {os.path.getsize(os.path.join(blobs, name)):>8} bytes")
layer = info["Layers"][0]
check(set(os.listdir(blobs)) == {d[len("sha256:"):] for d in (info["Manifest"], info["Id"], layer["digest"])},
      "three blobs: the manifest, the config, the layer")
for name in os.listdir(blobs):
    with open(os.path.join(blobs, name), "rb") as f:
        check(sha256_of(f) == f"sha256:{name}", f"blob {name[:12]}'s name is the sha256 of its bytes")
with open(blob(info["Manifest"])) as f:
    print("the manifest:", json.dumps(json.load(f), indent=2))
with open(blob(info["Id"]), "rb") as f:
    check(sha256_of(f) == info["Id"], "the image's id is the digest of its config")
with gzip.open(blob(layer["digest"]), "rb") as f:
    check(sha256_of(f) == layer["diffID"] != layer["digest"],
          "the layer's digest names the gzip blob; its diff_id is the sha256 of the tar inside")
layer_dir = os.path.join(store, "layers", layer["diffID"].removeprefix("sha256:"))
with open(os.path.join(layer_dir, "link")) as f:
    short = f.read()
print(f"l/{short} -> {os.readlink(os.path.join(store, 'l', short))}")
check(os.readlink(os.path.join(store, "l", short)) == f"../layers/{os.path.basename(layer_dir)}/diff",
      "the layer is unpacked in layers/<diff_id>/diff, with a short link l/<10 hex> to it")
check(os.path.isfile(os.path.join(layer_dir, "diff", "bin", "busybox")), "and busybox is in it")
with open(os.path.join(store, "repositories.json")) as f:
    tags = json.load(f)
print("repositories.json:", tags)
records = os.listdir(os.path.join(store, "images"))
print("images:", records)
check(tags == {IMAGE: {"Id": info["Id"], "Manifest": info["Manifest"]}}
      and records == [f"{info['Id'].removeprefix('sha256:')}.json"],
      "one tag, pointing at one image record, images/<id>.json, and at the manifest it came by")

# %% [markdown]
# ## 4. Run it: the image config becomes the process
# Entrypoint + Cmd are the argv, Env the environment, User the uid and
# gid (looked up in the image's /etc/passwd), WorkingDir the cwd. Then
# docker's overrides: ARGS replace Cmd, `--entrypoint` replaces the
# Entrypoint and drops Cmd, `-u`, `-e`, `-w`.

# %%
process = json.loads(engine(f"--stage 5 spec {IMAGE}", quiet=True).stdout)["process"]
print("config.json's process:", json.dumps(process, indent=2))
result = engine(f"--stage 5 run --rm {IMAGE}")
check(result.stdout == "hello from app (1000:1000) in /srv\n",
      "Entrypoint + Cmd ran, with the image's Env, as its User, in its WorkingDir")
result = engine(f"--stage 5 run --rm -u 0 {IMAGE}")
check(result.stdout == "hello from root (0:0) in /srv\n", "-u 0: root instead")
result = engine(f"--stage 5 run --rm -u app:staff {IMAGE}")
check(result.stdout == "hello from app (1000:50) in /srv\n", "-u app:staff: the group by name, from /etc/group")
result = engine(["--stage", "5", "run", "--rm", "-e", "GREETING=bonjour", "-w", "/tmp", IMAGE])
check(result.stdout == "bonjour from app (1000:1000) in /tmp\n",
      "-e replaces the image's GREETING, -w its WorkingDir")
result = engine(["--stage", "5", "run", "--rm", IMAGE, "-c", "grep ^Uid /proc/self/status"])
check(result.stdout.split() == ["Uid:", "1000", "1000", "1000", "1000"],
      "ARGS replace Cmd; the Entrypoint (/bin/sh) stays; the kernel says uid 1000")
result = engine(f"--stage 5 run --rm --entrypoint id {IMAGE}")
check(result.stdout.startswith("uid=1000(app) gid=1000(app) groups=") and "50(staff)" in result.stdout,
      "--entrypoint id drops Cmd too; app is in staff, a supplementary group")
result = engine(f"--stage 5 run --rm -u nobody {IMAGE}")
check(result.returncode == 125 and "unable to find user nobody" in result.stderr,
      "a user the image's /etc/passwd lacks: refused (the host's passwd is never read)")

# %% [markdown]
# ## 5. Save it, and let skopeo read it back
# `save` writes an OCI archive: `oci-layout`, `index.json` and the very
# blobs that were loaded, so the digests are the same.

# %%
saved = os.path.join(work, "saved.tar")
engine(f"--stage 5 save -o {saved} {IMAGE}")
inspected = json.loads(sh("skopeo", "inspect", f"oci-archive:{saved}"))
check(inspected["Digest"] == info["Manifest"], "skopeo finds the same manifest digest")
check(inspected["Layers"] == [layer["digest"]], "and the same layer")

# %% [markdown]
# ## 6. Push it to a registry on loopback, and pull it back
# Debian's `docker-registry` (the CNCF distribution registry) serves the
# same objects over HTTP under `/v2/`. skopeo pushes the image; `pull`
# fetches the manifest, then each blob it lacks, checked by digest as it
# streams. Plain HTTP is allowed because the registry is on 127.0.0.1.

# %%
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
with open(os.path.join(work, "registry.yml"), "w") as f:
    json.dump({"version": 0.1, "log": {"level": "error"}, "http": {"addr": f"127.0.0.1:{port}"},
               "storage": {"filesystem": {"rootdirectory": os.path.join(work, "registry")}}}, f)
registry = subprocess.Popen(["docker-registry", "serve", os.path.join(work, "registry.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
        break
    except OSError:
        time.sleep(0.05)
REMOTE = f"127.0.0.1:{port}/lab/hello:1"
sh("skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false", f"oci:{layout}:lab", f"docker://{REMOTE}")
engine(f"--stage 5 rmi {IMAGE}")
result = engine(f"--stage 5 pull {REMOTE}")
check(result.returncode == 0, "pulled from the registry")
record = json.loads(engine(f"--stage 5 inspect {REMOTE}", quiet=True).stdout)[0]
check(record["Id"] == info["Id"], "the same image: its config has the same digest")
result = engine(f"--stage 5 run --rm {REMOTE}")
check(result.returncode == 0, "and it runs")
registry.terminate()
registry.wait()
IMAGE = REMOTE

# %% [markdown]
# ## 7. rmi: the tag, the record, then everything nothing uses

# %%
engine(f"--stage 5 rmi {IMAGE}")
left = {d: os.listdir(os.path.join(store, d)) for d in ("images", "layers", "l", "blobs/sha256")}
print(left)
check(not any(left.values()), "no image, no layer directory, no link, no blob is left")
check(engine("--stage 5 images", quiet=True).stdout.count("\n") == 1, "images lists nothing")

# %%
shutil.rmtree(work)

# %% [markdown]
# ## Your turn
# - `mini-engine run --rm busybox true` at stage 5, then `mini-engine images`:
#   where does `localhost/busybox:latest` come from? (`busybox.import_into`.)
# - Change one byte of a blob in a copy of `lab.tar` and `load` it: which
#   check stops it, and what is left in the store?
# - Why is the image's id the digest of its config, not of its manifest?

# %% [markdown]
# ## Check your answers
# Write your answer in `my_answers` and run the cell: it says right or
# wrong. (The lab keeps only a digest of the right answers; the answers,
# and why, are in the instructor guide.)
#
# 1. An image's id is the digest of which of its blobs? (One word.)
# 2. A layer's diff_id is the digest of the layer's tar: compressed, or
#    uncompressed? (One word.)

# %%
my_answers = {1: None, 2: None}
check_answers("05-images", my_answers, {
    1: ('bf64d7d33c4b51e9', 'fa7d3d092f681aee', 'da705bbf2a86e823', 'f7c6c3414909fa97', '734b4a512f32c194',),
    2: ('f0947a52752da5cb', '62a1f51599bc7faa', '3ab7be9db3cf7897',),
})

# %%
print("lab 05 done")
