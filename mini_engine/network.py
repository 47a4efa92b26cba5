"""Container networking: a bridge on the host, a veth pair per container.

Chapter 07 reads this module. Man pages: veth(4), ip-link(8),
ip-route(8), rtnetlink(7); pyroute2's IPRoute, used by index.

The container's network namespace starts with nothing but ``lo``. The
engine makes a pair of virtual Ethernet devices (what enters one leaves the
other), plugs one end into a bridge on the host (``mini0``, a software
switch whose own address is the containers' gateway) and moves the other
into the container's namespace, where it becomes ``eth0`` with an address
from ``ipam.py`` and a default route through the gateway.

The namespace itself is made by the engine before the runtime runs, as
podman does: ``create_namespace`` keeps a new network namespace alive by
bind-mounting its ``/proc/<pid>/ns/net`` file on a file of ours (what
``ip netns add`` does), and config.json names that file in
``linux.namespaces``. So the container's network is ready before its first
instruction, and outlives none of it.

Every link is found and changed by its index, never by name alone: names
can be reused between two calls, indexes cannot. pyroute2 costs about
0.3 s to import, so only the commands that network import this module.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mini_engine.runtime import syscalls
from mini_engine.runtime.errors import ContainerError


# [book:netns]
def create_namespace(path: str) -> None:
    """A new network namespace, held by a bind mount on ``path`` (as ``ip netns add``)."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    with open(path, "x"):
        pass  # the mount point: an empty file
    # unshare(2) would move us, the engine, into the new namespace: a child
    # does it, pins the namespace with the bind mount, and exits.
    child = os.fork()
    if child == 0:
        try:
            syscalls.unshare(syscalls.CLONE_NEWNET)
            syscalls.mount("/proc/self/ns/net", path, None, syscalls.MS_BIND)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(child, 0)
    if status != 0:
        os.unlink(path)
        raise ContainerError(f"network: cannot make a network namespace at {path}")
# [/book:netns]


def remove_namespace(path: str) -> None:
    """Unpin the namespace (it goes when nothing else holds it) and remove the file."""
    try:
        syscalls.umount2(path, syscalls.MNT_DETACH)
    except OSError:
        pass  # not mounted: a half-made namespace
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# [book:socket-in]
@contextmanager
def netlink_in(netns: str) -> Iterator[Any]:
    """An IPRoute that works in the namespace ``netns``.

    A socket belongs to the network namespace it was made in, for good. So
    we step into ``netns`` with setns(2), make the netlink socket, and step
    back: the engine stays where it was, its socket talks to the container's
    network. (pyroute2's own NetNS forks a helper for this instead.)
    """
    from pyroute2 import IPRoute

    ours = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    theirs = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.setns(theirs, syscalls.CLONE_NEWNET)
        try:
            ipr = IPRoute()
        finally:
            syscalls.setns(ours, syscalls.CLONE_NEWNET)
    finally:
        os.close(ours)
        os.close(theirs)
    with ipr:
        yield ipr
# [/book:socket-in]


def _wait_for_link(ipr: object, name: str, timeout: float = 5.0) -> int:
    """The index of link ``name``, polling until the kernel has made it."""
    deadline = time.monotonic() + timeout
    while True:
        found = ipr.link_lookup(ifname=name)  # type: ignore[attr-defined]
        if found:
            return int(found[0])
        if time.monotonic() > deadline:
            raise ContainerError(f"network: link {name} did not appear")
        time.sleep(0.01)


# [book:bridge]
def ensure_bridge(name: str, subnet: str) -> int:
    """The bridge ``name`` with the subnet's gateway address, up; its index."""
    from pyroute2 import IPRoute

    network = ipaddress.ip_network(subnet)
    gateway = str(next(network.hosts()))
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except Exception as exc:  # pyroute2's NetlinkError; EEXIST if another engine won the race
                if getattr(exc, "code", None) != 17:
                    raise ContainerError(f"network: cannot make bridge {name}: {exc}") from None
        index = _wait_for_link(ipr, name)
        have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index)}
        if gateway not in have:
            ipr.addr("add", index=index, address=gateway, prefixlen=network.prefixlen)
        ipr.link("set", index=index, state="up")
    # Published ports reached at 127.0.0.1 leave through the bridge with
    # that source until NAT changes it; the kernel drops such "martians"
    # unless the bridge allows loopback addresses (chapter 07, ports).
    with open(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "w") as f:
        f.write("1")
    return index
# [/book:bridge]


# [book:attach]
def attach(netns: str, container_id: str, address: str, subnet: str, bridge: str,
           mtu: int | None = None) -> None:
    """Give the network namespace ``netns`` (a path) an eth0 on ``bridge``."""
    from pyroute2 import IPRoute

    network = ipaddress.ip_network(subnet)
    gateway = str(next(network.hosts()))
    host_name, peer_name = f"me{container_id[:12]}", f"mp{container_id[:12]}"  # IFNAMSIZ: 15
    bridge_index = ensure_bridge(bridge, subnet)
    with IPRoute() as ipr:
        if mtu is None:
            mtu = _default_mtu(ipr)
        ipr.link("add", ifname=host_name, kind="veth", peer=peer_name)
        host_index = _wait_for_link(ipr, host_name)
        try:
            peer_index = _wait_for_link(ipr, peer_name)
            ipr.link("set", index=host_index, master=bridge_index, mtu=mtu, state="up")
            # Into the container's namespace; it leaves ours at once.
            ipr.link("set", index=peer_index, net_ns_fd=netns)
        except BaseException:
            ipr.link("del", index=host_index)  # its peer goes with it
            raise
    with netlink_in(netns) as ns:
        index = _wait_for_link(ns, peer_name)
        ns.link("set", index=index, ifname="eth0", mtu=mtu)
        ns.addr("add", index=index, address=address, prefixlen=network.prefixlen)
        ns.link("set", index=index, state="up")
        lo = ns.link_lookup(ifname="lo")
        if lo:
            ns.link("set", index=lo[0], state="up")
        ns.route("add", dst="0.0.0.0/0", gateway=gateway)
# [/book:attach]


def detach(container_id: str) -> None:
    """Remove the container's host veth (its peer goes with it), if it is still there."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=f"me{container_id[:12]}"):
            ipr.link("del", index=index)


def exists(name: str) -> bool:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def remove_bridge(name: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=name):
            ipr.link("del", index=index)


def routes() -> list[tuple[ipaddress.IPv4Network, str]]:
    """The IPv4 networks this host reaches directly or routes to, with the link of each."""
    from pyroute2 import IPRoute

    out = []
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for route in ipr.get_routes(family=2, table=254):  # the main table
            dst = route.get_attr("RTA_DST")
            if dst is not None:  # the default route overlaps nothing
                out.append((ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False),
                            names.get(route.get_attr("RTA_OIF"), "?")))
    return out


def _default_mtu(ipr: object) -> int:
    """The MTU of the link the default route leaves by: what the outside can carry."""
    for route in ipr.get_default_routes(family=2):  # type: ignore[attr-defined]
        oif = route.get_attr("RTA_OIF")
        if oif:
            links = ipr.get_links(oif)  # type: ignore[attr-defined]
            if links:
                return int(links[0].get_attr("IFLA_MTU"))
    return 1500
