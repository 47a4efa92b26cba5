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
# # Lab 00: a container is a process
#
# Chapter: `chapters/00-process.md`. Run as root, headless with
# `python labs/00-process/lab.py`, or open this file as a notebook.
#
# At stage 0 the engine does nothing but fork, exec and wait: no root
# filesystem, no namespaces. Everything you see here is still true of a
# real container; later stages only add isolation around it.

# %%
import json
import signal
import subprocess
import sys

from mini_engine.labkit import check, check_answers, engine, own_roots, require_root

require_root()
own_roots("00-process")

# %% [markdown]
# ## 1. The ladder, and what this kernel allows
# `stages` lists one stage per chapter; `doctor` tries each kernel feature.

# %%
engine("stages")
doctor = json.loads(engine("doctor --json", quiet=True).stdout)
for stage in doctor["stages"][:3]:
    print(stage["number"], stage["slug"], stage["works"])
check(doctor["stages"][0]["works"] == "yes", "stage 0 works on this machine")

# %% [markdown]
# ## 2. A container is a process on the host
# With `--stage 0` "busybox" only names the command's defaults: the
# command runs on the host's filesystem. `cat /etc/os-release` shows the host.

# %%
with open("/etc/os-release") as f:
    host_release = f.read()
result = engine("--stage 0 run --rm busybox cat /etc/os-release")
check(result.stdout == host_release, "the stage-0 container reads the host's /etc/os-release")

# %% [markdown]
# ## 3. The contract: config.json
# The engine writes an OCI runtime `config.json`; the runtime reads it.
# At stage 0 it holds only `process`: what to run, with what environment, where.

# %%
spec = json.loads(engine("--stage 0 spec -e GREETING=hi busybox echo hello").stdout)
check(sorted(spec) == ["ociVersion", "process"], "stage 0 fills only process")
check(spec["process"]["args"] == ["echo", "hello"], "process.args is the command")
check("GREETING=hi" in spec["process"]["env"], "-e lands in process.env")

# %% [markdown]
# ## 4. Exit codes, docker's way
# The container's own code; 128+N when a signal N killed it; 127 when
# the command is not found, 126 when it cannot be executed; 125 when the
# engine itself failed.

# %%
codes = {
    "exit 42": engine("--stage 0 run --rm busybox sh -c 'exit 42'").returncode,
    "killed by SIGKILL": engine("--stage 0 run --rm busybox sh -c 'kill -9 $$'").returncode,
    "not found": engine("--stage 0 run --rm busybox no-such-command").returncode,
    "not executable": engine("--stage 0 run --rm busybox /etc/passwd").returncode,
    "bad flag": engine("--stage 0 run --no-such-flag busybox").returncode,
}
print(codes)
check(codes == {"exit 42": 42, "killed by SIGKILL": 137, "not found": 127,
                "not executable": 126, "bad flag": 125}, "the five exit codes")

# %% [markdown]
# ## 5. Signals sent to the engine reach the container
# The engine forwards SIGTERM, SIGINT, SIGHUP... to the container's
# process. Here the container traps SIGTERM and exits with 7.

# %%
script = 'trap "echo caught TERM; exit 7" TERM; echo ready; while :; do sleep 0.1; done'
proc = subprocess.Popen([sys.executable, "-m", "mini_engine", "--stage", "0", "run", "--rm",
                         "busybox", "sh", "-c", script], stdout=subprocess.PIPE, text=True)
print(proc.stdout.readline(), end="")
proc.send_signal(signal.SIGTERM)
out, _ = proc.communicate(timeout=30)
print(out, end="")
print("exit code", proc.returncode)
check((out, proc.returncode) == ("caught TERM\n", 7), "SIGTERM was forwarded and trapped")

# %% [markdown]
# ## 6. What the command inherits: three descriptors
# `/proc/self/fd` lists the open descriptors of whoever reads it, here `ls`.
# 0, 1 and 2 are the engine's stdin, stdout and stderr. 3 is `ls`'s own:
# to list a directory, a program opens it (opendir(3)), and the directory
# it opened is /proc/self/fd itself, which `ls -l` shows as
# `3 -> /proc/PID/fd`, PID being ls's. Nothing else of the engine's got through.

# %%
result = engine("--stage 0 run --rm busybox ls -l /proc/self/fd")
links = {}
for line in result.stdout.splitlines()[1:]:  # after "total 0": "... 3 -> /proc/41/fd"
    fd, _arrow, target = line.split()[-3:]
    links[fd] = target
check(sorted(links) == ["0", "1", "2", "3"], "the command has descriptors 0, 1, 2 and 3, no more")
check(links["3"].startswith("/proc/") and links["3"].endswith("/fd"), "3 is ls's own: the directory it lists")

# %% [markdown]
# ## Your turn
# - Run `mini-engine --stage 0 run -it busybox sh` in a terminal: `tty`
#   shows the pseudoterminal the engine made. What does Ctrl-C do?
# - Why does `mini-engine --stage 0 run busybox ls /proc/self/fd` show no
#   more than 0, 1, 2 and 3 (step 6), even when your shell, and the engine
#   itself, have more descriptors open? (Chapter 00, section "exec", the
#   paragraph "Inherited descriptors": close_range(2) with CLOSE_RANGE_CLOEXEC.)

# %% [markdown]
# ## Check your answers
# Write your answer in `my_answers` and run the cell: it says right or
# wrong. (The lab keeps only a digest of the right answers; the answers,
# and why, are in the instructor guide.)
#
# 1. A container's command is killed by SIGTERM (signal 15), which it
#    does not trap. Which exit code does `mini-engine run` return?
#    (Chapter 00, "Exit codes".)
# 2. Which system call marks every descriptor above 2 close-on-exec in
#    one go, so that the command inherits only 0, 1 and 2? Its name.
#    (Chapter 00, "exec".)

# %%
my_answers = {1: None, 2: None}
check_answers("00-process", my_answers, {
    1: ('3b01af8ff1057683',),
    2: ('9784527af4786030', '5a8d2cf0ce7922ed',),
})

# %%
print("lab 00 done")
