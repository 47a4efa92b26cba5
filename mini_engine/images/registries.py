"""``registries.conf``: where a name is pulled from, in the format of containers-registries.conf(5).

Chapter 05 reads this module. The file is TOML, version 2 of the format
podman, buildah and skopeo read:

    unqualified-search-registries = ["127.0.0.1:5000", "docker.io"]

    [[registry]]
    prefix = "docker.io/library"          # the names this entry is for (default: its location)
    location = "registry.example:5000/hub"  # where they are pulled from instead
    insecure = true                         # plain HTTP (and no TLS check): a test registry
    blocked = false                         # true: refuse to pull anything it is for

    [[registry.mirror]]
    location = "127.0.0.1:5001/hub"        # tried first, in order; the location last
    insecure = true

A *short name*, one that names no registry (``app``, ``team/app``), is
looked for in each ``unqualified-search-registries`` in turn, here first,
then pulled from the first that has it, as podman does when it cannot ask
(``short-name-mode = "permissive"`` without a terminal). Without the file,
or without the key, a short name is Docker Hub's, as docker has it.

The ``[[registry]]`` whose prefix matches the most of a name decides:
``example.com/foo`` matches ``example.com/foo/bar:1`` but not
``example.com/foobar``; ``*.example.com`` matches any host under
``example.com``. Its mirrors are tried before its location, and a mirror
that fails (unreachable, the image not there) hands on to the next: a
mirror is a cache, never the only source. The image keeps the name it
was asked for, whichever mirror sent it. ``pull --tls-verify=false`` makes
every endpoint insecure, as it did before the file existed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from mini_engine.base.errors import ContainerError
from mini_engine.images import reference
from mini_engine.images.reference import Reference
from mini_engine.settings.files import config_path, fail, line_of, read_toml


@dataclass(frozen=True)
class Endpoint:
    """One place to pull a name from: a registry host, the repository there, and how to talk to it."""

    host: str
    path: str
    insecure: bool


@dataclass
class Registry:
    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirrors: list[tuple[str, bool]] = field(default_factory=list)  # (location, insecure)

    def matches(self, name: str) -> bool:
        """Does this entry's prefix cover ``name`` (DOMAIN/PATH)? By whole components."""
        if self.prefix.startswith("*."):
            host = name.split("/", 1)[0].split(":", 1)[0]
            return host.endswith(self.prefix[1:])
        return name == self.prefix or name.startswith(self.prefix + "/")


@dataclass
class Config:
    path: str | None = None
    search: list[str] | None = None  # unqualified-search-registries; None: not said (Docker Hub)
    registries: list[Registry] = field(default_factory=list)

    def entry_for(self, ref: Reference) -> Registry | None:
        """The [[registry]] with the longest prefix that covers ``ref``."""
        covering = [r for r in self.registries if r.matches(ref.name)]
        return max(covering, key=lambda r: (not r.prefix.startswith("*."), len(r.prefix)), default=None)

    def candidates(self, name: str) -> list[Reference]:
        """The references ``name`` may mean, in the order to try them: itself if it names a
        registry, else the name in each search registry (Docker Hub without the file)."""
        ref = reference.parse(name)
        if not is_short(name) or self.search is None:
            return [ref]
        if not self.search:
            raise ContainerError(f'short name "{name}": {self.path} lists no unqualified-search-registries; '
                                 f"give the registry too (e.g. {ref.name})")
        found = []
        for registry in self.search:
            # Docker Hub's official images live under library/; other registries take the name as it is.
            path = ref.path.removeprefix("library/") if registry != reference.DEFAULT_DOMAIN else ref.path
            found.append(Reference(registry, path, ref.tag, ref.digest))
        return found

    # [book:endpoints]
    def endpoints(self, ref: Reference, insecure: bool = False) -> list[Endpoint]:
        """Where to pull ``ref`` from, in order: its entry's mirrors, then its location."""
        entry = self.entry_for(ref)
        if entry is None:
            return [Endpoint(ref.domain, ref.path, insecure)]
        if entry.blocked:
            raise ContainerError(f"{ref.name}: pulling from {entry.prefix} is blocked by {self.path}")
        out = []
        for location, mirror_insecure in [*entry.mirrors, (entry.location, entry.insecure)]:
            if entry.prefix.startswith("*."):  # a wildcard entry keeps the name; only its settings apply
                rewritten = ref.name
            else:
                rewritten = location + ref.name[len(entry.prefix):]
            host, _, path = rewritten.partition("/")
            out.append(Endpoint(host, path, insecure or mirror_insecure))
        return out
    # [/book:endpoints]


def is_short(name: str) -> bool:
    """Does ``name`` leave out its registry (``busybox``, ``team/app:1``), as reference.parse
    decides it: a first component that is a domain has a "." or a ":", or is localhost?"""
    first, slash, _ = name.split("@")[0].partition("/")
    return not slash or not ("." in first or ":" in first or first == "localhost")


def _bool(path: str, table: dict[str, Any], key: str, after: int) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise fail(path, key, "must be true or false", after)
    return value


def _location(path: str, value: Any, key: str, after: int) -> str:
    if not isinstance(value, str) or not value or value != value.strip("/") or "://" in value:
        raise fail(path, key, "must be HOST[:PORT][/PATH], without a scheme", after)
    try:
        reference.parse(value.partition("/")[0] + "/x" if "/" not in value else value)
    except ContainerError:
        raise fail(path, key, f"{value!r} is not a registry location", after) from None
    return value


@functools.cache
def load() -> Config:
    """What registries.conf says; an empty Config without the file."""
    path = config_path("registries.conf")
    data = read_toml(path)
    if data is None:
        return Config()
    if data.get("version", "2") != "2":
        raise fail(path, "version", "only version 2 of registries.conf is read (containers-registries.conf(5))")
    if "registries" in data:  # version 1: [registries.search] registries = [...]
        raise fail(path, "registries", "this is version 1 of the format; write unqualified-search-registries "
                                       "and [[registry]] tables (containers-registries.conf(5))")
    config = Config(path)
    search = data.get("unqualified-search-registries")
    if search is not None:
        if not isinstance(search, list) or not all(isinstance(s, str) and s for s in search):
            raise fail(path, "unqualified-search-registries",
                       'must be a list of registries, e.g. ["docker.io"]')
        config.search = [_location(path, s, "unqualified-search-registries", 0) for s in search]
    entries = data.get("registry", [])
    if not isinstance(entries, list):
        raise fail(path, "registry", "must be written [[registry]], a table for each registry")
    after = 0
    for entry in entries:
        after = line_of(path, "location", after)  # this entry's line, for its errors
        if "location" not in entry and "prefix" not in entry:
            raise fail(path, "registry", "a [[registry]] needs a location", after - 1)
        location = _location(path, entry.get("location", entry.get("prefix")), "location", after - 1)
        prefix = entry.get("prefix", location)
        if not isinstance(prefix, str) or not prefix:
            raise fail(path, "prefix", "must be a name's beginning, e.g. docker.io/library", after - 1)
        registry = Registry(prefix, location, _bool(path, entry, "insecure", after - 1),
                            _bool(path, entry, "blocked", after - 1))
        mirrors = entry.get("mirror", [])
        if not isinstance(mirrors, list):
            raise fail(path, "mirror", "must be written [[registry.mirror]]", after)
        for mirror in mirrors:
            after = line_of(path, "location", after)
            registry.mirrors.append((_location(path, mirror.get("location"), "location", after - 1),
                                     _bool(path, mirror, "insecure", after - 1)))
        config.registries.append(registry)
    return config
