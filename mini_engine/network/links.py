"""Container networking: a bridge on the host, a veth pair per container.

Chapter 07 reads this module. Man pages: veth(4), ip-link(8),
ip-route(8), rtnetlink(7); the engine's own netlink.py, used by index.

The container's network namespace starts with nothing but ``lo``. The
engine makes a pair of virtual Ethernet devices (what enters one leaves the
other), plugs one end into a bridge on the host (``mini0``, a software
switch whose own address is the containers' gateway) and makes the other
inside the container's namespace, where it is ``eth0`` with an address
from ``ipam.py`` and a default route through the gateway.

The namespace itself is made by the engine before the runtime runs, as
podman does: ``create_namespace`` keeps a new network namespace alive by
bind-mounting its ``/proc/<pid>/ns/net`` file on a file of ours (what
``ip netns add`` does), and config.json names that file in
``linux.namespaces``. So the container's network is ready before its first
instruction, and outlives none of it.

Every link is found and changed by its index, never by name alone: names
can be reused between two calls, indexes cannot.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from contextlib import contextmanager

from mini_engine.base import syscalls
from mini_engine.base.errors import ContainerError
from mini_engine.network.netlink import IPRoute, NetlinkError


# [book:netns]
@contextmanager
def inside(netns: str) -> Iterator[None]:
    """Run the body with this thread in the network namespace ``netns``, then step back.

    A socket belongs to the network namespace it was made in, for good: one
    made in here talks to the container's network after we have left.
    """
    ours = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        theirs = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            syscalls.setns(theirs, syscalls.CLONE_NEWNET)
        finally:
            os.close(theirs)
        try:
            yield
        finally:
            syscalls.setns(ours, syscalls.CLONE_NEWNET)
    finally:
        os.close(ours)


def create_namespace(path: str) -> None:
    """A new network namespace, held by a bind mount on ``path`` (as ``ip netns add``)."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    with open(path, "x"):
        pass  # the mount point: an empty file
    # unshare(2) moves the calling thread into the new namespace, so we pin
    # it with the bind mount and step back into ours at once.
    ours = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.unshare(syscalls.CLONE_NEWNET)
        try:
            syscalls.mount("/proc/thread-self/ns/net", path, None, syscalls.MS_BIND)
        finally:
            syscalls.setns(ours, syscalls.CLONE_NEWNET)
    except OSError as exc:
        os.unlink(path)
        raise ContainerError(f"network: cannot make a network namespace at {path}: {exc.strerror}") from None
    finally:
        os.close(ours)
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


# [book:bridge]
def ensure_bridge(ipr: IPRoute, name: str, subnet: str) -> int:
    """The bridge ``name`` with the subnet's gateway address, up; its index.

    It stays when its last container goes, as docker's docker0 and podman's
    podman0 do: the next container finds it ready (``network prune``
    removes it).
    """
    index = ipr.link_index(name)
    if index is None:
        try:
            ipr.link_add(name, "bridge")
        except NetlinkError as exc:
            raise ContainerError(f"network: cannot make bridge {name}: {exc.strerror}") from None
        index = ipr.link_index(name)
        if index is None:
            raise ContainerError(f"network: bridge {name} vanished as it was made")
    network = ipaddress.ip_network(subnet)
    gateway = str(next(network.hosts()))
    if gateway not in ipr.addresses(index):
        ipr.addr_add(index, gateway, network.prefixlen)
    ipr.link_set(index, up=True)
    # Published ports reached at 127.0.0.1 leave through the bridge with
    # that source until NAT changes it; the kernel drops such "martians"
    # unless the bridge allows loopback addresses (chapter 07, ports; and
    # firewall.py's loopback chain, for what that opens).
    with open(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "w") as f:
        f.write("1")
    return index
# [/book:bridge]


# [book:attach]
def attach(netns: str, container_id: str, address: str, subnet: str, bridge: str) -> None:
    """Give the network namespace ``netns`` (a path) an eth0 on ``bridge``.

    It makes the bridge if it is not there yet (``ensure_bridge``), names the
    host's end ``me`` and the container id's first 12 characters (which
    ``detach`` removes), gives eth0 ``address`` in ``subnet`` and a default
    route through the subnet's first address, and brings eth0 and the
    namespace's ``lo`` up: a namespace made by the runtime has ``lo`` down.
    """
    network = ipaddress.ip_network(subnet)
    gateway = str(next(network.hosts()))
    host_name = f"me{container_id[:12]}"  # IFNAMSIZ: 15
    with IPRoute() as ipr:
        bridge_index = ensure_bridge(ipr, bridge, subnet)
        mtu = default_mtu(ipr)
        theirs = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            # One message: our end on the bridge and up, the other end made
            # as eth0 right inside the container's namespace.
            ipr.link_add(host_name, "veth", mtu=mtu, master=bridge_index, up=True,
                         peer="eth0", peer_netns=theirs)
        finally:
            os.close(theirs)
    with inside(netns):
        ns = IPRoute()
    with ns:
        index = ns.link_index("eth0")
        lo = ns.link_index("lo")
        if index is None or lo is None:
            raise ContainerError(f"network: no eth0 in {netns}")
        ns.addr_add(index, address, network.prefixlen)
        ns.link_set(index, up=True)
        ns.link_set(lo, up=True)
        ns.route_add_default(gateway)
# [/book:attach]


def attach_another(netns: str, address: str, subnet: str, bridge: str, inside_name: str,
                   host_name: str) -> None:
    """``network connect``: one more interface for the namespace ``netns``, ``inside_name``
    (eth1...), on ``bridge``, its host end ``host_name``. As ``attach``, but with no
    default route: the first network keeps it."""
    network = ipaddress.ip_network(subnet)
    with IPRoute() as ipr:
        bridge_index = ensure_bridge(ipr, bridge, subnet)
        theirs = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            ipr.link_add(host_name, "veth", mtu=default_mtu(ipr), master=bridge_index, up=True,
                         peer=inside_name, peer_netns=theirs)
        finally:
            os.close(theirs)
    with inside(netns):
        ns = IPRoute()
    with ns:
        index = ns.link_index(inside_name)
        if index is None:
            raise ContainerError(f"network: no {inside_name} in {netns}")
        ns.addr_add(index, address, network.prefixlen)
        ns.link_set(index, up=True)


def detach(container_id: str, host_name: str | None = None) -> None:
    """Remove the container's host veth (its peer goes with it), if it is still there."""
    with IPRoute() as ipr:
        index = ipr.link_index(host_name or f"me{container_id[:12]}")
        if index is not None:
            ipr.link_del(index)


def names_in(netns: str) -> set[str]:
    """The names of the links inside the network namespace ``netns``."""
    with inside(netns):
        ns = IPRoute()
    with ns:
        return set(ns.link_names().values())


def exists(name: str) -> bool:
    with IPRoute() as ipr:
        return ipr.link_index(name) is not None


def names() -> set[str]:
    """The names of every link of this namespace."""
    with IPRoute() as ipr:
        return set(ipr.link_names().values())


def remove_bridge(name: str) -> None:
    with IPRoute() as ipr:
        index = ipr.link_index(name)
        if index is not None:
            ipr.link_del(index)


def routes() -> list[tuple[ipaddress.IPv4Network, str]]:
    """The IPv4 networks this host reaches directly or routes to, with the link of each."""
    with IPRoute() as ipr:
        names = ipr.link_names()
        # The default route overlaps nothing.
        return [(dst, names.get(oif or 0, "?")) for dst, oif in ipr.routes() if dst is not None]


def default_mtu(ipr: IPRoute) -> int:
    """The MTU of the link the default route leaves by: what the outside can carry."""
    for dst, oif in ipr.routes():
        if dst is None and oif:
            return ipr.link_mtu(oif)
    return 1500
