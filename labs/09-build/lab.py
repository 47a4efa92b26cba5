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
# # Lab 09: an image built, layer by layer
#
# Chapter: `chapters/09-build.md`. Run as root, headless with
# `python labs/09-build/lab.py`, or open this file as a notebook.
#
# A build is a chain of containers: every RUN runs on an overlay of the
# layers so far, and its upper directory becomes the next layer. This lab
# builds an image of two stages and reads what the build wrote into the
# store, as a registry or another engine would read it.

# %%
import atexit
import gzip
import io
import json
import os
import shutil
import tarfile
import tempfile

from mini_engine.labkit import check, check_answers, engine, own_roots, require_root

require_root()
root = own_roots("09-build")
context = tempfile.mkdtemp(prefix="lab09-context-")
atexit.register(shutil.rmtree, context, True)
os.chmod(context, 0o755)


# The lab's containers run with no network (a build's RUN has none either):
# the bridge and its nft table are shared by every engine root on this machine.


def write(name: str, text: str) -> None:
    with open(os.path.join(context, name), "w") as f:
        f.write(text)


def layers(image: str) -> list[dict[str, tarfile.TarInfo]]:
    """Each layer of the image, as the members of its tar, read from its blob in the store."""
    record = json.loads(engine(["inspect", image], quiet=True).stdout)[0]
    out = []
    for entry in record["Layers"]:
        with open(os.path.join(root, "blobs", "sha256", entry["digest"][7:]), "rb") as f:
            data = f.read()
        if entry["mediaType"].endswith("+gzip"):
            data = gzip.decompress(data)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            out.append({m.name: m for m in tar.getmembers()})
    return out


# %% [markdown]
# ## 1. A Containerfile of two stages
# The first stage makes files and deletes some of busybox's; the second
# goes on from it, replaces a directory, and copies a file of the context.

# %%
write("Containerfile", """\
FROM busybox AS base
ARG WHO=lab
RUN mkdir -p /opt/tool && echo "built by ${WHO}" > /opt/tool/about \\
 && ln /opt/tool/about /opt/tool/about.txt && rm /bin/vi
FROM base
RUN rm -rf /opt/tool && mkdir /opt/tool && echo new > /opt/tool/new
COPY notes.txt /opt/
CMD ["cat", "/opt/notes.txt"]
""")
write("notes.txt", "first notes\n")
result = engine(["build", "-t", "lab/tool", context])
check(result.returncode == 0, "the build succeeded")
result = engine(["run", "--rm", "--network", "none", "lab/tool"])
check(result.stdout == "first notes\n", "the image runs its CMD")

# %% [markdown]
# ## 2. The layers, as a registry ships them
# busybox's layer, then one per RUN and one for COPY. The first RUN's layer
# holds a hard link and a whiteout; the second's an opaque directory.

# %%
tars = layers("lab/tool")
check(len(tars) == 4, "four layers: busybox's, two RUNs, one COPY")
first, second, third = tars[1], tars[2], tars[3]
print(sorted(first))
link = first["opt/tool/about.txt"]
check(link.islnk() and link.linkname == "opt/tool/about",
      "a second name of one file is a hard link member, written after the first")
check("bin/.wh.vi" in first, "rm /bin/vi (a file of the layer below) became a whiteout, .wh.vi")
print(sorted(second))
check("opt/tool/.wh..wh..opq" in second and "opt/tool/new" in second,
      "a directory removed and made again is opaque: nothing below shows through")
check(sorted(third) == ["opt", "opt/notes.txt"], "COPY's layer: the file and its directory")
listing = engine(["run", "--rm", "--network", "none", "lab/tool", "ls", "/opt/tool"]).stdout.split()
check(listing == ["new"], "in the running image, only the new /opt/tool")

# %% [markdown]
# ## 3. The cache
# The same build again comes from the cache. A changed file that COPY
# copies changes that step's key and every key after it.

# %%
result = engine(["build", "-t", "lab/tool", context])
check(result.stdout.count("--> Using cache") == 3, "every layer from the cache")
write("notes.txt", "second notes\n")
result = engine(["build", "-t", "lab/tool", context])
check(result.stdout.count("--> Using cache") == 2, "the two RUNs from the cache, COPY built again")
result = engine(["run", "--rm", "--network", "none", "lab/tool"])
check(result.stdout == "second notes\n", "the image has the new file")

# %% [markdown]
# ## 4. A step that fails
# One line naming the Containerfile's line, exit code 1, and nothing left:
# no working container, no new layer.

# %%
blobs_before = sorted(os.listdir(os.path.join(root, "blobs", "sha256")))
write("Containerfile", "FROM busybox\nRUN echo half > /half && false\n")
result = engine(["build", "--no-cache", "-t", "lab/broken", context])
check(result.returncode == 1, "exit code 1, as docker build")
said = "mini-engine: Containerfile:2: RUN echo half > /half && false: exited with code 1"
check(result.stderr.strip() == said, "the error names the line")
check(os.listdir(os.path.join(root, "containers")) == [], "no container left")
check(sorted(os.listdir(os.path.join(root, "blobs", "sha256"))) == blobs_before, "no blob written")
engine(["rmi", "lab/tool"])

# %% [markdown]
# ## Your turn
# - Add `USER 1000` and `WORKDIR /home/app` before the COPY. Which new
#   layer appears, and who owns the copied file? (`--chown` changes it.)
# - Set `SOURCE_DATE_EPOCH=1700000000` in the environment and build twice
#   with `--no-cache`: compare the image ids.
# - Build with `--target base`: what does the image lack?

# %% [markdown]
# ## Check your answers
# Write your answer in `my_answers` and run the cell: it says right or
# wrong. (The lab keeps only a digest of the right answers; the answers,
# and why, are in the instructor guide.)
#
# 1. The working container of a step is an overlay of the layers so far and
#    one empty directory. Which of the overlay's directories becomes the
#    step's new layer? (overlayfs's name for it.)
# 2. A RUN removes a file an earlier layer holds. What does the new layer's
#    tar hold in its place? (The OCI image spec's name for such an entry.)

# %%
my_answers = {1: None, 2: None}
check_answers("09-build", my_answers, {
    1: ('7c395109c77188af', 'ec8a3c68c2b7d08c', '1c3e33f6b509fa3a', '8503cd7b303605fd',),
    2: ('592406255186220c', '763badb1cf1fdf13', '77beab5c4c6ad474', '870094c7117760b5',),
})

# %%
print("lab 09 done")
