"""Stage 7: the network commands docker users reach for on running containers (issue 21, items 6-7).

``port`` (what a container publishes), ``rename`` (the new name answered on its
network), ``network connect`` (one more interface, an address and the name on
another network) and ``network disconnect`` (all of it undone). As in
test_stage7_networking.py, the engine runs in a "host" network namespace the
test makes (tests/fixtures/netlab.py), and the test ends with nothing of the
engine's left there.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import ok
from fixtures.netlab import NetLab

pytestmark = [pytest.mark.stage(7), pytest.mark.root]


def fails(result: Any, message: str, code: int = 125) -> None:
    assert (result.returncode, result.stdout, result.stderr) == (code, "", f"mini-engine: {message}\n")


def looked_up(net: NetLab, client: str, name: str) -> str | None:
    """The address busybox nslookup in ``client`` finds for ``name``, or None."""
    result = net.run("exec", client, "nslookup", name)
    if result.returncode != 0:
        return None
    answer = result.stdout.split(f"Name:\t{name}\n", 1)[1]
    return answer.split("Address: ", 1)[1].split()[0]


def test_port_shows_what_a_running_container_publishes(net: NetLab) -> None:
    web = net.start("web", "--network", "bridge", "-p", "8080:80", "-p", "127.0.0.1:5353:53/udp")
    try:
        assert ok(net.run("port", "web")) == "80/tcp -> 0.0.0.0:8080\n53/udp -> 127.0.0.1:5353\n"
        assert ok(net.run("port", "web", "80")) == "0.0.0.0:8080\n"
        assert ok(net.run("port", "web", "53/udp")) == "127.0.0.1:5353\n"
        assert ok(net.run("container", "port", "web", "80/tcp")) == "0.0.0.0:8080\n"
        fails(net.run("port", "web", "81"), "no public port '81/tcp' published for web", 1)
        fails(net.run("port", "web", "8o"), 'invalid port "8o": expected PORT or PORT/PROTO (tcp, udp)')
        fails(net.run("port", "nosuch"), 'container "nosuch" does not exist')
    finally:
        net.stop("web", web)


def test_rename_changes_the_name_the_network_answers(net: NetLab) -> None:
    ok(net.run("network", "create", "front"))
    alpha = net.start("alpha", "--network", "front")
    beta = net.start("beta", "--network", "front")
    try:
        assert looked_up(net, "beta", "alpha") == "10.89.0.2"
        assert ok(net.run("rename", "alpha", "gamma")) == ""
        assert looked_up(net, "beta", "gamma") == "10.89.0.2"
        assert looked_up(net, "beta", "alpha") is None
        hosts = ok(net.run("exec", "beta", "cat", "/etc/hosts"))
        assert "gamma" in hosts and "alpha" not in hosts
    finally:
        net.stop("gamma", alpha)
        net.stop("beta", beta)
    ok(net.run("network", "rm", "front"))


def test_network_connect_and_disconnect_a_running_container(net: NetLab) -> None:
    ok(net.run("network", "create", "front"))  # 10.89.0.0/24
    ok(net.run("network", "create", "back"))  # 10.89.1.0/24
    alpha = net.start("alpha", "--network", "front")
    beta = net.start("beta", "--network", "back")
    try:
        cid = json.loads(ok(net.run("inspect", "alpha")))[0]["Id"]
        assert looked_up(net, "beta", "alpha") is None  # another network's name
        assert ok(net.run("network", "connect", "--alias", "db", "back", "alpha")) == ""
        # A second interface inside, with back's address; the default route stays front's.
        addresses = ok(net.run("exec", "alpha", "ip", "-o", "-4", "addr", "show")).splitlines()
        assert [(line.split()[1], line.split()[3]) for line in addresses] == \
            [("lo", "127.0.0.1/8"), ("eth0", "10.89.0.2/24"), ("eth1", "10.89.1.3/24")]
        assert ok(net.run("exec", "alpha", "ip", "route", "show", "default")).startswith(
            "default via 10.89.0.1 dev eth0")
        # Its names on back: by DNS, in back's hosts file, and over the wire.
        assert looked_up(net, "beta", "alpha") == "10.89.1.3"
        assert looked_up(net, "beta", "db") == "10.89.1.3"
        assert "10.89.1.3\talpha" in ok(net.run("exec", "beta", "cat", "/etc/hosts"))
        assert net.run("exec", "beta", "ping", "-c1", "-W5", "alpha").returncode == 0
        networks = json.loads(ok(net.run("inspect", "alpha")))[0]["NetworkSettings"]["Networks"]
        assert {name: n["IPAddress"] for name, n in networks.items()} == {"front": "10.89.0.2",
                                                                         "back": "10.89.1.3"}
        assert f"m1{cid[:12]}" in net.links()  # its host end, on back's bridge
        fails(net.run("network", "connect", "back", "alpha"),
              f'container {cid[:12]} is already connected to network "back"')
        fails(net.run("network", "connect", "nosuch", "alpha"),
              'network "nosuch" does not exist (see mini-engine network ls)')
        fails(net.run("network", "connect", "back", "nosuch"), 'container "nosuch" does not exist')
        users = sorted([cid[:12], json.loads(ok(net.run("inspect", "beta")))[0]["Id"][:12]])
        fails(net.run("network", "rm", "back"), f'network "back" is in use by container {", ".join(users)}', 1)
        # disconnect undoes it all.
        assert ok(net.run("network", "disconnect", "back", "alpha")) == ""
        assert "eth1" not in ok(net.run("exec", "alpha", "ip", "-o", "link"))
        assert looked_up(net, "beta", "alpha") is None
        assert f"m1{cid[:12]}" not in net.links()
        assert "back" not in json.loads(ok(net.run("inspect", "alpha")))[0]["NetworkSettings"]["Networks"]
        fails(net.run("network", "disconnect", "back", "alpha"),
              f'container {cid[:12]} is not connected to network "back"')
        # Connected again, then ended: its engine takes the second network down with the first.
        ok(net.run("network", "connect", "back", "alpha"))
        assert looked_up(net, "beta", "alpha") == "10.89.1.3"
    finally:
        net.stop("alpha", alpha)
    try:
        assert looked_up(net, "beta", "alpha") is None
    finally:
        net.stop("beta", beta)
    ok(net.run("network", "rm", "front"))
    ok(net.run("network", "rm", "back"))


def test_a_container_without_a_network_of_its_own_cannot_join_one(net: NetLab) -> None:
    ok(net.run("network", "create", "front"))
    lone = net.start("lone", "--network", "none")
    try:
        cid = json.loads(ok(net.run("inspect", "lone")))[0]["Id"]
        fails(net.run("network", "connect", "front", "lone"),
              f"container {cid[:12]} has no network of its own (--network none, host, or a pod's): "
              "it cannot join another network")
    finally:
        net.stop("lone", lone)
    fails(net.run("network", "connect", "front", "lone"), 'container "lone" does not exist')
    ok(net.run("network", "rm", "front"))
