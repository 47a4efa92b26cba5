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
# # Lab 06: security, one breakout per defence
#
# Chapters: `chapters/06-security.md`, and `chapters/06-userns.md` for step 6. Run as root, headless with
# `python labs/06-security/lab.py`, or open this file as a notebook.
#
# Each step tries one escape twice: with the defence on, where it fails,
# and with the flag that turns the defence off, where it works. The checks
# read what the kernel says: `/proc/self/status`, mountinfo, exit codes.

# %%
import json
import shlex
import subprocess
import sys

from mini_engine.config.security import DEFAULT_CAPABILITIES
from mini_engine.labkit import (
    Result,
    check,
    check_answers,
    children,
    engine,
    own_roots,
    require_root,
    show,
    syscall_program,
)
from mini_engine.runtime.config import CAPABILITY_NAMES

require_root()
own_roots("06-security")


def status(flags: str = "") -> dict[str, str]:
    """The capability, no_new_privs and seccomp lines of the container's /proc/self/status (the probe)."""
    argv = ["--stage", "6", "run", "--rm", *shlex.split(flags), "busybox", "probe"]
    print(f"$ mini-engine {shlex.join(argv)}")
    facts = json.loads(engine(argv, quiet=True).stdout)["status"]
    for key, value in facts.items():
        print(f"  {key + ':':<17}{value}")
    return facts


def capability_names(mask: str) -> list[str]:
    """The capabilities whose bits are set in a Cap* line of /proc/PID/status."""
    bits = int(mask, 16)
    return [name for i, name in enumerate(CAPABILITY_NAMES) if bits >> i & 1]


COPY_AND_RUN = "cat > /tmp/p && chmod 755 /tmp/p && exec /tmp/p"


def run_program(program: bytes, flags: str = "") -> int:
    """Feed ``program`` into a new container through stdin, run it there, return its exit code."""
    argv = ["--stage", "6", "run", "--rm", "-i", *shlex.split(flags), "busybox", "sh", "-c", COPY_AND_RUN]
    print(f"$ mini-engine {shlex.join(argv)} < program  ({len(program)} bytes)")
    done = subprocess.run([sys.executable, "-m", "mini_engine", *argv], input=program,
                          capture_output=True, timeout=300)
    show(Result(done.returncode, done.stdout.decode(), done.stderr.decode()))
    return done.returncode


# %% [markdown]
# ## 1. Capabilities: docker's fourteen, and --privileged
# Root in the container keeps fourteen of root's 41 capabilities, mask
# `00000000a80425fb`. `CAP_SYS_ADMIN` is not among them, so `mount` fails;
# `--privileged` hands out every capability the engine has, and it works.

# %%
facts = status()
check(facts["CapEff"] == facts["CapPrm"] == facts["CapBnd"] == "00000000a80425fb",
      "CapEff, CapPrm and CapBnd are 00000000a80425fb, what `docker run` shows")
check(capability_names(facts["CapEff"]) == sorted(DEFAULT_CAPABILITIES, key=CAPABILITY_NAMES.index),
      f"those are docker's fourteen: {', '.join(capability_names(facts['CapEff']))}")
check(facts["CapInh"] == facts["CapAmb"] == "0000000000000000",
      "inheritable and ambient are empty (CVE-2022-24769)")
facts = status("-u 1000")
check(facts["CapEff"] == facts["CapPrm"] == "0000000000000000" and facts["CapBnd"] == "00000000a80425fb",
      "-u 1000: nothing effective or permitted; the bounding set is still the fourteen")

mount_tmpfs = "mkdir -p /mnt && mount -t tmpfs x /mnt && grep ' /mnt ' /proc/self/mountinfo"
result = engine(["--stage", "6", "run", "--rm", "busybox", "sh", "-c", mount_tmpfs])
check(result.returncode != 0 and "permission denied" in result.stderr,
      "on: mount fails, no CAP_SYS_ADMIN (busybox says EPERM as 'permission denied')")
result = engine(["--stage", "6", "run", "--rm", "--privileged", "busybox", "sh", "-c", mount_tmpfs])
check(result.returncode == 0 and " /mnt " in result.stdout and " - tmpfs x " in result.stdout,
      "off (--privileged): the tmpfs is mounted on /mnt")

# %% [markdown]
# ## 2. seccomp: three calls the default profile refuses
# Each program below makes one system call and exits with its errno (0 if
# the call worked). The image does not have them, so each goes in through
# stdin. The filter answers EPERM (1); `seccomp=unconfined` loads none.
#
# - `keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING)`: the kernel keyring is the host's;
# - `ptrace(PTRACE_TRACEME)`: control of another process;
# - `unshare(CLONE_NEWUSER)`: a user namespace, kernel code written for root.

# %%
KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING = 0, -3
PTRACE_TRACEME, CLONE_NEWUSER = 0, 0x10000000
EPERM = 1
calls = {
    "keyctl": syscall_program("keyctl", KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING),
    "ptrace": syscall_program("ptrace", PTRACE_TRACEME),
    "unshare": syscall_program("unshare", CLONE_NEWUSER),
}
check(status()["Seccomp"] == "2", "Seccomp: 2, a filter is loaded")
for name, program in calls.items():
    check(run_program(program) == EPERM, f"on: {name} fails with EPERM (exit code 1)")
    check(run_program(program, "--security-opt seccomp=unconfined") == 0,
          f"off (seccomp=unconfined): {name} works (exit code 0)")
check(status("--security-opt seccomp=unconfined")["Seccomp"] == "0", "seccomp=unconfined: Seccomp: 0")

# %% [markdown]
# ## 3. no_new_privs: a setuid-root program
# `/usr/local/bin/euid` is setuid root and exits with its effective uid. As
# user 1000 with no_new_privs (this engine's default), execve ignores the
# setuid bit: exit code 1000 % 256 = 232. With it off, the program runs
# as root: exit code 0.

# %%
result = engine("--stage 6 run --rm busybox ls -l /usr/local/bin/euid")
check(result.stdout.startswith("-rwsr-xr-x") and " root " in result.stdout, "euid is setuid, owned by root")
check(status("-u 1000")["NoNewPrivs"] == "1", "NoNewPrivs: 1 by default")
result = engine("--stage 6 run --rm -u 1000 busybox euid")
check(result.returncode == 1000 % 256, "on: exit code 232, the program ran as uid 1000")
result = engine("--stage 6 run --rm -u 1000 --security-opt no-new-privileges=false busybox euid")
check(result.returncode == 0, "off (no-new-privileges=false): exit code 0, the setuid bit made it root")

# %% [markdown]
# ## 4. Masked and read-only paths
# `/proc/keys` (the host's keys) has `/dev/null` mounted over it;
# `/proc/sys` is a read-only bind mount. `--privileged` does neither.
# The file written in the 'off' case is `kernel.hostname`, which each UTS
# namespace has its own of: the host's name does not change.

# %%
script = ("grep -c ' /proc/keys ' /proc/self/mountinfo; wc -c < /proc/keys; "
          "echo lab06 > /proc/sys/kernel/hostname; hostname")
result = engine(["--stage", "6", "run", "--rm", "--hostname", "box", "busybox", "sh", "-c", script])
mounted, size, name = result.stdout.split()
check(mounted == "1" and size == "0", "on: /proc/keys is a mount point, and reads empty")
check("Read-only file system" in result.stderr and name == "box",
      "on: writing /proc/sys/kernel/hostname fails: read-only file system")
result = engine(["--stage", "6", "run", "--rm", "--hostname", "box", "--privileged", "busybox", "sh", "-c",
                 script])
mounted, size, name = result.stdout.split()
check(mounted == "0", f"off (--privileged): /proc/keys is no mount point ({size} bytes of keys)")
check(name == "lab06" and not result.stderr, "off (--privileged): /proc/sys is writable, the hostname changed")
with open("/proc/sys/kernel/hostname") as f:
    check(f.read().strip() != "lab06", "and the host's hostname did not")

# %% [markdown]
# ## 5. Chapter 1's breakout: /proc/PID/root
# At stage 1 (chroot, no namespaces) root mounts /proc, finds the host's
# processes, and reads the host's files through their `/proc/PID/root`.
# From stage 2 on, pivot_root and a PID namespace leave no such process; at
# stage 6 the mount of /proc is refused before that.

# %%
breakout = ("mount -t proc proc /proc && for root in /proc/[0-9]*/root; do "
            "cat $root/etc/os-release 2>/dev/null && exit 0; done; echo no way out; exit 1")
with open("/etc/os-release") as f:
    host_release = f.read()
result = engine(["--stage", "1", "run", "--rm", "busybox", "sh", "-c", breakout])
check(result.returncode == 0 and result.stdout == host_release,
      "off (stage 1): the container read the host's /etc/os-release")
result = engine(["--stage", "2", "run", "--rm", "busybox", "sh", "-c", breakout])
check(result.returncode == 1 and result.stdout == "no way out\n", "on (stage 2): no way out")
result = engine(["--stage", "6", "run", "--rm", "busybox", "sh", "-c", breakout])
check(result.returncode == 1 and result.stdout == "no way out\n" and "permission denied" in result.stderr,
      "stage 6: the mount of /proc is refused first")

# %% [markdown]
# ## 6. A user namespace: root inside, uid 100000 outside
# Without `--userns`, the container's root is the host's uid 0; with
# `--userns auto` it is uid 100000, as the host's `/proc/PID/status` shows.
# Below stage 6 the image's files, owned by the host's root, belong to
# nobody inside and root may not write them; at stage 6 the engine mounts
# the layers idmapped, and root inside owns its image.

# %%
def command_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""  # it ended while we looked


def host_uid(flags: str = "") -> int:
    """The uid, as the host sees it, of a container's process."""
    argv = ["--stage", "6", "run", "--rm", "-i", *shlex.split(flags), "busybox",
            "sh", "-c", "echo ready; read x"]
    print(f"$ mini-engine {shlex.join(argv)} &")
    proc = subprocess.Popen([sys.executable, "-m", "mini_engine", *argv],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
        (pid,) = [p for p in children(proc.pid) if command_of(p) == "sh"]
        with open(f"/proc/{pid}/status") as f:
            uid = int(next(line.split()[1] for line in f if line.startswith("Uid:")))
        print(f"  the container's sh is host PID {pid}, uid {uid}")
    finally:
        proc.communicate("\n", timeout=30)
    return uid


check(host_uid() == 0, "off: the container's root is the host's root, uid 0")
check(host_uid("--userns auto") == 100000, "on (--userns auto): the container's root is host uid 100000")

script = "cat /proc/self/uid_map; stat -c %u /bin/busybox; touch /bin/x && echo wrote"
result = engine(["--stage", "5", "run", "--rm", "--userns", "auto", "busybox", "sh", "-c", script])
check(result.stdout.split() == ["0", "100000", "65536", "65534"],
      "stage 5: uid map 0 100000 65536; /bin/busybox, uid 0 on disk, is nobody's (65534) inside")
check("Permission denied" in result.stderr,
      "stage 5: touch /bin/x: Permission denied, the image's files are the host root's")
result = engine(["--stage", "6", "run", "--rm", "--userns", "auto", "busybox", "sh", "-c", script])
check(result.stdout.split() == ["0", "100000", "65536", "0", "wrote"],
      "stage 6: through the idmapped layers /bin/busybox is root's inside, and root may write /bin")

# %% [markdown]
# ## Your turn
# - `--cap-drop ALL --cap-add chown`: which mask does CapEff show, and
#   does `chown 1 /tmp` work? And with `--cap-drop ALL` alone?
# - Write a seccomp profile that makes `mkdir` fail with EACCES (errno 13)
#   and run `mkdir /x` under `--security-opt seccomp=PATH` (the chapter's
#   `mkdir.json`). Compile it with `runtime.seccomp.compile_filter` and
#   read the nine instructions.
# - Step 3 with `--userns auto` added: which uid does `euid` report, and
#   which uid runs it on the host?
# - Why does `become_the_process` load the seccomp filter early when
#   no_new_privs is off? (`runtime/init.py`.)
# - Rootless: run the engine as an ordinary user, with a home it owns:
#   `setpriv --reuid 65534 --regid 65534 --clear-groups env HOME=/tmp/me
#   .venv/bin/mini-engine run --rm busybox cat /proc/self/uid_map`.
#   Which uid map does the container get, and which flags are refused?

# %% [markdown]
# ## Check your answers
# Write your answer in `my_answers` and run the cell: it says right or
# wrong. (The lab keeps only a digest of the right answers; the answers,
# and why, are in the instructor guide.)
#
# 1. How many capabilities does a container get by default from stage 6
#    on (docker's default set)? A number.
# 2. The default seccomp profile refuses a call: which errno does the
#    call return? Its name.

# %%
my_answers = {1: None, 2: None}
check_answers("06-security", my_answers, {
    1: ('417caea8e00793ab', 'c781624681d3f769',),
    2: ('f4db631dd8d7a006', 'f9d5a15f3e065f4d',),
})

# %%
print("lab 06 done")
