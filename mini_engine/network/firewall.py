"""NAT and published ports, in an nftables table of our own.

Chapter 07 reads this module. Man pages: nft(8), ip-sysctl ("ip_forward",
"route_localnet").

A container's address (10.88.0.x) means nothing outside the host. Packets
it sends out are *masqueraded*: on the way out of the host their source
becomes the host's own address, and the answers are translated back. The
host must also forward packets between interfaces at all (ip_forward).

A published port is the other direction: a packet for the host's port
8080 has its destination rewritten (DNAT) to the container's address and
port 80, before the host routes it. Packets the host sends itself take
the ``output`` hook instead of ``prerouting``, so the rule is in both.

Setting route_localnet on a bridge (for published ports on 127.0.0.1)
also lets containers send to the host's own 127.0.0.1; the ``loopback``
chain drops every packet for 127.0.0.0/8 that arrives by a link, before
NAT (the hole of CVE-2020-8558).

All our rules live in one table, ``inet mini_engine``. It is written
whole from the engine's leases each time a container comes or goes
(``apply``): one nft batch deletes our table and adds it back, atomically,
so nothing of anyone else's is flushed or rewritten, a crashed engine's
rules vanish with its lease, and the ruleset in the book is exactly what
``nft list table inet mini_engine`` prints.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from mini_engine.base.errors import ContainerError

TABLE = "mini_engine"


@dataclass(frozen=True)
class Bridge:
    name: str       # the bridge link, e.g. mini0
    subnet: str     # its containers' addresses, e.g. 10.88.0.0/16


@dataclass(frozen=True)
class Published:
    """One ``-p``: the host's ``host_ip:host_port`` leads to ``address:port`` of a container."""

    protocol: str           # tcp or udp
    host_ip: str | None     # None: every address of the host
    host_port: int
    address: str            # the container's
    port: int
    container: str          # its id, as the rule's comment


def nft(script: str) -> None:
    """Run an nft script; nft applies a script as one batch, all or nothing."""
    try:
        result = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    except FileNotFoundError:
        raise ContainerError("nft is missing: install nftables (scripts/install-system-deps.sh)") from None
    if result.returncode != 0:
        first = result.stderr.strip().splitlines()[0] if result.stderr.strip() else "failed"
        raise ContainerError(f"nft: {first}")


# [book:ruleset]
def ruleset(bridges: list[Bridge], published: list[Published]) -> str:
    """Our whole table, in nft's own language."""
    dnat = []
    for p in published:
        # Without a host address: any address that is the host's own.
        to_host = f"ip daddr {p.host_ip}" if p.host_ip else "fib daddr type local"
        dnat.append(f'{to_host} {p.protocol} dport {p.host_port} dnat ip to {p.address}:{p.port} '
                    f'comment "{p.container[:12]}"')
    postrouting, forward = [], ["ct status dnat accept"]  # published ports: to any bridge
    for b in bridges:
        # Out of the host from this subnet: the host's address as the source.
        postrouting.append(f'ip saddr {b.subnet} oifname != "{b.name}" masquerade')
        # A published port reached at 127.0.0.1: the container must not see
        # a loopback source (its answer would stay inside it), so the bridge's.
        postrouting.append(f'oifname "{b.name}" ip saddr 127.0.0.0/8 masquerade')
        others = [f'"{o.name}"' for o in bridges if o is not b]
        if others:  # networks are kept apart: nothing forwarded from one bridge to another
            forward.append(f'iifname "{b.name}" oifname {{ {", ".join(others)} }} drop')
        forward.append(f'iifname "{b.name}" accept')
        forward.append(f'oifname "{b.name}" ct state established,related accept')
    # route_localnet (network.ensure_bridge) lets the host take packets for
    # 127.0.0.0/8 from a bridge, and DNAT would lead them on to a port
    # published on 127.0.0.1: what arrives from a link with a loopback
    # destination never left this host, so it goes before conntrack sees it.
    # (Replies to the host's own 127.0.0.1 connections arrive for the
    # bridge's address; NAT restores 127.0.0.1 after this chain.)
    loopback = ['iifname != "lo" ip daddr 127.0.0.0/8 drop']
    chains = [
        ("loopback", "type filter hook prerouting priority raw; policy accept;", loopback),
        ("prerouting", "type nat hook prerouting priority dstnat; policy accept;", dnat),
        ("output", "type nat hook output priority -100; policy accept;", dnat),  # dstnat's number
        ("postrouting", "type nat hook postrouting priority srcnat; policy accept;", postrouting),
        ("forward", "type filter hook forward priority filter; policy accept;", forward),
    ]
    lines = [f"table inet {TABLE} {{"]
    for name, hook, rules in chains:
        lines += [f"\tchain {name} {{", f"\t\t{hook}", *(f"\t\t{r}" for r in rules), "\t}"]
    return "\n".join([*lines, "}", ""])
# [/book:ruleset]


# [book:apply]
def apply(bridges: list[Bridge], published: list[Published], record: str) -> None:
    """Make our table what ``ruleset`` says, or remove it when no bridge is left.

    Most containers publish no port, and then the table they need is the
    one already there: so the table last written is kept in ``record``,
    with the ruleset's generation after the write, a number the kernel
    raises at every change of any table. Only when either differs (our
    rules changed, or someone changed the ruleset since, perhaps deleting
    ours) does nft run.
    """
    if bridges:
        # The host must route between its interfaces at all.
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("1")
    wanted = ruleset(bridges, published) if bridges else ""
    try:
        with open(record) as f:
            generation, last = f.read().split("\n", 1)
        if last == wanted and int(generation) == ruleset_generation():
            return
    except (FileNotFoundError, ValueError):
        pass
    # "add" makes the table if it is missing, so the "delete" always has one to delete.
    nft(f"add table inet {TABLE}\ndelete table inet {TABLE}\n{wanted}")
    with open(record, "w") as f:
        f.write(f"{ruleset_generation()}\n{wanted}")
# [/book:apply]


def ruleset_generation() -> int:
    """The nftables ruleset's generation number (NFT_MSG_GETGEN, over nfnetlink)."""
    from mini_engine.network.netlink import NETLINK_NETFILTER, Netlink, attributes

    nfnl_subsys_nftables, nft_msg_getgen, nfta_gen_id = 10, 16, 1
    with Netlink(NETLINK_NETFILTER) as nl:
        # nfgenmsg: family (any), version 0, resource id 0
        (_, payload), = nl.request(nfnl_subsys_nftables << 8 | nft_msg_getgen, 0, bytes(4), "nft generation")
    return int.from_bytes(attributes(payload, 4)[nfta_gen_id], "big")
