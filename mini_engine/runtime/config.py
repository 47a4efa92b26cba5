"""Reading a bundle's ``config.json``, the OCI runtime spec's contract.

Every chapter reads this module: it is where the engine's decisions arrive
at the runtime. Spec: https://github.com/opencontainers/runtime-spec
(config.md, config-linux.md).

The runtime trusts nothing in the file: every key it uses is checked here,
and a bad one is reported with its JSON path (``linux.namespaces[2].type``)
so the user can find it in the file.
"""

from __future__ import annotations

import json
import os
from typing import Any

from mini_engine.runtime.errors import ContainerError

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
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
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
    cgroups_path = linux.get("cgroupsPath")
    if cgroups_path is not None and (not isinstance(cgroups_path, str) or ".." in cgroups_path.split("/")):
        raise _fail("linux.cgroupsPath", "must be a path inside the cgroup tree")
    _expect(linux.get("resources", {}), dict, "linux.resources")
    if ("uidMappings" in linux or "gidMappings" in linux) and "user" not in seen:
        raise _fail("linux.uidMappings", "needs a user namespace in linux.namespaces")


def namespaces(config: dict[str, Any]) -> dict[str, str | None]:
    """``{type: path-or-None}`` for each namespace in ``linux.namespaces``."""
    return {ns["type"]: ns.get("path") for ns in config.get("linux", {}).get("namespaces", [])}


def root_path(config: dict[str, Any], bundle: str) -> str | None:
    """The absolute rootfs path; a relative ``root.path`` is relative to the bundle."""
    if "root" not in config:
        return None
    return os.path.abspath(os.path.join(bundle, config["root"]["path"]))
