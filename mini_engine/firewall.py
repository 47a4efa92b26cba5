"""Outbound NAT for the bridge, in an nftables table of our own.

Chapter 07 reads this module. Man pages: nft(8) (and its JSON form,
libnftables-json(5)), ip-sysctl ("ip_forward").

A container's address (10.88.0.x) means nothing outside the host. Packets
it sends out are *masqueraded*: on the way out of the host, their source
becomes the host's own address, and the answers are translated back. The
host must also forward packets between interfaces at all (ip_forward).

All our rules live in one table, ``inet mini_engine``: nothing of anyone
else's is flushed or rewritten, and ``teardown`` deletes the table whole.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from typing import Any

from mini_engine.runtime.errors import ContainerError

TABLE = "mini_engine"


def nft(commands: list[dict[str, Any]]) -> None:
    """Run nft commands given in its JSON form, all or nothing (nft applies a batch atomically)."""
    try:
        result = subprocess.run(["nft", "-j", "-f", "-"], input=json.dumps({"nftables": commands}),
                                capture_output=True, text=True)
    except FileNotFoundError:
        raise ContainerError("nft is missing: install nftables (scripts/install-system-deps.sh)") from None
    if result.returncode != 0:
        raise ContainerError(f"nft: {result.stderr.strip().splitlines()[0] if result.stderr else 'failed'}")


# [book:masquerade]
def setup(bridge: str, subnet: str) -> None:
    """Masquerade what the bridge's subnet sends out, forward to and from the bridge only."""
    net = ipaddress.ip_network(subnet)
    t = {"family": "inet", "table": TABLE}
    from_subnet = {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                             "right": {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}}}
    not_to_bridge = {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": bridge}}
    from_bridge = {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": bridge}}
    to_bridge = {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": bridge}}
    answers = {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}
    nft([
        {"add": {"table": {"family": "inet", "name": TABLE}}},
        {"flush": {"table": {"family": "inet", "name": TABLE}}},  # ours only: a fresh start
        {"add": {"chain": dict(t, name="postrouting", type="nat", hook="postrouting", prio=100,
                               policy="accept")}},
        {"add": {"chain": dict(t, name="forward", type="filter", hook="forward", prio=0, policy="accept")}},
        {"add": {"rule": dict(t, chain="postrouting",
                              expr=[from_subnet, not_to_bridge, {"masquerade": None}])}},
        {"add": {"rule": dict(t, chain="forward", expr=[from_bridge, {"accept": None}])}},
        {"add": {"rule": dict(t, chain="forward", expr=[to_bridge, answers, {"accept": None}])}},
    ])
    # The host must route between its interfaces at all.
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write("1")
# [/book:masquerade]


def teardown() -> None:
    """Delete our table, and with it every rule we made; nothing if it is not there."""
    table = {"table": {"family": "inet", "name": TABLE}}
    # "add" makes it if missing, so the "delete" of the same batch always has one to delete.
    nft([{"add": table}, {"delete": table}])
