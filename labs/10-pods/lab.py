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
# # Lab 10: a pod, a web server and its sidecar over localhost
#
# Chapter: `chapters/10-pods.md`. Run as root, headless with
# `python labs/10-pods/lab.py`, or open this file as a notebook.
#
# A pod with a published port; a web server in it, and a sidecar that
# reaches the server at 127.0.0.1, because both are in the pod's network
# namespace. Then the same pod seen from the host: the namespace inodes of
# each container's process. Everything runs in chapter 07's playground
# namespaces, so your machine's own network is not touched.

# %%
import json
import sys

from mini_engine.labkit import Playground, check, check_answers, namespaces, own_roots, require_root, wait_until

require_root()
own_roots("10-pods")
lab = Playground()
engine = lab.show_engine  # mini-engine ARGS in the playground's host namespace, shown
SERVE = "mkdir -p /www && echo hello from the pod > /www/index.html && exec httpd -f -p 80 -h /www"
FETCH = ("import sys, urllib.request; "
         "print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode(), end='')")


def pid_of(name: str) -> int:
    """The host's pid of a container's first process."""
    return int(json.loads(engine("inspect", name, quiet=True).stdout)[0]["State"]["Pid"])


# %% [markdown]
# ## 1. A pod, and its infra container
# `pod create` writes the pod's record and starts one container: the
# infra container, which runs the bundled image's `pause` and holds the
# pod's network namespace, with the published port, its IPC namespace
# and its hostname.

# %%
engine("pod", "create", "--name", "site", "-p", "8080:80")
engine("pod", "ps")
infra = json.loads(engine("pod", "inspect", "site", quiet=True).stdout)[0]["InfraContainerID"]
with open(f"/proc/{pid_of(infra)}/cmdline", "rb") as f:
    check(f.read() == b"/usr/local/bin/pause\0", "the infra container runs the engine's pause")

# %% [markdown]
# ## 2. A web server and a sidecar, over localhost
# The server listens on port 80 of the pod's network namespace. The
# sidecar, another container of the pod, fetches `http://127.0.0.1/`: its
# loopback is the server's, and so is its hostname.

# %%
engine("run", "-d", "--pod", "site", "--name", "web", "busybox", "sh", "-c", SERVE)
result = engine("run", "--rm", "--pod", "site", "busybox", "sh", "-c",
                "until wget -q -O- http://127.0.0.1/; do sleep 0.2; done; hostname")
check(result.stdout == "hello from the pod\nsite\n", "the sidecar reached the server on 127.0.0.1; "
                                                     "its hostname is the pod's")
page = wait_until(lambda: lab.outside(sys.executable, "-c", FETCH, f"http://{lab.HOST_IP}:8080/",
                                      check=False).stdout)
check(page == "hello from the pod\n", "from outside the host, the pod's published port 8080 reaches it")

# %% [markdown]
# ## 3. The pod seen from the host
# Each container's first process, as the host numbers it, and the inode
# of each of its namespaces (`/proc/PID/ns/*`). The pod's containers have
# the same net, ipc and uts namespace as the infra process; each has its
# own mount, pid and cgroup namespace.

# %%
engine("run", "-d", "--pod", "site", "--name", "sidecar", "busybox", "sleep", "600")
KINDS = ("net", "ipc", "uts", "mnt", "pid", "cgroup")
seen = {name: namespaces(pid_of(name)) for name in ("site-infra", "web", "sidecar")}
print(f"{'':<12}" + "".join(f"{kind:<12}" for kind in KINDS))
for name, inodes in seen.items():
    print(f"{name:<12}" + "".join(f"{inodes[kind]:<12}" for kind in KINDS))
for kind in ("net", "ipc", "uts"):
    check(len({inodes[kind] for inodes in seen.values()}) == 1, f"one {kind} namespace for the whole pod")
for kind in ("mnt", "pid", "cgroup"):
    check(len({inodes[kind] for inodes in seen.values()}) == 3, f"a {kind} namespace for each container")
engine("pod", "top", "site")

# %% [markdown]
# ## 4. When the infra container dies
# Kill it: the pod is degraded, and says why. Its containers still run,
# in the namespaces they joined, but nobody new can join them.

# %%
engine("kill", infra)
check(wait_until(lambda: '"degraded"' in engine("pod", "inspect", "site", quiet=True).stdout),
      "pod inspect: degraded")
engine("pod", "ps")

# %% [markdown]
# ## 5. Nothing left
# `pod rm -f` kills the pod's containers and removes them with the pod.

# %%
engine("pod", "rm", "-f", "site")
check(engine("ps", "-a", "--format", "json", quiet=True).stdout.strip() == "[]", "no container left")
check(engine("pod", "ps", "--format", "json", quiet=True).stdout.strip() == "[]", "no pod left")
engine("network", "prune", quiet=True)
check(lab.host("nft", "list", "tables").stdout == "", "no nft table")
lab.close()

# %% [markdown]
# ## Your turn
# - Make a pod with `--share net,ipc,uts,pid` and run `ps` in one of its
#   containers. Which process is PID 1? Kill it from the host: what
#   happens to the pod's other containers, and why (pid_namespaces(7))?
# - Read the `config.json` of a pod's container
#   (`/var/lib/mini-engine-labs/...` while the lab runs, or your own engine's
#   root). Which namespaces have a `path`, and what is it?
# - Make a pod with `--pids-limit 10` (in the lab VM, which has cgroup v2)
#   and fork in two of its containers. Which cgroup's `pids.events` counts
#   the refusals?

# %% [markdown]
# ## Check your answers
# Write your answer in `my_answers` and run the cell: it says right or
# wrong. (The lab keeps only a digest of the right answers; the answers,
# and why, are in the instructor guide.)
#
# 1. Which process holds a pod's shared namespaces while its containers come
#    and go? (The one-word name of the program the infra container runs.)
# 2. Which namespace of a pod's containers is shared only when `pod create`
#    is given `--share` with it: net, ipc, uts or pid?

# %%
my_answers = {1: None, 2: None}
check_answers("10-pods", my_answers, {
    1: ('72d1d8f3a3d0bf44', 'fa55eaefcca346a6', 'ef3a16ed8b2dce9f',),
    2: ('14fd64034690569f', '2d1f45d60698601a', '08d789ddcb5c1682',),
})

# %%
print("lab 10 done")
