"""Container networking: a bridge on the host, a veth pair per container.

Chapter 07 reads this module. Man pages: veth(4), ip-link(8),
ip-route(8), rtnetlink(7); pyroute2's IPRoute, used by index.

The container's network namespace starts with nothing but ``lo``. The
engine makes a pair of virtual Ethernet devices (what enters one leaves the
other), plugs one end into a bridge on the host (``mini0``, a software
switch whose own address is the containers' gateway) and moves the other
into the container's namespace, where it becomes ``eth0`` with an address
from ``ipam.py`` and a default route through the gateway.

Every link is found and changed by its index, never by name alone: names
can be reused between two calls, indexes cannot. pyroute2 costs about
0.3 s to import, so only the commands that network import this module.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

from mini_engine.runtime.errors import ContainerError

BRIDGE = "mini0"
SUBNET = "10.88.0.0/16"


@dataclass(frozen=True)
class Attachment:
    host_veth: str      # the host end, on the bridge
    address: str        # the container's, on eth0
    prefixlen: int
    gateway: str


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
def ensure_bridge(name: str = BRIDGE, subnet: str = SUBNET) -> int:
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
        return index
# [/book:bridge]


# [book:attach]
def attach(pid: int, container_id: str, address: str, subnet: str = SUBNET, bridge: str = BRIDGE,
           mtu: int | None = None) -> Attachment:
    """Give the network namespace of process ``pid`` an eth0 on ``bridge``."""
    from pyroute2 import IPRoute, NetNS

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
            ipr.link("set", index=peer_index, net_ns_fd=f"/proc/{pid}/ns/net")
        except BaseException:
            ipr.link("del", index=host_index)  # its peer goes with it
            raise
    with NetNS(f"/proc/{pid}/ns/net") as ns:
        index = _wait_for_link(ns, peer_name)
        ns.link("set", index=index, ifname="eth0", mtu=mtu)
        ns.addr("add", index=index, address=address, prefixlen=network.prefixlen)
        ns.link("set", index=index, state="up")
        lo = ns.link_lookup(ifname="lo")
        if lo:
            ns.link("set", index=lo[0], state="up")
        ns.route("add", dst="0.0.0.0/0", gateway=gateway)
    return Attachment(host_name, address, network.prefixlen, gateway)
# [/book:attach]


def detach(container_id: str) -> None:
    """Remove the container's host veth (its peer goes with it), if it is still there."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=f"me{container_id[:12]}"):
            ipr.link("del", index=index)


def remove_bridge(name: str = BRIDGE) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=name):
            ipr.link("del", index=index)


def _default_mtu(ipr: object) -> int:
    """The MTU of the link the default route leaves by: what the outside can carry."""
    for route in ipr.get_default_routes(family=2):  # type: ignore[attr-defined]
        oif = route.get_attr("RTA_OIF")
        if oif:
            links = ipr.get_links(oif)  # type: ignore[attr-defined]
            if links:
                return int(links[0].get_attr("IFLA_MTU"))
    return 1500
