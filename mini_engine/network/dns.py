"""Names inside the container: /etc/resolv.conf, /etc/hosts, /etc/hostname.

Chapter 07 reads this module. Man pages: resolv.conf(5), hosts(5),
hostname(5).

The engine writes these three files outside the container and bind-mounts
them over the image's, as docker does; the image is left as it was.

- ``resolv.conf`` is the host's, except for nameservers on loopback
  (127.0.0.53 of systemd-resolved, 127.0.0.1 of dnsmasq): in the
  container's own network namespace, 127.0.0.1 is the container itself.
  With none left, docker's fallback (Google's public resolvers) is used.
  On a user network its one nameserver is the network's DNS responder,
  at the bridge's address (``resolver.py``); ``--dns`` and ``--dns-search``
  replace the nameservers and the search domains.
- ``hosts`` names localhost and, on a bridge, every container of the same
  network: one file per network, rewritten in place when a container comes
  or goes, and bind-mounted read-only into each of them. So a container
  finds the others by name, the ones that started after it too, even on
  the default network, which has no DNS responder. ``--add-host`` adds
  lines of the container's own.
- ``hostname`` holds the container's hostname.
"""

from __future__ import annotations

import ipaddress
import os

from mini_engine.base.errors import ContainerError

FALLBACK_NAMESERVERS = ["8.8.8.8", "8.8.4.4"]

LOCALHOST = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
"""


# [book:resolv-conf]
def resolv_conf(host_text: str, keep_loopback: bool) -> str:
    """The host's resolv.conf for a container; ``keep_loopback`` with the host's network."""
    lines, servers = [], 0
    for line in host_text.splitlines():
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            try:
                loopback = ipaddress.ip_address(words[1].split("%")[0]).is_loopback
            except ValueError:
                loopback = False
            if loopback and not keep_loopback:
                continue  # it would be the container's own loopback
            servers += 1
        lines.append(line)
    if not servers:
        lines += [f"nameserver {server}" for server in FALLBACK_NAMESERVERS]
    return "\n".join(lines) + "\n"
# [/book:resolv-conf]


# [book:with-servers]
def with_servers(text: str, nameservers: list[str] | None, search: list[str] | None) -> str:
    """``text`` with its nameservers and its search domains replaced, where given
    (``search`` of ``["."]`` or ``[]``: none at all, docker's ``--dns-search .``)."""
    kept = []
    for line in text.splitlines():
        word = line.split()[:1]
        if nameservers is not None and word == ["nameserver"]:
            continue
        if search is not None and word in (["search"], ["domain"]):  # resolv.conf(5): the last one wins
            continue
        kept.append(line)
    head = []
    if search is not None and [d for d in search if d != "."]:
        head.append("search " + " ".join(d for d in search if d != "."))
    head += [f"nameserver {server}" for server in nameservers or []]
    return "\n".join(head + kept) + "\n"
# [/book:with-servers]


def read_host_resolv_conf() -> str:
    try:
        with open("/etc/resolv.conf") as f:
            return f.read()
    except OSError:
        return ""


# [book:hosts]
def hosts(entries: list[tuple[str, list[str]]]) -> str:
    """A hosts(5) file: localhost, then one line per container (address, names)."""
    return LOCALHOST + "".join(f"{address}\t{' '.join(names)}\n" for address, names in entries)


def parse_add_hosts(entries: list[str], gateway: str | None) -> list[list[str]]:
    """``--add-host NAME:ADDRESS`` (or ``NAME=ADDRESS``, as docker takes it too) as
    [name, address] pairs; ``host-gateway`` is the bridge's address, ``gateway``."""
    pairs = []
    for entry in entries:
        # A name has no ":", an IPv6 address has several: the first one separates.
        sep = min((i for i in (entry.find(":"), entry.find("=")) if i >= 0), default=-1)
        name, address = (entry[:sep], entry[sep + 1:]) if sep > 0 else ("", "")
        if not name or not address:
            raise ContainerError(f"--add-host {entry}: expected NAME:ADDRESS, e.g. db:10.0.0.5")
        if address == "host-gateway":
            if gateway is None:
                raise ContainerError(f"--add-host {entry}: host-gateway needs a bridge network")
            address = gateway
        try:
            ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            raise ContainerError(f"--add-host {entry}: {address} is not an IP address") from None
        pairs.append([name, address.strip("[]")])
    return pairs


def extra_hosts(entries: list[list[str]]) -> str:
    """``--add-host``'s lines: (name, address) pairs."""
    return "".join(f"{address}\t{name}\n" for name, address in entries)
# [/book:hosts]


def write_in_place(path: str, text: str) -> None:
    """Rewrite ``path`` keeping its inode: bind mounts of it see the new text.

    (A rename would put a new file in its place, and the containers that
    bind-mounted the old one would keep seeing the old one.)
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        data = text.encode()
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def write_new(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
