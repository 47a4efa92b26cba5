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
# # Lab 08: a small application of two containers
#
# Chapter: `chapters/08-real-images.md`. Run as root, headless with
# `python labs/08-real-images/lab.py`, or open this file as a notebook.
#
# A web server and a client on a network of their own: the server runs
# detached with its site on a read-only volume, the client finds it by
# name. The monitor keeps the server's log; `stop` ends it; nothing is
# left. Everything runs in chapter 07's playground namespaces, so your
# machine's own network is not touched.

# %%
import json
import os
import tempfile
import time

from mini_engine.labkit import Playground, check, check_answers, own_roots, require_root, wait_until

require_root()
own_roots("08-real-images")
lab = Playground()
engine = lab.show_engine  # mini-engine ARGS in the playground's host namespace, shown


site = tempfile.mkdtemp(prefix="lab08-site-")
os.chmod(site, 0o755)
with open(os.path.join(site, "index.html"), "w") as f:
    f.write("<h1>hello from web</h1>\n")

# %% [markdown]
# ## 1. The server, detached
# `run -d` prints the id and returns; the container runs on, watched by
# its monitor, a process of the engine's that no shell owns.

# %%
engine("network", "create", "app")
t0 = time.monotonic()
result = engine("run", "-d", "--name", "web", "--network", "app", "-v", f"{site}:/www:ro",
                "busybox", "httpd", "-f", "-vv", "-p", "80", "-h", "/www")
check(result.returncode == 0 and len(result.stdout.strip()) == 64, "run -d printed the container's id")
state = json.loads(engine("inspect", "web", quiet=True).stdout)[0]["State"]
check(state["Running"] and state["MonitorPid"] > 0, f"web runs; its monitor is pid {state['MonitorPid']}")
with open(f"/proc/{state['MonitorPid']}/stat") as f:
    parent = int(f.read().rsplit(")", 1)[1].split()[1])
check(parent != os.getpid(), f"the monitor's parent is {parent}, not this lab: it was adopted")

# %% [markdown]
# ## 2. The client finds the server by name
# Both are on the network `app`: its shared /etc/hosts names `web`.

# %%
request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc web 80"
ok = wait_until(lambda: "hello from web" in engine("run", "--rm", "--network", "app", "busybox", "sh", "-c",
                                                   request, quiet=True).stdout)
check(ok, "a client container on app fetched http://web/")
result = engine("run", "--rm", "--network", "app", "busybox", "sh", "-c", request)
check(result.stdout.splitlines()[0].strip().endswith(" 200 OK"), "httpd answered 200 OK")

# %% [markdown]
# ## 3. The log, exec, and a read-only volume
# httpd's `-vv` writes each request to stderr; the monitor keeps it in
# the log with a timestamp. `exec` joins the running container.

# %%
result = engine("logs", "-t", "web")
check("url:/" in result.stderr, "the log holds the requests, from stderr")
result = engine("exec", "web", "sh", "-c", "cat /www/index.html; touch /www/new")
check("hello from web" in result.stdout and "Read-only file system" in result.stderr,
      "exec reads the volume, and cannot write it: it is mounted ro")

# %% [markdown]
# ## 4. Stop: SIGTERM, then SIGKILL
# httpd, as PID 1, has no handler for SIGTERM, so the kernel does not
# deliver it; after `-t 2` seconds `stop` sends SIGKILL. Exit code 137.

# %%
t0 = time.monotonic()
engine("stop", "-t", "2", "web")
took = time.monotonic() - t0
state = json.loads(engine("inspect", "web", quiet=True).stdout)[0]["State"]
check(state["ExitCode"] == 137 and not state["Running"], "web exited with 137: 128 + SIGKILL")
check(2 <= took < 20, f"stop took {took:.1f} s: the timeout, then the kill")

# %% [markdown]
# ## 5. Nothing left
# `rm` removes the container; the network goes with `network rm`.

# %%
engine("rm", "web")
engine("network", "rm", "app")
links = sorted(link["ifname"] for link in json.loads(lab.host("ip", "-j", "link").stdout))
check(links == ["lo", "uplink"], "no veth, no bridge in the host namespace")
check(lab.host("nft", "list", "tables").stdout == "", "no nft table")
check(engine("ps", "-a", "--format", "json", quiet=True).stdout.count('"web"') == 0, "no container web")
lab.close()

# %% [markdown]
# ## Your turn
# - Run the server with `--restart always` and kill its httpd from the
#   host (`kill -9`). What does `inspect` say about `RestartCount`?
# - Kill the monitor instead (`kill -9 MonitorPid`). What does `ps -a`
#   show, and what does `prune` remove?
# - Add a named volume, `-v data:/data`, write to it from one container and
#   read it from another. Where on the host is it?

# %% [markdown]
# ## Check your answers
# Write your answer in `my_answers` and run the cell: it says right or
# wrong. (The lab keeps only a digest of the right answers; the answers,
# and why, are in the instructor guide.)
#
# 1. Which process keeps a detached container's log and its exit code,
#    as conmon does for podman? (One word, the engine's name for it.)
# 2. `mini-engine stop` a container whose PID 1 ignores SIGTERM: which
#    exit code does `mini-engine wait` print once the timeout is over?

# %%
my_answers = {1: None, 2: None}
check_answers("08-real-images", my_answers, {
    1: ('9a56c9cd2377c475', '8f9de67340426f24',),
    2: ('f5eb3e6cabddf9cf',),
})

# %%
print("lab 08 done")
