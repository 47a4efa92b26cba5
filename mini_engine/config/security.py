"""The engine's security defaults, and the flags that change them.

Chapter 06 reads this module. Man pages: capabilities(7), prctl(2)
(PR_SET_NO_NEW_PRIVS), seccomp(2), proc(5). The runtime applies what
config.json says (``mini_engine/runtime/security.py``, ``runtime/seccomp.py``);
the engine decides what it says, as docker does:

- capabilities: Docker's fourteen, in the bounding, effective and permitted
  sets of a root process; a non-root user keeps only the bounding set, so
  its process has none until it runs a file that grants some;
  ``--cap-add``/``--cap-drop`` (``ALL`` too), ``--privileged`` for all;
- no_new_privs: on unless ``--privileged`` or
  ``--security-opt no-new-privileges=false`` (docker leaves it off by default;
  this engine errs on the safe side and says so);
- seccomp: the default profile (``mini_engine/config/seccomp.py``), or
  ``--security-opt seccomp=PATH|unconfined``;
- masked and read-only paths: runc's defaults, none with ``--privileged``;
- devices: only null, zero, full, random, urandom, the terminals and tun may
  be opened (``runtime/devices.py``), any with ``--privileged``.

The inheritable set stays empty, as docker's has since CVE-2022-24769: an
inheritable capability could reach a program run under another user
through file capabilities. Ambient stays empty too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from mini_engine.base.capabilities import CAPABILITY_NAMES
from mini_engine.base.errors import ContainerError
from mini_engine.flags import flag
from mini_engine.stages import SECURITY

# [book:default-caps]
DEFAULT_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]

# runc's defaults: files that leak the host's secrets or let root reach the kernel.
MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

# The devices a container may open (runc's and docker's list): deny all, then
# allow making any node (CAP_MKNOD) but opening only these.
DEVICE_RULES = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": -1, "minor": -1, "access": "m"},
    {"allow": True, "type": "b", "major": -1, "minor": -1, "access": "m"},
    *({"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"} for major, minor in (
        (1, 3), (1, 5), (1, 7), (1, 8), (1, 9),  # null, zero, full, random, urandom
        (5, 0), (5, 2),                          # tty, ptmx: not 5:1, the host's console (runc dropped it)
        (136, -1),                               # the pseudo-terminals of devpts
        (10, 200),                               # tun
    )),
]
# [/book:default-caps]


@dataclass
class Options:
    """The security flags of ``run``, parsed."""

    cap_add: list[str] = flag("--cap-add", since=SECURITY, action="append", default=[], metavar="CAP",
                              help="add a capability (or ALL) to docker's default set (stage 6)")
    cap_drop: list[str] = flag("--cap-drop", since=SECURITY, action="append", default=[], metavar="CAP",
                               help="drop a capability (or ALL)")
    privileged: bool = flag("--privileged", since=SECURITY, action="store_true",
                            help="every capability, no seccomp, no masked paths, no no_new_privs")
    security_opt: list[str] = flag("--security-opt", since=SECURITY, action="append", default=[], metavar="OPT",
                                   help="no-new-privileges[=true|false], seccomp=unconfined|PATH")


def capability_name(text: str) -> str:
    """``net_admin``, ``NET_ADMIN`` or ``CAP_NET_ADMIN`` -> ``CAP_NET_ADMIN``."""
    name = text.strip().upper()
    if not name.startswith("CAP_"):
        name = f"CAP_{name}"
    if name not in CAPABILITY_NAMES:
        raise ContainerError(f"unknown capability {text!r} (see capabilities(7))")
    return name


def every_capability() -> list[str]:
    """``ALL``: every capability the engine itself may hand on (its bounding set),
    which is every one the kernel knows on a plain host, fewer inside a sandbox."""
    try:
        with open("/proc/self/status") as f:
            bounding = int(next(line.split()[1] for line in f if line.startswith("CapBnd:")), 16)
    except (OSError, StopIteration):
        return list(CAPABILITY_NAMES)
    return [name for i, name in enumerate(CAPABILITY_NAMES) if bounding >> i & 1]


# [book:capabilities-for]
def capabilities_for(options: Options, uid: int) -> dict[str, list[str]]:
    """The five capability sets of ``process.capabilities``, as docker computes them.

    ``--privileged``: every capability. Otherwise docker's defaults, or none
    if ``--cap-drop`` holds ALL; every capability if ``--cap-add`` holds ALL;
    then the other drops are taken out and the other adds put in (so
    ``--cap-drop ALL --cap-add NET_ADMIN`` is NET_ADMIN alone). Names are
    upper case with the ``CAP_`` prefix (``capability_name``). Inheritable
    and ambient stay empty, and ``for_user`` empties a non-root user's
    effective and permitted sets.
    """
    if options.privileged:
        caps = every_capability()
    else:
        add = [c for c in options.cap_add if c.upper() != "ALL"]
        drop = [c for c in options.cap_drop if c.upper() != "ALL"]
        caps = [] if any(c.upper() == "ALL" for c in options.cap_drop) else list(DEFAULT_CAPABILITIES)
        if any(c.upper() == "ALL" for c in options.cap_add):
            caps = every_capability()
        dropped = {capability_name(c) for c in drop}
        caps = [c for c in caps if c not in dropped]
        caps += [name for name in map(capability_name, add) if name not in caps]
    return for_user({"bounding": caps, "effective": caps, "permitted": caps,
                     "inheritable": [], "ambient": []}, uid)
# [/book:capabilities-for]


def for_user(capabilities: dict[str, list[str]], uid: int) -> dict[str, list[str]]:
    """A non-root user's process starts with nothing effective or permitted:
    it gains only from a setuid-root or file-capability program, and the
    bounding set caps even that. (``exec -u`` applies the same rule.)"""
    if uid == 0:
        return capabilities
    return dict(capabilities, effective=[], permitted=[])


@dataclass
class SecurityOpts:
    no_new_privileges: bool = True
    seccomp: str | None = None  # None: the default profile; "unconfined"; or a path


def parse_security_opts(items: list[str], privileged: bool) -> SecurityOpts:
    """``--security-opt`` values: no-new-privileges[=true|false], seccomp=unconfined|PATH."""
    opts = SecurityOpts(no_new_privileges=not privileged, seccomp="unconfined" if privileged else None)
    for item in items:
        key, sep, value = item.partition("=")
        if ":" in item and not sep:  # docker's old spelling, seccomp:PATH
            key, _, value = item.partition(":")
            sep = "="
        if key == "no-new-privileges":
            if value not in ("", "true", "false"):
                raise ContainerError(f"--security-opt {item}: no-new-privileges takes true or false")
            opts.no_new_privileges = value != "false"
        elif key == "seccomp" and sep and value:
            opts.seccomp = value
        elif key in ("apparmor", "label", "systempaths"):
            raise ContainerError(f"--security-opt {key}: not supported by this engine "
                                 "(no AppArmor or SELinux here)")
        else:
            raise ContainerError(f"--security-opt {item!r}: expected no-new-privileges[=true|false] "
                                 "or seccomp=unconfined|PATH")
    return opts


def load_profile(path: str) -> dict[str, Any]:
    """A seccomp profile in docker's JSON format, checked enough to give clear errors."""
    try:
        with open(path) as f:
            profile = json.load(f)
    except FileNotFoundError:
        raise ContainerError(f"seccomp profile {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise ContainerError(f"seccomp profile {path}: not valid JSON: {exc}") from None
    if not isinstance(profile, dict) or not isinstance(profile.get("defaultAction"), str):
        raise ContainerError(f"seccomp profile {path}: no defaultAction")
    if not isinstance(profile.get("syscalls", []), list):
        raise ContainerError(f"seccomp profile {path}: syscalls must be a list")
    from mini_engine.base.syscall_table import syscall_architectures, syscall_numbers

    # Here, or on any architecture: profiles are written for all of them, and
    # the runtime skips what this machine lacks (``bdflush`` on x86_64), as
    # runc does. A name no architecture has is a typo, and a typo in a
    # denylist would let the call through.
    known = syscall_numbers().keys() | syscall_architectures().keys()
    for i, rule in enumerate(profile.get("syscalls", [])):
        if not isinstance(rule, dict) or not isinstance(rule.get("action"), str):
            raise ContainerError(f"seccomp profile {path}: syscalls[{i}] has no action")
        if isinstance(rule.get("name"), str):  # docker's older spelling of one name
            rule["names"] = [*rule.get("names", []), rule.pop("name")]
        for name in rule.get("names") or []:
            if name not in known:
                raise ContainerError(f"seccomp profile {path}: syscalls[{i}]: {name!r} is not a "
                                     "system call of any architecture (see syscalls(2))")
    return profile


# [book:profile-conditions]
def applicable(profile: dict[str, Any], bounding: list[str]) -> dict[str, Any]:
    """Docker's profiles say when a rule applies ("includes"/"excludes": caps,
    arches, minKernel); config.json has no such keys. Keep the rules that apply
    to this container on this machine, without the conditions."""
    release = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2] if x.isdigit())
    arches = {"x86_64": {"amd64", "x86_64", "SCMP_ARCH_X86_64"},
              "aarch64": {"arm64", "aarch64", "SCMP_ARCH_AARCH64"}}.get(os.uname().machine, set())

    def holds(condition: dict[str, Any]) -> bool | None:
        """True if every part holds, False if one fails, None if it says nothing."""
        parts = []
        if condition.get("caps"):
            parts.append(all(c in bounding for c in condition["caps"]))
        if condition.get("arches"):
            parts.append(bool(arches & set(condition["arches"])))
        if condition.get("minKernel"):
            wanted = tuple(int(x) for x in str(condition["minKernel"]).split(".")[:2])
            parts.append(release >= wanted)
        return all(parts) if parts else None

    rules = []
    for rule in profile.get("syscalls", []):
        if holds(rule.get("includes") or {}) is False:
            continue
        excluded = rule.get("excludes") or {}
        # One capability, arch or kernel of the list is enough to exclude (moby's reading).
        if any(holds({"caps": [c]}) for c in excluded.get("caps") or []) or \
                holds({k: excluded[k] for k in ("arches", "minKernel") if excluded.get(k)}):
            continue
        rules.append({k: v for k, v in rule.items() if k not in ("includes", "excludes", "comment")})
    return dict(profile, syscalls=rules)
# [/book:profile-conditions]


# [book:add-security]
def add_security(spec: dict[str, Any], options: Options) -> None:
    """Stage 6's part of config.json: capabilities, no_new_privs, seccomp, masked paths."""
    from mini_engine.config import seccomp

    opts = parse_security_opts(options.security_opt, options.privileged)
    process = spec["process"]
    process["capabilities"] = capabilities_for(options, process["user"]["uid"])
    process["noNewPrivileges"] = opts.no_new_privileges
    linux = spec["linux"]
    if opts.seccomp is None:
        linux["seccomp"] = seccomp.default_profile(process["capabilities"]["bounding"])
    elif opts.seccomp != "unconfined":
        linux["seccomp"] = applicable(load_profile(opts.seccomp), process["capabilities"]["bounding"])
    resources = linux.get("resources", {})
    if not options.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
        if "cgroupsPath" in linux:  # the filter lives in the cgroup (not rootless)
            resources["devices"] = [dict(rule) for rule in DEVICE_RULES]
    else:
        # --privileged: /sys writable, as docker mounts it then.
        for mount in spec.get("mounts", []):
            if mount["destination"] in ("/sys", "/sys/fs/cgroup"):
                mount["options"] = [o for o in mount["options"] if o != "ro"]
# [/book:add-security]
