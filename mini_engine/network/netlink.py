"""Netlink: how a program asks the kernel for links, addresses and routes.

Chapter 07 reads this module. Man pages: netlink(7), rtnetlink(7),
netlink(3); the kernel's include/uapi/linux/{netlink,rtnetlink,if_link}.h.

``ip link``, ``ip addr`` and ``ip route`` change nothing themselves: they
send messages to the kernel over a socket (``AF_NETLINK``) and read the
answers. A message is a 16-byte header (``nlmsghdr``: length, type, flags,
sequence number, port), a fixed struct that depends on the type
(``ifinfomsg`` for a link, ``ifaddrmsg`` for an address, ``rtmsg`` for a
route), then attributes: each a length, a type and a value, padded to four
bytes, and nested when the value is itself a list of attributes (a veth's
peer). The kernel answers a request that asked for an acknowledgement
(``NLM_F_ACK``) with an ``NLMSG_ERROR`` message whose error is 0 or a
negative errno, and a dump (``NLM_F_DUMP``) with messages until
``NLMSG_DONE``. Every change here is synchronous: when the acknowledgement
arrives, the link exists.

Links are named by index, as pyroute2's IPRoute does: a name can be given
to another link between two calls, an index cannot. This module is the
engine's own, a few hundred lines of struct, instead of pyroute2 (whose
import alone, with its asyncio event loop, took longer than the rest of
a networked ``run``).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from typing import Self

NETLINK_ROUTE, NETLINK_NETFILTER = 0, 12

# nlmsghdr: u32 length, u16 type, u16 flags, u32 sequence, u32 port
HEADER = struct.Struct("=IHHII")
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26

IFINFOMSG = struct.Struct("=BxHiII")   # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")    # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")    # family, dst_len, src_len, tos, table, protocol, scope, type, flags

IFF_UP = 0x1
IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 3, 4, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1


def attribute(kind: int, value: bytes) -> bytes:
    """One attribute (rtattr / nlattr): u16 length, u16 type, the value, padding to 4 bytes."""
    data = struct.pack("=HH", 4 + len(value), kind) + value
    return data + bytes(-len(data) % 4)


def name(text: str) -> bytes:
    return text.encode() + b"\0"  # the kernel's strings end with NUL


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def attributes(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """The attributes from ``offset`` to the end, by type (the nested flag bit dropped)."""
    found = {}
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        found[kind & 0x3FFF] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return found


class NetlinkError(OSError):
    """The kernel refused a request: its errno, and what was asked."""


class Netlink:
    """A netlink socket of one protocol; ``request`` sends a message and gathers the answer.

    The socket talks to the network namespace it was made in, for good
    (network.netlink_in makes one inside a container's).
    """

    def __init__(self, protocol: int = NETLINK_ROUTE) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
        self.sock.bind((0, 0))  # the kernel picks our port number
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, kind: int, flags: int, body: bytes, what: str) -> list[tuple[int, bytes]]:
        """Send one message; return the (type, payload) of each answer until the ACK or DONE."""
        self.seq += 1
        message = HEADER.pack(HEADER.size + len(body), kind, NLM_F_REQUEST | flags, self.seq, 0) + body
        self.sock.send(message)
        answers: list[tuple[int, bytes]] = []
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + HEADER.size <= len(data):
                length, mtype, mflags, seq, _ = HEADER.unpack_from(data, offset)
                payload = data[offset + HEADER.size:offset + length]
                offset += (length + 3) & ~3
                if seq != self.seq:
                    continue  # an answer to an earlier request
                if mtype == NLMSG_ERROR:
                    error = -struct.unpack_from("=i", payload)[0]
                    if error:
                        raise NetlinkError(error, f"{what}: {os.strerror(error)}")
                    return answers  # the acknowledgement: done
                if mtype == NLMSG_DONE:
                    return answers
                answers.append((mtype, payload))
                if not mflags & NLM_F_MULTI and not flags & NLM_F_ACK:
                    return answers  # a single answer, and no ACK asked for


class IPRoute(Netlink):
    """rtnetlink: links, addresses and routes, each link by its index."""

    def link_index(self, ifname: str) -> int | None:
        """The index of link ``ifname``, or None if there is none."""
        try:
            answers = self.request(RTM_GETLINK, 0, IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
                                   + attribute(IFLA_IFNAME, name(ifname)), f"link {ifname}")
        except NetlinkError as exc:
            if exc.errno == 19:  # ENODEV
                return None
            raise
        return int(IFINFOMSG.unpack_from(answers[0][1])[2])

    def link_mtu(self, index: int) -> int:
        answers = self.request(RTM_GETLINK, 0, IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0),
                               f"link {index}")
        return int(struct.unpack("=I", attributes(answers[0][1], IFINFOMSG.size)[IFLA_MTU])[0])

    def link_add(self, ifname: str, kind: str, *, mtu: int | None = None, master: int | None = None,
                 up: bool = False, peer: str | None = None, peer_netns: int | None = None) -> None:
        """Make a link (``ip link add``): a bridge, or a veth pair whose other end ``peer``
        is made straight inside the network namespace open at descriptor ``peer_netns``."""
        data = b""
        if peer is not None:
            peer_attrs = attribute(IFLA_IFNAME, name(peer))
            if mtu is not None:
                peer_attrs += attribute(IFLA_MTU, u32(mtu))
            if peer_netns is not None:
                peer_attrs += attribute(IFLA_NET_NS_FD, u32(peer_netns))
            # The peer is described as a link of its own: an ifinfomsg and its attributes.
            data = attribute(IFLA_INFO_DATA, attribute(VETH_INFO_PEER, IFINFOMSG.pack(0, 0, 0, 0, 0)
                                                                         + peer_attrs))
        attrs = attribute(IFLA_IFNAME, name(ifname))
        attrs += attribute(IFLA_LINKINFO, attribute(IFLA_INFO_KIND, kind.encode()) + data)
        if mtu is not None:
            attrs += attribute(IFLA_MTU, u32(mtu))
        if master is not None:
            attrs += attribute(IFLA_MASTER, u32(master))
        flags = IFF_UP if up else 0
        self.request(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                     IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, flags, flags) + attrs, f"add link {ifname}")

    def link_set(self, index: int, *, up: bool | None = None, ifname: str | None = None) -> None:
        """``ip link set``: up or down, and a new name."""
        flags = IFF_UP if up else 0
        change = IFF_UP if up is not None else 0
        attrs = attribute(IFLA_IFNAME, name(ifname)) if ifname else b""
        self.request(RTM_NEWLINK, NLM_F_ACK, IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change) + attrs,
                     f"set link {index}")

    def link_del(self, index: int) -> None:
        self.request(RTM_DELLINK, NLM_F_ACK, IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0),
                     f"delete link {index}")

    def addresses(self, index: int) -> list[str]:
        """The IPv4 addresses of link ``index``."""
        found = []
        for _, payload in self.request(RTM_GETADDR, NLM_F_DUMP, IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0),
                                       "addresses"):
            if IFADDRMSG.unpack_from(payload)[4] == index:
                local = attributes(payload, IFADDRMSG.size).get(IFA_LOCAL)
                if local:
                    found.append(socket.inet_ntoa(local))
        return found

    def addr_add(self, index: int, address: str, prefixlen: int) -> None:
        packed = socket.inet_aton(address)
        self.request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                     IFADDRMSG.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
                     + attribute(IFA_LOCAL, packed) + attribute(IFA_ADDRESS, packed), f"add address {address}")

    def route_add_default(self, gateway: str) -> None:
        """``ip route add default via GATEWAY``."""
        self.request(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                     RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE,
                                RTN_UNICAST, 0) + attribute(RTA_GATEWAY, socket.inet_aton(gateway)),
                     f"add default route via {gateway}")

    def routes(self) -> Iterator[tuple[ipaddress.IPv4Network | None, int | None]]:
        """The IPv4 routes of the main table: (destination, or None for the default; link index)."""
        for _, payload in self.request(RTM_GETROUTE, NLM_F_DUMP, RTMSG.pack(socket.AF_INET, *(0,) * 8),
                                       "routes"):
            _, dst_len, _, _, table, *_ = RTMSG.unpack_from(payload)
            if table != RT_TABLE_MAIN:
                continue
            attrs = attributes(payload, RTMSG.size)
            oif = struct.unpack("=I", attrs[RTA_OIF])[0] if RTA_OIF in attrs else None
            dst = attrs.get(RTA_DST)
            yield (ipaddress.IPv4Network((dst, dst_len)) if dst else None), oif

    def link_names(self) -> dict[int, str]:
        """Every link's name, by index."""
        names = {}
        for _, payload in self.request(RTM_GETLINK, NLM_F_DUMP, IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0),
                                       "links"):
            ifname = attributes(payload, IFINFOMSG.size).get(IFLA_IFNAME, b"?\0")
            names[IFINFOMSG.unpack_from(payload)[2]] = ifname.rstrip(b"\0").decode()
        return names
