"""Published ports: ``-p [HOSTIP:][HOSTPORT:]PORT[/tcp|udp]`` and ``-P``.

Chapter 07 reads this module; firewall.py writes the DNAT rules. Man pages:
ip(7), tcp(7), udp(7).

A DNAT rule opens no socket, so by itself it would neither notice that the
host's port is taken nor stop a program that takes it later. The engine
therefore *reserves* each published port: it binds a socket to it (without
listening) and holds it for the container's life, as podman's conmon does.
A port already in use fails that bind, with a clear error, before anything
is made; two containers cannot publish the same port; and ``-p 80`` (no host
port) takes a free one from the kernel.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any

from mini_engine.base.errors import ContainerError


@dataclass(frozen=True)
class Port:
    protocol: str           # tcp or udp
    host_ip: str | None     # None: every address of the host
    host_port: int          # 0: any free port (the kernel picks one)
    port: int               # the container's


def _number(text: str, spec: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise ContainerError(f"-p {spec}: port {value} is not between 1 and 65535")
    return value


# [book:parse-publish]
def parse(spec: str) -> Port:
    """One ``-p`` value, docker's syntax (IPv4; no ranges)."""
    if spec.startswith("["):
        raise ContainerError(f"-p {spec}: IPv6 host addresses are not supported: the bridge is IPv4")
    if re.search(r"\d-\d", spec):
        raise ContainerError(f"-p {spec}: port ranges are not supported; give one -p per port")
    ports, _, protocol = spec.partition("/")
    parts = ports.split(":")
    port = parts[-1]
    host = parts[-2] if len(parts) > 1 else ""  # "": any free port
    host_ip = parts[0] if len(parts) == 3 else None
    if len(parts) > 3 or not port.isdigit() or not (host == "" or host.isdigit()):
        raise ContainerError(f"-p {spec}: expected [HOSTIP:][HOSTPORT:]PORT[/tcp|udp], e.g. 8080:80")
    protocol = protocol or "tcp"
    if protocol not in ("tcp", "udp"):
        raise ContainerError(f"-p {spec}: protocol {protocol} is not tcp or udp")
    if host_ip is not None:
        try:
            address = ipaddress.IPv4Address(host_ip)
        except ValueError:
            raise ContainerError(f"-p {spec}: {host_ip} is not an IPv4 address") from None
        host_ip = None if address.is_unspecified else host_ip  # 0.0.0.0: every address
    return Port(protocol, host_ip, _number(host, spec) if host else 0, _number(port, spec))
# [/book:parse-publish]


def exposed(image_config: dict[str, Any]) -> list[Port]:
    """``-P``: every port the image EXPOSEs, each to a free port of the host."""
    out = []
    for key in sorted((image_config.get("config") or {}).get("ExposedPorts") or {}):
        number, _, protocol = key.partition("/")
        out.append(parse(f"{number}/{protocol or 'tcp'}"))
    return out


# [book:reserve]
def reserve(port: Port) -> tuple[socket.socket, Port]:
    """Bind the host's port and keep the socket; return it and the port as bound."""
    kind = socket.SOCK_STREAM if port.protocol == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    where = port.host_ip or "0.0.0.0"
    try:
        sock.bind((where, port.host_port))
    except OSError as exc:
        sock.close()
        shown = f"{port.host_port}/{port.protocol} on {where}"
        if exc.errno == errno.EADDRINUSE:
            raise ContainerError(f"port {shown} is already in use") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ContainerError(f"cannot publish port {shown}: the host has no address {where}") from None
        raise ContainerError(f"cannot publish port {shown}: {exc.strerror}") from None
    return sock, Port(port.protocol, port.host_ip, sock.getsockname()[1], port.port)
# [/book:reserve]
