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
# # Lab 04: overlayfs, a copy-on-write root for every container
#
# Chapter: `chapters/04-overlayfs.md`. Run as root, headless with
# `python labs/04-overlayfs/lab.py`, or open this file as a notebook.
#
# At stage 4 the engine no longer copies the image for each container: it
# mounts an overlay whose lower layer is the image and whose upper layer is
# the container's own, empty at first.

# %%
import os
import shutil
import stat
import tempfile

from mini_engine.containers import overlay
from mini_engine.labkit import check, check_answers, engine, own_roots, require_root
from mini_engine.paths import Paths

require_root()
own_roots("04-overlayfs")
# Where the engine keeps things: /var/lib/mini-engine, or MINI_ENGINE_ROOT.
paths = Paths.from_options(None, None)
bundled = os.path.join(paths.bundled, "busybox", "rootfs")


def mount_options(mountinfo_line: str) -> tuple[str, dict[str, str]]:
    """The filesystem type and the options of a mountinfo line (see proc(5))."""
    fstype, _source, options = mountinfo_line.split(" - ")[1].split()
    return fstype, dict(option.partition("=")[::2] for option in options.split(","))


def ls(directory: str) -> None:
    """``ls -l`` of the kernel's facts: mode, device numbers, size, name."""
    for name in sorted(os.listdir(directory)):
        st = os.lstat(os.path.join(directory, name))
        size = (f"{os.major(st.st_rdev)}, {os.minor(st.st_rdev)}" if stat.S_ISCHR(st.st_mode)
                else str(st.st_size))
        print(f"  {stat.filemode(st.st_mode)} {size:>8} {name}")


# %% [markdown]
# ## 1. The container's / is an overlay
# The mount table inside the container says what `/` is. The kernel shows
# the layers' paths as the engine gave them, host paths.

# %%
result = engine(["--stage", "4", "run", "--rm", "busybox", "sh", "-c",
                 'grep " / / " /proc/self/mountinfo'])
fstype, options = mount_options(result.stdout)
check(fstype == "overlay", "the container's / is an overlay mount")
check(options["lowerdir"] == bundled, f"its one lower layer is the bundled image: {bundled}")
check(options["upperdir"].startswith(paths.containers) and options["upperdir"].endswith("/upper")
      and options["workdir"].endswith("/work"), "upper and work are the container's own directories")

# %% [markdown]
# ## 2. Copy-on-write
# The container appends to `/etc/hosts`. The kernel copies the file up
# into the container's upper directory first; the image's file is not
# touched, and the next container sees the image as it was.

# %%
hosts = os.path.join(bundled, "etc", "hosts")
with open(hosts, "rb") as f:
    before = f.read()
result = engine(["--stage", "4", "run", "--rm", "busybox", "sh", "-c",
                 'echo "10.0.0.1 lab" >> /etc/hosts; cat /etc/hosts'])
check(result.stdout.encode() == before + b"10.0.0.1 lab\n", "the container reads its own write")
with open(hosts, "rb") as f:
    check(f.read() == before, f"the image's file is unchanged: {hosts}")
result = engine("--stage 4 run --rm busybox cat /etc/hosts")
check(result.stdout.encode() == before, "a second container does not see the first one's write")

# %% [markdown]
# ## 3. mini-engine diff reads the upper directory
# Without `--rm` the container's bundle, and its upper directory, stay
# after it ends. Its hostname is its short ID.

# %%
script = ("hostname; touch /tmp/new; rm /etc/hosts; "
          'echo "lab:x:1000:1000::/:/bin/sh" >> /etc/passwd')
result = engine(["--stage", "4", "run", "busybox", "sh", "-c", script])
short = result.stdout.strip()
container_id = next(c for c in os.listdir(paths.containers) if c.startswith(short))
bundle = os.path.join(paths.containers, container_id)
upper = os.path.join(bundle, "upper")
result = engine(f"diff {short}")
check(result.stdout.splitlines() == ["C /etc", "D /etc/hosts", "C /etc/passwd", "C /tmp", "A /tmp/new"],
      "diff: /tmp/new added, /etc/passwd changed, /etc/hosts deleted (and their directories copied up)")
print(f"{upper}/etc:")
ls(os.path.join(upper, "etc"))
st = os.lstat(os.path.join(upper, "etc", "hosts"))
check(stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, "the deleted file is a whiteout: a character device 0/0")
with open(os.path.join(bundled, "etc", "passwd"), "rb") as lower_file, \
        open(os.path.join(upper, "etc", "passwd"), "rb") as upper_file:
    check(upper_file.read() == lower_file.read() + b"lab:x:1000:1000::/:/bin/sh\n",
          "the changed file was copied up whole, then appended to")
check(not os.path.ismount(os.path.join(bundle, "rootfs")),
      "the overlay was unmounted when the container ended; upper stays until rm")

# %% [markdown]
# ## 4. An overlay by hand: a whiteout, an opaque directory, a copy-up
# Two lower directories, `top` over `bottom`, mounted with the engine's
# own `overlay.mount` (relative paths, from the directory that holds them).

# %%
work = tempfile.mkdtemp(prefix="lab04-")
for name in ("bottom", "top", "upper", "work", "merged", "bottom/dir"):
    os.mkdir(os.path.join(work, name))
for path, text in (("bottom/a", "a from bottom\n"), ("bottom/b", "b from bottom\n"),
                   ("bottom/dir/inner", "inner\n"), ("top/a", "a from top\n")):
    with open(os.path.join(work, path), "w") as f:
        f.write(text)
merged = os.path.join(work, "merged")
overlay.mount(["top", "bottom"], "upper", "work", merged, cwd=work)
try:
    with open("/proc/self/mountinfo") as f:
        line = next(line for line in f if line.split()[4] == merged)
    print(line.strip())
    check(mount_options(line)[1]["lowerdir"] == "top:bottom", "the layers are named relative, top first")
    with open(os.path.join(merged, "a")) as f:
        check(f.read() == "a from top\n", "a name in both layers: the top one wins")
    check(sorted(os.listdir(merged)) == ["a", "b", "dir"], "merged shows the names of both layers")

    os.remove(os.path.join(merged, "b"))
    st = os.lstat(os.path.join(work, "upper", "b"))
    check(stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, "deleting b left a whiteout in upper: char device 0/0")
    check(os.path.exists(os.path.join(work, "bottom", "b")), "bottom/b itself is still there")

    shutil.rmtree(os.path.join(merged, "dir"))
    os.mkdir(os.path.join(merged, "dir"))
    opaque = os.getxattr(os.path.join(work, "upper", "dir"), "trusted.overlay.opaque")
    check(opaque == b"y" and os.listdir(os.path.join(merged, "dir")) == [],
          "a directory removed and made again is opaque (trusted.overlay.opaque=y): nothing below shows")

    with open(os.path.join(merged, "a"), "a") as f:
        f.write("and more\n")
    with open(os.path.join(work, "upper", "a")) as f:
        check(f.read() == "a from top\nand more\n", "writing to a copied it up from top first")
    print("upper:")
    ls(os.path.join(work, "upper"))
finally:
    overlay.unmount(merged)
check(not os.path.ismount(merged), "unmounted")
with open(os.path.join(work, "top", "a")) as f:
    check(f.read() == "a from top\n", "the lower layers never changed")
shutil.rmtree(work)

# %% [markdown]
# ## 5. rm removes the container, upper and all

# %%
result = engine(f"rm {short}")
check(result.returncode == 0 and not os.path.exists(bundle), "the bundle, with its upper directory, is gone")

# %% [markdown]
# ## Your turn
# - Run `mini-engine --stage 4 run busybox sh -c 'rm -rf /var; mkdir /var; touch /var/x'`
#   and read `mini-engine diff`: why does `/var/tmp` show as deleted?
#   (`overlay.diff`, and `getfattr -n trusted.overlay.opaque` on the upper `var`.)
# - `touch /bin/busybox` in a container: how big is the file in upper? (See
#   `metacopy` in the kernel's overlayfs.rst.)
# - How many layers of absolute paths like `/var/lib/mini-engine/layers/<64 hex>/diff`
#   fit in one page of mount options? How many `l/<10 hex>` links?

# %% [markdown]
# ## Check your answers
# Write your answer in `my_answers` and run the cell: it says right or
# wrong. (The lab keeps only a digest of the right answers; the answers,
# and why, are in the instructor guide.)
#
# 1. A file of a lower layer is deleted in the container. What kind of
#    file does overlayfs leave in the upper directory, as `ls -l` shows
#    it? (Two words.)
# 2. Which extended attribute marks a directory of the upper directory
#    as opaque? Its whole name.

# %%
my_answers = {1: None, 2: None}
check_answers("04-overlayfs", my_answers, {
    1: ('0bd3e0228dfe637d', 'e267c4184dc76023', '99c15487b157a531', '531137261e0cc8a5',),
    2: ('a5c7ee68b4f0728d',),
})

# %%
print("lab 04 done")
