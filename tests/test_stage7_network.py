"""Stage 7 (under way): bridge and veth pairs, made with pyroute2, by index.

Everything runs inside a network namespace the test makes (``unshare -n``):
it plays the host, with its own bridge, and two more namespaces play
containers. The machine's own links are never touched.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.stage(7), pytest.mark.root]

SCENARIO = r"""
import json, subprocess, sys
from mini_engine import network
from pyroute2 import IPRoute, NetNS

holders = [subprocess.Popen(["unshare", "-n", "sleep", "60"]) for _ in range(2)]
out = {}
try:
    import time
    time.sleep(0.2)  # the holders' unshare has run
    a = network.attach(holders[0].pid, "a" * 64, "10.88.0.2")
    b = network.attach(holders[1].pid, "b" * 64, "10.88.0.3")
    out["attachments"] = [a.host_veth, b.host_veth, a.gateway, a.prefixlen]
    with NetNS(f"/proc/{holders[0].pid}/ns/net") as ns:
        eth0 = ns.get_links(ns.link_lookup(ifname="eth0")[0])[0]
        out["eth0"] = {"up": eth0["flags"] & 1, "mtu": eth0.get_attr("IFLA_MTU"),
                       "addr": [x.get_attr("IFA_ADDRESS") for x in ns.get_addr(label="eth0")],
                       "gateway": [r.get_attr("RTA_GATEWAY") for r in ns.get_default_routes(family=2)]}
    with IPRoute() as ipr:
        bridge = ipr.link_lookup(ifname="mini0")[0]
        out["on_bridge"] = sorted(l.get_attr("IFLA_IFNAME") for l in ipr.get_links()
                                  if l.get_attr("IFLA_MASTER") == bridge)
    ping = subprocess.run(["nsenter", f"--net=/proc/{holders[0].pid}/ns/net", "busybox", "ping", "-c", "1",
                           "-W", "3", "10.88.0.3"], capture_output=True, text=True)
    out["ping"] = ping.returncode
    network.detach("a" * 64)
    network.detach("b" * 64)
    with IPRoute() as ipr:
        out["after"] = sorted(l.get_attr("IFLA_IFNAME") for l in ipr.get_links())
    network.remove_bridge()
    with IPRoute() as ipr:
        out["after_bridge"] = sorted(l.get_attr("IFLA_IFNAME") for l in ipr.get_links())
finally:
    for h in holders:
        h.kill()
        h.wait()
print(json.dumps(out))
"""


def test_two_namespaces_on_one_bridge_reach_each_other() -> None:
    result = subprocess.run(["unshare", "-n", sys.executable, "-c", SCENARIO], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["attachments"] == ["me" + "a" * 12, "me" + "b" * 12, "10.88.0.1", 16]
    assert out["eth0"]["up"] == 1 and out["eth0"]["addr"] == ["10.88.0.2"]
    assert out["eth0"]["gateway"] == ["10.88.0.1"]
    assert out["eth0"]["mtu"] == 1500  # no default route in the test's namespace: Ethernet's
    assert out["on_bridge"] == ["me" + "a" * 12, "me" + "b" * 12]
    assert out["ping"] == 0
    # Teardown: the veths went (their peers with their namespaces), then the bridge.
    assert out["after"] == ["lo", "mini0"]
    assert out["after_bridge"] == ["lo"]


NAT = r"""
import json, socket, subprocess, sys, time
from mini_engine import firewall, network
from pyroute2 import IPRoute, NetNS

container = subprocess.Popen(["unshare", "-n", "sleep", "60"])
outside = subprocess.Popen(["unshare", "-n", "sleep", "60"])
out = {}
try:
    time.sleep(0.2)
    network.attach(container.pid, "c" * 64, "10.88.0.2")
    # The outside: another namespace, reached through a veth of the host's, 10.99.0.0/24.
    with IPRoute() as ipr:
        ipr.link("add", ifname="uplink", kind="veth", peer="world")
        up, world = ipr.link_lookup(ifname="uplink")[0], ipr.link_lookup(ifname="world")[0]
        ipr.addr("add", index=up, address="10.99.0.1", prefixlen=24)
        ipr.link("set", index=up, state="up")
        ipr.link("set", index=world, net_ns_fd=f"/proc/{outside.pid}/ns/net")
    with NetNS(f"/proc/{outside.pid}/ns/net") as ns:
        idx = ns.link_lookup(ifname="world")[0]
        ns.addr("add", index=idx, address="10.99.0.2", prefixlen=24)
        ns.link("set", index=idx, state="up")
    firewall.setup("mini0", "10.88.0.0/16")
    server = subprocess.Popen(["nsenter", f"--net=/proc/{outside.pid}/ns/net", sys.executable, "-c",
        "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        "s.bind(('10.99.0.2', 8080)); s.listen(); print('ready', flush=True); c, a = s.accept(); print(a[0])"],
        stdout=subprocess.PIPE, text=True)
    server.stdout.readline()
    subprocess.run(["nsenter", f"--net=/proc/{container.pid}/ns/net", "busybox", "nc", "-w", "3", "10.99.0.2",
                    "8080"], input="hi", text=True, timeout=30)
    out["source_seen_outside"] = server.stdout.readline().strip()
    server.wait(timeout=10)
    rules = subprocess.run(["nft", "list", "table", "inet", "mini_engine"], capture_output=True,
                           text=True).stdout
    out["masquerade"] = "masquerade" in rules
    firewall.teardown()
    out["tables_after"] = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    network.detach("c" * 64)
    network.remove_bridge()
finally:
    for p in (container, outside):
        p.kill()
        p.wait()
print(json.dumps(out))
"""


def test_outbound_nat_shows_the_hosts_address_outside() -> None:
    result = subprocess.run(["unshare", "-n", sys.executable, "-c", NAT], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["source_seen_outside"] == "10.99.0.1"  # the host's, not the container's 10.88.0.2
    assert out["masquerade"] is True
    assert out["tables_after"] == ""  # our table gone; nobody else's was there
