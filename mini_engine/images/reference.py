"""Image references: ``busybox`` means ``docker.io/library/busybox:latest``.

Chapter 05 reads this module. The grammar is the distribution project's
(``reference/regexp.go``), which docker, podman and skopeo all follow:

    [DOMAIN[:PORT]/]PATH[:TAG][@DIGEST]

The first component is a domain only if it looks like one: it holds a "."
or a ":", or it is ``localhost``. Otherwise the image lives on Docker Hub,
and a one-component name there is an official image under ``library/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mini_engine.base.errors import ContainerError

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"  # Docker Hub's old name, which docker still takes
DEFAULT_TAG = "latest"

# One path component: lowercase alphanumerics joined by ".", "_", "__" or dashes.
COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
DOMAIN = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)"
                    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
                    r"|\[[0-9a-fA-F:]+\](?::[0-9]+)?")
TAG = re.compile(r"[\w][\w.-]{0,127}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
NAME_MAX = 255  # the whole name, domain included


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``docker.io/library/busybox``: the repository, without tag or digest."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


# [book:parse-reference]
def parse(text: str) -> Reference:
    """Parse and normalise ``text`` as docker does, or raise ContainerError.

    A reference without a tag or digest gets the tag ``latest``; one with a
    digest gets no tag. The refusals, in words the checks compare (TEXT is
    ``repr(text)``): ``invalid reference format: TEXT`` followed by
    ``(digest must be sha256:<64 hex>)``, ``(bad tag 'T')``, ``(bad registry
    'D')``, ``(bad name component 'C')`` or ``(name longer than 255)`` (the
    normalised name, ``docker.io/library/...``), or by nothing for an empty
    text; upper case: ``invalid reference format: repository name must be
    lowercase: TEXT``.
    """
    if not text or len(text) > 4 * NAME_MAX:
        raise ContainerError(f"invalid reference format: {text!r}")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not DIGEST.fullmatch(digest):
            raise ContainerError(f"invalid reference format: {text!r} (digest must be sha256:<64 hex>)")
    tag = None
    # A tag follows the last ":" only if no "/" comes after it: the ":" of
    # "localhost:5000/busybox" is the domain's port.
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1:]
        if not TAG.fullmatch(tag):
            raise ContainerError(f"invalid reference format: {text!r} (bad tag {tag!r})")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, remainder
        if not DOMAIN.fullmatch(domain):
            raise ContainerError(f"invalid reference format: {text!r} (bad registry {domain!r})")
    else:
        domain, path = DEFAULT_DOMAIN, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if path != path.lower():
        raise ContainerError(f"invalid reference format: repository name must be lowercase: {text!r}")
    for component in path.split("/"):
        if not COMPONENT.fullmatch(component):
            raise ContainerError(f"invalid reference format: {text!r} (bad name component {component!r})")
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"  # Docker Hub's official images
    if len(domain) + 1 + len(path) > NAME_MAX:
        raise ContainerError(f"invalid reference format: {text!r} (name longer than {NAME_MAX})")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)
# [/book:parse-reference]

