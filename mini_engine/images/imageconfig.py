"""From an image's config to the container's process: argv, env, cwd, user.

Chapter 05 reads this module. Spec: image-spec config.md (``config.Entrypoint``,
``Cmd``, ``Env``, ``WorkingDir``, ``User``) and its conversion.md, which says
how these become the runtime's ``process``. The rules of ``run`` overrides are
docker's, exactly:

- ``run IMAGE ARGS``: ARGS replace Cmd, the Entrypoint stays;
- ``--entrypoint X``: X replaces the Entrypoint *and drops Cmd*; an empty
  ``--entrypoint ""`` clears it;
- ``-e`` adds to or replaces the image's Env; PATH and HOME get defaults
  (``spec.add_process``);
- ``-w`` replaces WorkingDir, which defaults to ``/``;
- ``-u`` replaces User: ``name``, ``uid``, ``name:group`` or ``uid:gid``,
  looked up in the image's own /etc/passwd and /etc/group (never the host's).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any

from mini_engine.base.errors import ContainerError


def host_platform() -> dict[str, str]:
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)
    return {"os": "linux", "architecture": arch}


class NoPlatform(ContainerError):
    """An image index without an image for the platform wanted."""


def choose_platform(entries: list[Any], want: dict[str, str], name: str) -> dict[str, Any]:
    """The entry of an image index (its ``manifests``) for the platform wanted: the same
    os and architecture, and the same variant when one is asked (``linux/arm/v7``
    and ``linux/arm/v6`` are different images). The first that fits, in the
    index's order, as containerd and podman choose."""
    offered = []
    for entry in entries:
        p = entry.get("platform") if isinstance(entry, dict) else None
        p = {k: v for k, v in p.items() if isinstance(v, str)} if isinstance(p, dict) else {}
        offered.append("/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x))
        if isinstance(entry, dict) and p.get("os") == want["os"] and \
                p.get("architecture") == want["architecture"] and \
                ("variant" not in want or p.get("variant") == want["variant"]):
            return entry
    raise NoPlatform(f"{name}: no image for {'/'.join(want.values())} "
                     f"(the index has {', '.join(p for p in offered if p) or 'none'})")


@dataclass
class User:
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)
    home: str = "/"

    def to_spec(self) -> dict[str, Any]:
        user: dict[str, Any] = {"uid": self.uid, "gid": self.gid}
        if self.additional_gids:
            user["additionalGids"] = self.additional_gids
        return user


# [book:command]
def command(config: dict[str, Any], entrypoint: str | None, args: list[str]) -> list[str]:
    """The argv docker would run for this image config and these ``run`` flags."""
    image = config.get("config") or {}
    entry, cmd = _strslice(image.get("Entrypoint"), "Entrypoint"), _strslice(image.get("Cmd"), "Cmd")
    if entrypoint is not None:
        entry = [entrypoint] if entrypoint else []
        cmd = []  # a new entrypoint does not inherit arguments meant for the old one
    if args:
        cmd = list(args)
    argv = entry + cmd
    if not argv:
        raise ContainerError("no command specified: the image has no Entrypoint or Cmd; give one")
    return argv
# [/book:command]


def _strslice(value: Any, what: str) -> list[str]:
    """A list of strings, or one string that docker takes as a list of one."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ContainerError(f"the image config's {what} is not a list of strings")
    return list(value)


def _entries(text: str | None, fields: int) -> list[list[str]]:
    """The lines of passwd(5) or group(5) with enough fields, comments skipped."""
    out = []
    for line in (text or "").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) >= fields:
            out.append(parts)
    return out


def _number(text: str) -> int | None:
    """A uid or gid: ASCII digits (isdigit() would take "²"), below 2**31."""
    return int(text) if re.fullmatch(r"[0-9]{1,10}", text) and int(text) < 2**31 else None


# [book:resolve-user]
def resolve_user(spec: str | None, passwd: str | None, group: str | None) -> User:
    """``-u``/``User`` to uid, gid and supplementary groups, from the image's files."""
    if not spec:
        user = resolve_user("0", passwd, group)
        user.home = user.home if user.home != "/" else "/root"  # root without a passwd entry
        return user
    name_or_uid, _, group_spec = spec.partition(":")
    uid = _number(name_or_uid)
    entry = None
    for fields in _entries(passwd, 7):
        if (uid is None and fields[0] == name_or_uid) or (uid is not None and fields[2] == str(uid)):
            entry = fields
            break
    if entry is None and uid is None:
        raise ContainerError(f"unable to find user {name_or_uid}: no matching entries in passwd file")
    if entry is not None:
        if _number(entry[2]) is None:
            raise ContainerError(f"the image's /etc/passwd has no valid uid for {entry[0]!r}")
        user = User(_number(entry[2]) or 0, _number(entry[3]) or 0, home=entry[5] or "/")
    else:
        user = User(uid or 0, 0, home="/")  # a bare uid the image does not know
    if group_spec:
        gid = _number(group_spec)
        if gid is None:
            match = [g for g in _entries(group, 4) if g[0] == group_spec]
            gid = _number(match[0][2]) if match else None
            if gid is None:
                raise ContainerError(f"unable to find group {group_spec}: no matching entries in group file")
        user.gid = gid
    if entry is not None:
        # Supplementary groups: those that list the user as a member.
        user.additional_gids = sorted({int(g[2]) for g in _entries(group, 4)
                                       if entry[0] in g[3].split(",") and g[2].isdigit()})
    return user
# [/book:resolve-user]


def group_id(name: str, group: str | None, flag: str) -> int:
    """A group by number, or by its name in the image's /etc/group (``--group-add``)."""
    gid = _number(name)
    if gid is None:
        match = [g for g in _entries(group, 4) if g[0] == name]
        gid = _number(match[0][2]) if match else None
        if gid is None:
            raise ContainerError(f"{flag} {name}: unable to find group {name}: no matching entries "
                                 "in the image's group file")
    return gid


def read_image_file(lowers: list[str], path: str, limit: int = 1 << 20) -> str | None:
    """The text of ``path`` as the merged image shows it, read layer by layer
    (top first) without following any symlink, so a hostile image cannot
    make the engine read a host file."""
    parts = [p for p in path.split("/") if p]
    for lower in lowers:
        fd = None
        try:
            fd = os.open(lower, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            for part in parts[:-1]:
                next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                  dir_fd=fd)
                os.close(fd)
                fd = next_fd
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                return None  # a whiteout, a symlink or a directory
            file_fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            with os.fdopen(file_fd, "rb") as f:
                return f.read(limit).decode("utf-8", "replace")
        except FileNotFoundError:
            if _opaque_parent(lower, parts):
                return None  # an opaque directory of this layer hides the ones below
            continue  # not in this layer: look below
        except OSError:
            return None  # a symlink or file where a directory should be
        finally:
            if fd is not None:
                os.close(fd)
    return None



def _opaque_parent(lower: str, parts: list[str]) -> bool:
    from mini_engine.images.layer import is_opaque

    return any(is_opaque(os.path.join(lower, *parts[:i])) for i in range(1, len(parts)))
