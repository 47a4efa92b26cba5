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
# # Lab 01: a root filesystem of its own, and why chroot is no jail
#
# Chapter: `chapters/01-chroot.md`. Run as root, headless with
# `python labs/01-chroot/lab.py`, or open this file as a notebook.

# %%
import os

from mini_engine import busybox
from mini_engine.labkit import check, engine, own_roots, require_root
from mini_engine.paths import Paths

require_root()
own_roots("01-chroot")
paths = Paths.from_options(None, None)

# %% [markdown]
# ## 1. The bundled image
# One static binary from Debian's busybox-static, a symlink per applet, a
# few files in /etc. A static binary asks for no loader (no PT_INTERP), so
# nothing else of the host has to come along.

# %%
image = busybox.image(paths)
print("rootfs:", image.rootfs)
print(sorted(os.listdir(image.rootfs)))
print("/bin/sh ->", os.readlink(os.path.join(image.rootfs, "bin/sh")))
check(busybox.is_static(os.path.join(image.rootfs, "bin/busybox")), "busybox is a static binary")

# %% [markdown]
# ## 2. chroot: "/" is now the image
# Stage 1 adds `root.path` to config.json and the runtime calls chroot(2).
# The host's files are out of sight, but the process IDs are the host's.

# %%
result = engine("--stage 1 run --rm busybox sh -c 'ls /; echo pid $$'")
check("etc" in result.stdout.split(), "ls / lists the image's directories")
check(int(result.stdout.split()[-1]) > 1, "the container's shell has a host PID, not 1")
check(engine("--stage 1 run --rm busybox test -e /etc/os-release").returncode == 1,
      "the host's /etc/os-release is out of sight")

# %% [markdown]
# ## 3. Breaking out
# The container's root user may mount. /proc lists every process of the
# host, and `/proc/PID/root` is *that process's* root: for the engine,
# the host's "/". chroot changed where our paths start, nothing else.

# %%
breakout = ("mount -t proc proc /proc && for root in /proc/[0-9]*/root; do "
            "cat $root/etc/os-release 2>/dev/null && exit 0; done; echo no way out; exit 1")
with open("/etc/os-release") as f:
    host_release = f.read()
result = engine(f"--stage 1 run --rm busybox sh -c '{breakout}'")
check(result.stdout == host_release, "from inside the chroot we read the host's /etc/os-release")

# %% [markdown]
# ## 4. The same escape at stage 2
# A PID namespace shows only the container's processes in its /proc, and
# pivot_root in a mount namespace detaches the host's root: no process
# left to borrow a root from.

# %%
result = engine(f"--stage 2 run --rm busybox sh -c '{breakout}'")
check(result.stdout == "no way out\n", "stage 2 stops the breakout")

# %% [markdown]
# ## Your turn
# - The stage-1 container mounted /proc inside its rootfs, which is on the
#   host's mount table. Why is it gone after the run? (`runtime/lifecycle.py`, `delete`.)
# - Try the classic escape instead: a second chroot into a subdirectory
#   while keeping the working directory outside it. Which line of
#   `runtime/chroot.py` closes that door for the first chroot?

# %%
print("lab 01 done")
