"""Reading a bundle's ``config.json``, the OCI runtime spec's contract.

Every chapter reads this module: it is where the engine's decisions arrive
at the runtime. Spec: https://github.com/opencontainers/runtime-spec
(config.md, config-linux.md).

The runtime trusts nothing in the file: every key it uses is checked here,
and a bad one is reported with its JSON path (``linux.namespaces[2].type``)
so the user can find it in the file.
"""

from __future__ import annotations

import os
import resource

from mini_engine.base.capabilities import CAPABILITY_NAMES
from mini_engine.base.errors import ContainerError

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: see mini_engine/runtime/__init__.py
    from typing import Any

# The lifecycle hooks, in the order they run (hooks.py runs them).
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")

# OCI namespace type -> the name of its file in /proc/PID/ns/.
NAMESPACE_FILES = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
    "time": "time",
}


# Keys this runtime cannot honour yet: refused, never silently ignored (a
# container that asked for a seccomp filter must not run without one).
UNSUPPORTED: dict[tuple[str, str], str] = {
    ("process", "apparmorProfile"): "AppArmor profiles are not supported by this runtime",
    ("process", "selinuxLabel"): "SELinux labels are not supported by this runtime",
    ("linux", "mountLabel"): "SELinux mount labels are not supported by this runtime",
    ("linux", "intelRdt"): "Intel RDT is not supported by this runtime",
}


def _fail(where: str, problem: str) -> ContainerError:
    return ContainerError(f"config.json: {where} {problem}")


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise _fail(where, f"must be {_article(names)}")
    return value


def _article(name: str) -> str:
    words = {"dict": "an object", "list": "an array", "str": "a string", "int": "an integer"}
    return words.get(name, f"a {name}")


def load(bundle: str) -> dict[str, Any]:
    """Read and check ``BUNDLE/config.json``; return it as a dict."""
    import json  # here, not at the top: `start` and `delete` import this module too

    path = os.path.join(bundle, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            config: dict[str, Any] = json.load(f)
    except FileNotFoundError:
        raise ContainerError(f"{path}: no such file (a bundle needs a config.json)") from None
    except json.JSONDecodeError as exc:
        raise ContainerError(f"{path}: not valid JSON: {exc}") from None
    validate(config)
    return config


def validate(config: Any) -> None:
    """Check the parts of the spec this runtime acts on."""
    _expect(config, dict, "the document")
    version = _expect(config.get("ociVersion"), str, "ociVersion")
    if not version.startswith("1."):
        raise _fail("ociVersion", f"{version!r} is not a 1.x runtime spec version")

    process = _expect(config.get("process"), dict, "process")
    args = _expect(process.get("args"), list, "process.args")
    if not args:
        raise _fail("process.args", "must name a command")
    for i, arg in enumerate(args):
        _expect(arg, str, f"process.args[{i}]")
    for i, item in enumerate(_expect(process.get("env", []), list, "process.env")):
        if "=" not in _expect(item, str, f"process.env[{i}]"):
            raise _fail(f"process.env[{i}]", f"{item!r} is not KEY=VALUE")
    cwd = _expect(process.get("cwd", "/"), str, "process.cwd")
    if not cwd.startswith("/"):
        raise _fail("process.cwd", f"{cwd!r} must be an absolute path")
    for i, limit in enumerate(_expect(process.get("rlimits", []), list, "process.rlimits")):
        kind = _expect(_expect(limit, dict, f"process.rlimits[{i}]").get("type"), str,
                       f"process.rlimits[{i}].type")
        if not kind.startswith("RLIMIT_") or not hasattr(resource, kind):
            raise _fail(f"process.rlimits[{i}].type", f"{kind!r} is not a resource limit")
        for key in ("soft", "hard"):
            _expect(limit.get(key), int, f"process.rlimits[{i}].{key}")
    capabilities = _expect(process.get("capabilities", {}), dict, "process.capabilities")
    for kind, names in capabilities.items():
        for j, name in enumerate(_expect(names, list, f"process.capabilities.{kind}")):
            if name not in CAPABILITY_NAMES:
                raise _fail(f"process.capabilities.{kind}[{j}]", f"{name!r} is not a capability")
    user = _expect(process.get("user", {}), dict, "process.user")
    for key in ("uid", "gid"):
        _expect(user.get(key, 0), int, f"process.user.{key}")

    if "root" in config:
        root = _expect(config["root"], dict, "root")
        _expect(root.get("path"), str, "root.path")

    for i, m in enumerate(_expect(config.get("mounts", []), list, "mounts")):
        _expect(m, dict, f"mounts[{i}]")
        dest = _expect(m.get("destination"), str, f"mounts[{i}].destination")
        if not dest.startswith("/"):
            raise _fail(f"mounts[{i}].destination", f"{dest!r} must be an absolute path")
        for j, option in enumerate(_expect(m.get("options", []), list, f"mounts[{i}].options")):
            _expect(option, str, f"mounts[{i}].options[{j}]")

    linux = _expect(config.get("linux", {}), dict, "linux")
    seen = set()
    for i, ns in enumerate(_expect(linux.get("namespaces", []), list, "linux.namespaces")):
        kind = _expect(_expect(ns, dict, f"linux.namespaces[{i}]").get("type"), str,
                       f"linux.namespaces[{i}].type")
        if kind not in NAMESPACE_FILES:
            raise _fail(f"linux.namespaces[{i}].type", f"{kind!r} is not a namespace type")
        if kind in seen:
            raise _fail(f"linux.namespaces[{i}].type", f"{kind!r} appears twice")
        seen.add(kind)
    for key in ("uidMappings", "gidMappings"):
        for i, entry in enumerate(_expect(linux.get(key, []), list, f"linux.{key}")):
            for field in ("containerID", "hostID", "size"):
                _expect(_expect(entry, dict, f"linux.{key}[{i}]").get(field), int,
                        f"linux.{key}[{i}].{field}")
    hooks = _expect(config.get("hooks", {}), dict, "hooks")
    for kind, entries in hooks.items():
        if kind not in HOOK_KINDS:
            raise _fail(f"hooks.{kind}", "is not a hook")
        for i, hook in enumerate(_expect(entries, list, f"hooks.{kind}")):
            if not str(_expect(hook, dict, f"hooks.{kind}[{i}]").get("path", "")).startswith("/"):
                raise _fail(f"hooks.{kind}[{i}].path", "must be an absolute path")
            if hook.get("timeout") is not None and hook["timeout"] <= 0:
                raise _fail(f"hooks.{kind}[{i}].timeout", "must be positive")
    for (section, key), why in UNSUPPORTED.items():
        holder = config.get(section) or {}
        if holder.get(key):
            raise ContainerError(f"config.json: {section + '.' if section else ''}{key}: {why}")
    for i, dev in enumerate(_expect(linux.get("devices", []), list, "linux.devices")):
        _expect(_expect(dev, dict, f"linux.devices[{i}]").get("path"), str, f"linux.devices[{i}].path")
        if dev.get("type") not in ("c", "b", "u", "p"):
            raise _fail(f"linux.devices[{i}].type", f"{dev.get('type')!r} is not one of c, b, u, p")
    if linux.get("seccomp"):
        from mini_engine.runtime import seccomp  # only a config that asks pays for it

        seccomp.check_profile(_expect(linux["seccomp"], dict, "linux.seccomp"))
    cgroups_path = linux.get("cgroupsPath")
    if cgroups_path is not None and (not isinstance(cgroups_path, str) or ".." in cgroups_path.split("/")):
        raise _fail("linux.cgroupsPath", "must be a path inside the cgroup tree")
    resources = _expect(linux.get("resources", {}), dict, "linux.resources")
    if "devices" in resources:
        from mini_engine.runtime.devices import check_rules

        check_rules(resources["devices"])
    for key in _expect(resources.get("unified", {}), dict, "linux.resources.unified"):
        # A file of the container's cgroup, nothing else: "../x" or "/etc/x"
        # would have the runtime write, as root, outside it.
        if "/" in key or key.startswith("."):
            raise _fail(f"linux.resources.unified[{key!r}]", "must be a file name of the cgroup")
    # 5. Settings that are the container's own only inside its namespaces.
    if (linux.get("maskedPaths") or linux.get("readonlyPaths")) and "mount" not in seen:
        raise _fail("linux.maskedPaths", "needs a mount namespace (it would change the host's)")
    for key in _expect(linux.get("sysctl", {}), dict, "linux.sysctl"):
        kind = _sysctl_namespace(key)
        if kind is None:
            raise _fail(f"linux.sysctl[{key!r}]", "is not a namespaced sysctl")
        if kind not in seen:
            raise _fail(f"linux.sysctl[{key!r}]", f"needs a {kind} namespace (it would change the host's)")
    if ("uidMappings" in linux or "gidMappings" in linux) and "user" not in seen:
        raise _fail("linux.uidMappings", "needs a user namespace in linux.namespaces")


def _sysctl_namespace(key: str) -> str | None:
    """Which namespace makes sysctl ``key`` the container's own (runc's list)."""
    if key.startswith("net."):
        return "network"
    if key in ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
               "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced") or key.startswith("fs.mqueue."):
        return "ipc"
    if key in ("kernel.hostname", "kernel.domainname"):
        return "uts"
    return None


def namespaces(config: dict[str, Any]) -> dict[str, str | None]:
    """``{type: path-or-None}`` for each namespace in ``linux.namespaces``."""
    return {ns["type"]: ns.get("path") for ns in config.get("linux", {}).get("namespaces", [])}


def root_path(config: dict[str, Any], bundle: str) -> str | None:
    """The absolute rootfs path; a relative ``root.path`` is relative to the bundle."""
    if "root" not in config:
        return None
    return os.path.abspath(os.path.join(bundle, config["root"]["path"]))
