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
# # Lab 02: namespaces, seen from inside and from the host
#
# Chapter: `chapters/02-namespaces.md`. Run as root, headless with
# `python labs/02-namespaces/lab.py`, or open this file as a notebook.
#
# The probe (`/usr/local/bin/probe` in the bundled image) prints what the
# kernel shows a process in the container, as JSON.

# %%
import json
import subprocess
import sys

from mini_engine.labkit import check, check_answers, children, engine, namespaces, own_roots, require_root

require_root()
own_roots("02-namespaces")


def probe(flags: str = "") -> dict:
    return json.loads(engine(f"--stage 2 run --rm {flags} busybox probe").stdout)


# %% [markdown]
# ## 1. Every namespace but user and time is new
# A namespace's identity is the inode of its `/proc/PID/ns/` file.

# %%
host, facts = namespaces(), probe()
print(f"{'namespace':<10}{'host':>12}{'container':>12}")
for kind in host:
    print(f"{kind:<10}{host[kind]:>12}{facts['namespaces'][kind]:>12}")
for kind in ("pid", "mnt", "uts", "ipc", "net", "cgroup"):
    check(facts["namespaces"][kind] != host[kind], f"the {kind} namespace is the container's own")

# %% [markdown]
# ## 2. PID 1, its own /proc, its own hostname, only lo

# %%
check(facts["pid"] == 1, "the command is PID 1")
check(facts["pids"][0] == 1 and len(facts["pids"]) <= 3, f"/proc shows only {facts['pids']}")
check(list(facts["links"]) == ["lo"] and facts["links"]["lo"] & 1, "one interface, lo, and it is up")
check(probe("--hostname lab")["hostname"] == "lab", "--hostname sets the UTS namespace's name")
check(facts["mounts"][:2] == ["/", "/proc"], f"the mount table is the container's: {facts['mounts']}")

# %% [markdown]
# ## 3. PID 1 is special
# The kernel does not deliver a signal to a namespace's init from inside
# unless it has a handler, not even SIGKILL. Orphans are adopted by PID 1.

# %%
result = engine("--stage 2 run --rm busybox sh -c 'kill -9 $$; echo still alive'")
check(result.stdout == "still alive\n", "PID 1 survives kill -9 from inside its namespace")
result = engine("--stage 2 run --rm busybox sh -c \"(sleep 5 &); sleep 0.2; ps -o ppid,args\"")
check(any(line.split()[1:] == ["sleep", "5"] and line.split()[0] == "1"
          for line in result.stdout.splitlines()), "the orphaned sleep's parent is PID 1")

# %% [markdown]
# ## 4. The view from the host
# While a container runs, the host sees its process with a host PID, and
# its namespaces through `/proc/PID/ns`.

# %%
proc = subprocess.Popen([sys.executable, "-m", "mini_engine", "--stage", "2", "run", "--rm", "-i", "busybox",
                         "sh", "-c", "echo ready; read x"],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
proc.stdout.readline()
pid = children(proc.pid)[0]
outside = namespaces(pid)
proc.communicate("\n", timeout=30)
print("container's PID on the host:", pid)
check(pid != 1 and outside["pid"] != host["pid"], "one process, two PIDs: a host one and 1")

# %% [markdown]
# ## 5. A user namespace: root inside, nobody outside
# `--userns auto` maps container uid 0 to host uid 100000 (65536 of them).
# The image's files belong to the host's root, which is unmapped inside.

# %%
facts = probe("--userns auto")
check(facts["uid"] == 0 and facts["uid_map"].split() == ["0", "100000", "65536"],
      "uid 0 inside is uid 100000 outside")
result = engine("--stage 2 run --rm --userns auto busybox sh -c 'stat -c %u /bin/busybox; touch /bin/x'")
check(result.stdout == "65534\n" and "Permission denied" in result.stderr,
      "root inside cannot write the host root's files")

# %% [markdown]
# ## 6. A time namespace
# `--time-offset` shifts CLOCK_BOOTTIME and CLOCK_MONOTONIC for the container.

# %%
with open("/proc/uptime") as f:
    host_uptime = float(f.read().split()[0])
facts = probe("--time-offset 31536000")
check(facts["uptime"] - host_uptime >= 31536000, "the container's uptime is a year longer")

# %% [markdown]
# ## Your turn
# - Run `mini-engine run -it busybox sh`, then in another terminal
#   `lsns` and `nsenter -t PID -a sh`: you are in the container.
# - Why must `become_root` come *after* writing `timens_offsets`?
#   (`runtime/namespaces.py`, `enter_namespaces`.)

# %% [markdown]
# ## Check your answers
# Write your answer in `my_answers` and run the cell: it says right or
# wrong. (The lab keeps only a digest of the right answers; the answers,
# and why, are in the instructor guide.)
#
# 1. In a new PID namespace, which pid does the container's command see
#    for itself (`echo $$`)?
# 2. Which system call swaps the container's root for its rootfs so that
#    the old root can be detached? Its name.

# %%
my_answers = {1: None, 2: None}
check_answers("02-namespaces", my_answers, {
    1: ('7e2abb98eed116c5',),
    2: ('496eda46f7d8e779', 'f575d6600d9f66a8',),
})

# %%
print("lab 02 done")
