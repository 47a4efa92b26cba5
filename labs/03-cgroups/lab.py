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
# # Lab 03: cgroups v2, limits you can watch the kernel enforce
#
# Chapter: `chapters/03-cgroups.md`. Needs the memory, cpu and pids
# controllers on cgroup v2: run it in the Vagrant VM, or from a host that
# lacks them with `python3 scripts/testvm.py run -- .venv/bin/python labs/03-cgroups/lab.py`.
# Headless: `python labs/03-cgroups/lab.py`; or open this file as a notebook.

# %%
import json
import os
import subprocess
import sys

from mini_engine.labkit import check, check_answers, children, engine, own_roots, require_root
from mini_engine.runtime import cgroups

require_root()
own_roots("03-cgroups")
mount = cgroups.mount_point()
print("cgroup2 is mounted at", mount, "with", sorted(cgroups.available(mount)))
check({"memory", "cpu", "pids"} <= cgroups.available(mount),
      "memory, cpu and pids are on cgroup v2 here (else: use the test VM, see above)")

# %% [markdown]
# ## 1. A cgroup per container, and the container sees it as "/"
# From the host the container's process is in `/mini-engine/<id>`; inside,
# a cgroup namespace makes that cgroup the root.

# %%
proc = subprocess.Popen([sys.executable, "-m", "mini_engine", "--stage", "3", "run", "--rm", "-i", "busybox",
                         "sh", "-c", "echo ready; cat /proc/self/cgroup; read x"],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
proc.stdout.readline()
inside = proc.stdout.readline().strip()
with open(f"/proc/{children(proc.pid)[0]}/cgroup") as f:
    outside = f.read().strip()
proc.communicate("\n", timeout=60)
print("inside: ", inside)
print("outside:", outside)
check(inside == "0::/" and outside.startswith("0::/mini-engine/"), "one cgroup, two views")

# %% [markdown]
# ## 2. memory.max: past the limit, the OOM killer
# `dd bs=64M` needs a 64 MiB buffer; the container may have 32 MiB
# (and no swap). The kernel kills it: exit code 137 (128 + SIGKILL).

# %%
result = engine("--stage 3 run --rm -m 32m --memory-swap 32m busybox "
                "dd if=/dev/zero of=/dev/null bs=64M count=1")
check(result.returncode == 137, "over the limit: killed, 137")
check("OOM killer" in result.stderr, "the engine read memory.events and says why")
result = engine("--stage 3 run --rm -m 64m busybox dd if=/dev/zero of=/dev/null bs=8M count=1")
check(result.returncode == 0, "under the limit: fine")

# %% [markdown]
# ## 3. pids.max: a fork bomb hits a wall
# Forks past the limit fail with EAGAIN ("can't fork").

# %%
script = ("sh -c 'for i in $(seq 30); do sleep 30 & done' 2>/dev/null; "
          "read n < /sys/fs/cgroup/pids.current; read k failed < /sys/fs/cgroup/pids.events; "
          "echo $n $failed")
result = engine(["--stage", "3", "run", "--rm", "--pids-limit", "10", "busybox", "sh", "-c", script])
current, failed = map(int, result.stdout.split())
check(current <= 10 and failed > 0, f"{current} processes at most 10; {failed} forks refused")

# %% [markdown]
# ## 4. cpu.max: a busy loop is throttled
# `--cpus 0.2` writes `20000 100000` to cpu.max: 20 ms of CPU per 100 ms.

# %%
script = ('timeout 1 sh -c "while :; do :; done"; cat /sys/fs/cgroup/cpu.max; '
          "grep throttled /sys/fs/cgroup/cpu.stat")
result = engine(["--stage", "3", "run", "--rm", "--cpus", "0.2", "busybox", "sh", "-c", script])
stat = dict(line.split() for line in result.stdout.splitlines()[1:])
check(result.stdout.startswith("20000 100000") and int(stat["nr_throttled"]) > 0,
      "the loop was throttled")

# %% [markdown]
# ## 5. stats, pause, kill, from a second "terminal"

# %%
proc = subprocess.Popen([sys.executable, "-m", "mini_engine", "--stage", "3", "run", "--rm", "-i", "-m", "64m",
                         "busybox", "sh", "-c", "echo ready; read x"],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
proc.stdout.readline()
records = json.loads(engine("ps --format json", quiet=True).stdout)
cid = next(r["Id"] for r in records if r["State"]["Status"] == "running")
engine(f"stats --no-stream {cid[:12]}")
engine(f"pause {cid[:12]}")
frozen = cgroups.read_events(os.path.join(mount, "mini-engine", cid))["frozen"]
engine(f"unpause {cid[:12]}")
engine(f"kill {cid[:12]}")
check(frozen == 1 and proc.wait(timeout=60) == 137, "paused (frozen 1), then killed: 137")
check(not os.path.exists(os.path.join(mount, "mini-engine", cid)), "its cgroup is gone")

# %% [markdown]
# ## Your turn
# - Run `mini-engine run -it -m 16m busybox sh` and, in another terminal,
#   watch `memory.current` and `memory.events` while you fill /dev/shm.
# - Why must the container's process join its cgroup *before* it unshares
#   its cgroup namespace? (`runtime/init.py`.)

# %% [markdown]
# ## Check your answers
# Write your answer in `my_answers` and run the cell: it says right or
# wrong. (The lab keeps only a digest of the right answers; the answers,
# and why, are in the instructor guide.)
#
# 1. Which file of a cgroup does a process's pid go into, to move that
#    process into the cgroup?
# 2. `-m 16m`: which file of the container's cgroup holds the memory
#    limit?

# %%
my_answers = {1: None, 2: None}
check_answers("03-cgroups", my_answers, {
    1: ('6c66f0d654ea6868',),
    2: ('0ea1a290517004b6',),
})

# %%
print("lab 03 done")
