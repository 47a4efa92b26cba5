"""``policy.json``: which images may be pulled, in the format of containers-policy.json(5).

Chapter 05 reads this module. The file podman, buildah and skopeo read
from ``/etc/containers/policy.json``:

    {
      "default": [{"type": "reject"}],
      "transports": {
        "docker": {
          "127.0.0.1:5000/team": [{"type": "insecureAcceptAnything"}],
          "docker.io/library/busybox:1.36": [{"type": "insecureAcceptAnything"}]
        }
      }
    }

For each image pulled (transport ``docker``: a registry) the most specific
scope that covers its name decides: the name with its tag or digest, then
the repository, then each shorter namespace (``127.0.0.1:5000/team``,
``127.0.0.1:5000``), then a wildcard host (``*.example.com``), then the
transport's ``""``, then ``default``. Its requirements must all hold:

- ``insecureAcceptAnything``: anything goes;
- ``reject``: nothing does: the pull fails before a byte is fetched;
- ``signedBy``, ``sigstoreSigned``: the image must carry a signature this
  engine cannot check, so it refuses, rather than take an unchecked image
  for a checked one.

Without the file every pull is accepted, as docker's; podman refuses to
pull without one. ``load`` reads files the user already has: no policy
applies to it here.
"""

from __future__ import annotations

import functools
from typing import Any

from mini_engine.base.errors import ContainerError
from mini_engine.images.reference import Reference
from mini_engine.settings.files import ConfigError, config_path, fail, read_json

KNOWN = {"insecureAcceptAnything", "reject", "signedBy", "sigstoreSigned"}


class Refused(ContainerError):
    """The policy does not let this image in."""


@functools.cache
def load() -> tuple[str, dict[str, Any]] | None:
    """policy.json's path and contents, checked; None without the file."""
    path = config_path("policy.json")
    data = read_json(path)
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("default"), list) or not data["default"]:
        raise ConfigError(f'{path}, line 1: default: the policy needs a "default" list of requirements, '
                          'e.g. [{"type": "reject"}]')
    _check(path, "default", data["default"])
    transports = data.get("transports", {})
    if not isinstance(transports, dict):
        raise fail(path, "transports", "must be an object of transports, e.g. {\"docker\": {...}}")
    for transport, scopes in transports.items():
        if not isinstance(scopes, dict):
            raise fail(path, transport, "must be an object of scopes, each a list of requirements")
        for scope, requirements in scopes.items():
            _check(path, scope, requirements)
    return path, data


def _check(path: str, scope: str, requirements: Any) -> None:
    if not isinstance(requirements, list) or not requirements:
        raise fail(path, scope or '""', "must be a list of requirements, e.g. [{\"type\": \"reject\"}]")
    for requirement in requirements:
        kind = requirement.get("type") if isinstance(requirement, dict) else None
        if kind not in KNOWN:
            raise fail(path, scope or '""', f"unknown requirement type {kind!r} (insecureAcceptAnything, "
                                             "reject, signedBy, sigstoreSigned)")


def scopes(ref: Reference) -> list[str]:
    """The docker transport's scopes that may cover ``ref``, most specific first."""
    out = [str(ref)] if ref.tag or ref.digest else []
    parts = ref.name.split("/")
    out += ["/".join(parts[:n]) for n in range(len(parts), 0, -1)]
    host = parts[0].split(":")[0]
    labels = host.split(".")
    out += ["*." + ".".join(labels[n:]) for n in range(1, len(labels))]
    return out


# [book:policy-check]
def check(ref: Reference) -> None:
    """Refuse to pull ``ref`` unless the policy accepts it."""
    loaded = load()
    if loaded is None:
        return
    path, data = loaded
    docker = data.get("transports", {}).get("docker", {})
    scope = next((s for s in scopes(ref) if s in docker), "" if "" in docker else None)
    requirements = docker[scope] if scope is not None else data["default"]
    where = f'scope "{scope}"' if scope else ('the docker transport\'s ""' if scope == "" else "default")
    for requirement in requirements:
        kind = requirement["type"]
        if kind == "reject":
            raise Refused(f"{ref}: pulling is refused by {path} ({where}: reject)")
        if kind != "insecureAcceptAnything":
            raise Refused(f"{ref}: {path} ({where}) asks for {kind}, a signature check this engine "
                          "does not make; refused rather than taken unchecked")
# [/book:policy-check]
