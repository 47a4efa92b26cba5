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
# # Lab: drive the runtime by hand, as an engine does
#
# Chapter: `chapters/oci-runtime.md`. Run as root, headless with
# `python labs/oci-runtime/lab.py`, or open this file as a notebook.
#
# An engine (podman, containerd) never forks a container itself: it writes a
# bundle and calls the runtime, `create`, `start`, `state`, `kill`, `delete`,
# one process per call. Here you are the engine.

# %%
import json
import os
import shutil
import subprocess
import sys
import tempfile

from mini_engine.images import busybox
from mini_engine.labkit import check, check_answers, own_roots, require_root
from mini_engine.paths import Paths

require_root()
own_roots("oci-runtime")
work = tempfile.mkdtemp(prefix="oci-lab-")
os.chmod(work, 0o755)
root = os.path.join(work, "state")
bundle = os.path.join(work, "bundle")
shutil.copytree(busybox.image(Paths.from_options(None, None)).rootfs, os.path.join(bundle, "rootfs"),
                symlinks=True)


def runc(*args: str, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    """mini-runc, with this lab's state root; create gets no pipes (the container keeps them)."""
    argv = [sys.executable, "-m", "mini_engine.runtime.cli", "--root", root, *args]
    print("$ mini-runc", " ".join(args))
    if args[0] == "create":
        # The container keeps the stdio it is given, so a pipe here would
        # never reach EOF while it lives: errors go to a file instead.
        with tempfile.TemporaryFile("w+") as err:
            done = subprocess.run(argv, cwd=bundle, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=err, text=True)
            err.seek(0)
            done.stderr, done.stdout = err.read(), ""
    else:
        done = subprocess.run(argv, cwd=bundle, capture_output=True, text=True)
    if not quiet:
        print(done.stdout + done.stderr, end="")
    return done


# %% [markdown]
# ## 1. A bundle: a rootfs and a config.json
# `spec` writes runc's default config: a shell with a terminal. We want a
# long-running command without one.

# %%
runc("spec")
with open(os.path.join(bundle, "config.json")) as f:
    config = json.load(f)
config["process"].update(terminal=False, args=["sleep", "300"])
with open(os.path.join(bundle, "config.json"), "w") as f:
    json.dump(config, f)
check(sorted(os.listdir(bundle)) == ["config.json", "rootfs"], "a bundle is a directory with these two")

# %% [markdown]
# ## 2. create: everything but the user's program
# The container's process is set up, in its namespaces, and waits on the
# exec fifo. `create` itself has exited: that process is an orphan now.

# %%
check(runc("create", "--pid-file", "pid", "demo").returncode == 0, "create returned")
state = json.loads(runc("state", "demo").stdout)
with open(os.path.join(bundle, "pid")) as f:
    pid = int(f.read())
check(state["status"] == "created" and state["pid"] == pid, "created, and the pid file agrees")
check(os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid"),
      "it waits inside a PID namespace of its own")

# %% [markdown]
# The runtime found it again through `--root`: one directory per container.
# `pid` and `todo` are plain text, so that `start` and `delete` need no JSON
# parser (the chapter's "Fast enough for an engine" says why).

# %%
memory = os.path.join(root, "demo")
print(sorted(os.listdir(memory)))
with open(os.path.join(memory, "pid")) as f:
    check(f.read().split()[0] == str(pid), "its pid file names the container's process")
check(sorted(os.listdir(memory)) == ["config.json", "exec.fifo", "pid", "state.json", "todo"],
      "the fifo, the config, todo, pid and state.json")

# %% [markdown]
# ## 3. start, then look inside with exec

# %%
runc("start", "demo")
check(json.loads(runc("state", "demo").stdout)["status"] == "running", "running")
inside = runc("exec", "demo", "sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo").stdout.split()
check(inside[0] != "1" and inside[1:] == ["sleep", "300"], "exec joins it: PID 1 there is our sleep")
runc("ps", "demo")

# %% [markdown]
# ## 4. kill, delete: the state goes, the process is gone
# `delete` of a running container is refused; after `kill` it works.

# %%
check(runc("delete", "demo", quiet=True).returncode != 0, "delete of a running container is refused")
runc("kill", "demo", "KILL")
for _ in range(100):
    if json.loads(runc("state", "demo", quiet=True).stdout)["status"] == "stopped":
        break
check(runc("delete", "demo").returncode == 0, "deleted once stopped")
check(not os.path.exists(os.path.join(root, "demo")), "its state directory is gone")
shutil.rmtree(work)

# %% [markdown]
# ## Your turn
# - With `process.terminal` true, `create` needs `--console-socket`: write
#   a tiny listener that receives the pty master (socket.recv_fds) and
#   prints what the container writes. (Chapter: console sockets.)
# - Add a `poststop` hook that writes its stdin to a file; read the state
#   it was given after `delete`.

# %% [markdown]
# ## Check your answers
# Write your answer in `my_answers` and run the cell: it says right or
# wrong. (The lab keeps only a digest of the right answers; the answers,
# and why, are in the instructor guide.)
#
# 1. Between `create` and `start`, what does the container's process
#    block on, reading, until `start` writes to it? (The file's name in
#    the state directory.)
# 2. Which status does `mini-runc state` report between `create` and
#    `start`?

# %%
my_answers = {1: None, 2: None}
check_answers("oci-runtime", my_answers, {
    1: ('b418b46ceafb9e9d', 'fa5094d54673cb19', 'bb63ede7fd1d2018', '19d7b593994997ef',),
    2: ('c9048131ce6b6e42',),
})

# %%
print("lab oci-runtime done")
