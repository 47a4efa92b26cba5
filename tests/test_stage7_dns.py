"""Stage 7: names by DNS on user networks (network/resolver.py, network/dnswire.py),
and the run flags that go with names: --network-alias, --ip, --dns, --dns-search, --add-host.

As in test_stage7_networking.py, the engine runs in a "host" network namespace
the test makes, and "outside" plays the world: there a stand-in for the host's
resolver (tests/fixtures/fakedns.py) answers upstream.test and logs what it is
asked. Queries are made three ways: busybox nslookup in a container, glibc's
resolver through Python's socket.getaddrinfo in the container's network
namespace, and raw messages this file builds from RFC 1035 itself.
"""

from __future__ import annotations

import json
import os
import random
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ok
from fixtures.netlab import OUTSIDE_IP, NetLab

from mini_engine.base import procfs
from mini_engine.labkit import wait_until
from mini_engine.network import links

pytestmark = [pytest.mark.stage(7), pytest.mark.root]

FAKEDNS = Path(__file__).parent / "fixtures" / "fakedns.py"
A, PTR, AAAA = 1, 12, 28


@pytest.fixture
def upstream(net: NetLab, tmp_path: Path) -> Iterator[Path]:
    """The fake upstream resolver on OUTSIDE_IP:53; yields its log of questions."""
    log = tmp_path / "upstream.log"
    proc = subprocess.Popen(["nsenter", f"--net={net.ns('outside')}", sys.executable, str(FAKEDNS), str(log)])
    try:
        assert wait_until(lambda: log.exists() and "ready" in log.read_text()), "fake upstream did not start"
        yield log
    finally:
        proc.kill()
        proc.wait()


def netns_of(net: NetLab, name: str) -> str:
    container_id = json.loads(ok(net.run("inspect", name)))[0]["Id"]
    return str(net.runroot / "netns" / container_id)


def responder_state(net: NetLab, network: str) -> dict[str, Any] | None:
    path = net.runroot / "networks" / f"{network}.dns"
    return json.loads(path.read_text()) if path.exists() else None


# Raw DNS, from RFC 1035 4.1: not the engine's dnswire, so that the two are checked against each other.

def build_query(name: str, qtype: int) -> bytes:
    header = struct.pack("!HHHHHH", random.randrange(65536), 0x0100, 1, 0, 0, 0)  # RD
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return header + labels + b"\x00" + struct.pack("!HH", qtype, 1)


def parse_reply(data: bytes) -> dict[str, Any]:
    ident, flags, qd, an, _, _ = struct.unpack_from("!HHHHHH", data)
    offset = 12
    for _ in range(qd):
        while data[offset]:
            offset += 1 + data[offset]
        offset += 5
    answers = []
    for _ in range(an):
        assert data[offset] & 0xC0 == 0xC0  # the engine names each answer by a pointer
        rtype, _cls, _ttl, length = struct.unpack_from("!HHIH", data, offset + 2)
        rdata = data[offset + 12:offset + 12 + length]
        if rtype == A:
            answers.append(("A", socket.inet_ntoa(rdata)))
        elif rtype == PTR:
            labels, i = [], 0
            while rdata[i]:
                labels.append(rdata[i + 1:i + 1 + rdata[i]].decode())
                i += 1 + rdata[i]
            answers.append(("PTR", ".".join(labels)))
        offset += 12 + length
    return {"id": ident, "rcode": flags & 0xF, "aa": bool(flags & 0x0400), "answers": answers}


def ask(netns: str | None, server: str, name: str, qtype: int, timeout: float = 3.0) -> dict[str, Any] | str:
    """One query from the network namespace ``netns`` (None: the test's own); the parsed
    reply, or what happened instead ("refused", "timeout")."""
    def make() -> socket.socket:
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if netns is None:
        sock = make()
    else:
        with links.inside(netns):  # a socket belongs to the namespace it was made in
            sock = make()
    query = build_query(name, qtype)
    with sock:
        sock.settimeout(timeout)
        sock.connect((server, 53))
        sock.send(query)
        try:
            reply = parse_reply(sock.recv(4096))
        except ConnectionRefusedError:
            return "refused"  # ICMP port unreachable: no socket took it
        except TimeoutError:
            return "timeout"
    assert reply["id"] == struct.unpack_from("!H", query)[0]
    return reply


def ask_tcp(netns: str, server: str, name: str, qtype: int) -> dict[str, Any]:
    """One query over TCP (RFC 1035 4.2.2: the message after its length in two bytes)."""
    with links.inside(netns):
        sock = socket.create_connection((server, 53), timeout=5)
    query = build_query(name, qtype)
    with sock:
        sock.sendall(struct.pack("!H", len(query)) + query)
        length = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))[0]
        reply = parse_reply(sock.recv(length, socket.MSG_WAITALL))
    assert reply["id"] == struct.unpack_from("!H", query)[0]
    return reply


def test_containers_find_each_other_by_dns_names_aliases_and_addresses(net: NetLab, upstream: Path) -> None:
    ok(net.run("network", "create", "front"))
    alpha = net.start("alpha", "--network", "front", "--network-alias", "db")
    try:
        state = responder_state(net, "front")
        assert state is not None and procfs.same_process(state["pid"], state["started"])
        # The engine blocks SIGTERM while it holds the networks' lock, and a blocked signal stays
        # blocked across execve: the responder must have unblocked it, or stop() could not stop it.
        lines = Path(f"/proc/{state['pid']}/status").read_text().splitlines()
        status = dict(line.split(":\t", 1) for line in lines)
        assert int(status["SigBlk"], 16) == 0
        assert not int(status["SigIgn"], 16) & 1 << (15 - 1)  # SIGTERM
        # The socket is the bridge's address, bound to the bridge alone.
        sockets = net.host("ss", "-Hulnp", "sport", "= :53").stdout
        assert "10.89.0.1%mini1:53" in sockets and f"pid={state['pid']}," in sockets
        # busybox nslookup: the name, the alias, the address back to the name.
        out = ok(net.run("run", "--rm", "--network", "front", "busybox", "sh", "-c",
                         "cat /etc/resolv.conf; nslookup alpha; nslookup db; nslookup 10.89.0.2"))
        assert out.startswith("nameserver 10.89.0.1\n")
        assert out.count("Server:\t\t10.89.0.1\n") == 3
        assert "Name:\talpha\nAddress: 10.89.0.2\n" in out and "Name:\tdb\nAddress: 10.89.0.2\n" in out
        assert "2.0.89.10.in-addr.arpa\tname = alpha\n" in out
        # A container that starts after alpha is found by alpha at once.
        beta = net.start("beta", "--network", "front")
        try:
            out = ok(net.run("exec", "alpha", "nslookup", "beta"))
            assert "Name:\tbeta\nAddress: 10.89.0.3\n" in out
            # Raw queries from beta's namespace: A, AAAA (no data, the name exists), PTR, and
            # a PTR for an address of the subnet nobody holds (ours: NXDOMAIN, never forwarded).
            netns = netns_of(net, "beta")
            a = ask(netns, "10.89.0.1", "alpha", A)
            assert isinstance(a, dict)
            assert (a["rcode"], a["aa"], a["answers"]) == (0, True, [("A", "10.89.0.2")])
            aaaa = ask(netns, "10.89.0.1", "alpha", AAAA)
            assert isinstance(aaaa, dict) and (aaaa["rcode"], aaaa["answers"]) == (0, [])
            ptr = ask(netns, "10.89.0.1", "3.0.89.10.in-addr.arpa", PTR)
            assert isinstance(ptr, dict) and ptr["answers"] == [("PTR", "beta")]
            free = ask(netns, "10.89.0.1", "77.0.89.10.in-addr.arpa", PTR)
            assert isinstance(free, dict) and (free["rcode"], free["answers"]) == (3, [])
            # Over TCP too, as a resolver asks after a truncated answer.
            tcp = ask_tcp(netns, "10.89.0.1", "db", A)
            assert (tcp["rcode"], tcp["answers"]) == (0, [("A", "10.89.0.2")])
            # Names are case-insensitive (RFC 1035 2.3.3).
            upper = ask(netns, "10.89.0.1", "DB", A)
            assert isinstance(upper, dict) and upper["answers"] == [("A", "10.89.0.2")]
            # glibc's resolver (Python's getaddrinfo) in beta's namespace, with a resolv.conf naming
            # the responder: an A and an AAAA query at once; the empty AAAA leaves the IPv4 address.
            conf = Path(net.runroot) / "test-resolv.conf"
            conf.write_text("nameserver 10.89.0.1\n")
            script = ("import socket; print(sorted({a[4][0] for a in socket.getaddrinfo('db', 80, "
                      "type=socket.SOCK_STREAM)}))")
            bind = f'mount --bind {conf} /etc/resolv.conf && exec "$@"'
            py = net.host("nsenter", f"--net={netns}", "unshare", "-m", "--propagation", "private", "sh", "-c",
                          bind, "sh", sys.executable, "-c", script, check=False)
            conf.unlink()
            assert py.stdout == "['10.89.0.2']\n", py.stderr
        finally:
            net.stop("beta", beta)
        assert "alpha" not in upstream.read_text()  # answered, never forwarded
    finally:
        net.stop("alpha", alpha)
    # The last container went: the responder with it.
    assert responder_state(net, "front") is None
    assert procfs.start_time(state["pid"]) is None
    assert net.host("ss", "-Hulnp", "sport", "= :53").stdout == ""
    ok(net.run("network", "rm", "front"))


def test_the_responder_answers_only_queries_that_come_by_the_bridge(net: NetLab) -> None:
    ok(net.run("network", "create", "front"))
    ok(net.run("network", "create", "back"))
    alpha = net.start("alpha", "--network", "front")
    other = net.start("other", "--network", "back")
    try:
        inside = ask(netns_of(net, "alpha"), "10.89.0.1", "alpha", A)
        assert isinstance(inside, dict) and inside["answers"] == [("A", "10.89.0.2")]
        # The same address from the world (by uplink), and from a container of another network
        # (by mini2): the kernel hands the socket nothing that did not come in by mini1
        # (SO_BINDTODEVICE), and says so with ICMP port unreachable.
        assert ask(net.ns("outside"), "10.89.0.1", "alpha", A, timeout=2) == "refused"
        assert ask(netns_of(net, "other"), "10.89.0.1", "alpha", A, timeout=2) == "refused"
        # TCP alike: the listener is bound to mini1, so a connection by another link is reset.
        assert ask_tcp(netns_of(net, "alpha"), "10.89.0.1", "alpha", A)["answers"] == [("A", "10.89.0.2")]
        for netns in (net.ns("outside"), netns_of(net, "other")):
            with pytest.raises(ConnectionRefusedError):
                ask_tcp(netns, "10.89.0.1", "alpha", A)
        # The host's own processes do reach it: a packet the host sends to its own address
        # counts as arriving by that address's link (resolver.py says why).
        host = ask(net.ns("host"), "10.89.0.1", "alpha", A, timeout=2)
        assert isinstance(host, dict) and host["answers"] == [("A", "10.89.0.2")]
    finally:
        net.stop("alpha", alpha)
        net.stop("other", other)
    ok(net.run("network", "rm", "front"))
    ok(net.run("network", "rm", "back"))


def test_other_names_are_forwarded_and_another_networks_names_are_not_answered(
        net: NetLab, upstream: Path, tmp_path: Path) -> None:
    ok(net.run("network", "create", "front"))
    ok(net.run("network", "create", "back"))
    alpha = net.start("alpha", "--network", "front")
    try:
        # --dns on a user network: the responder forwards this container's other queries there.
        out = ok(net.run("run", "--rm", "--network", "back", "--dns", OUTSIDE_IP, "busybox", "sh", "-c",
                         "cat /etc/resolv.conf; nslookup upstream.test; nslookup alpha; echo alpha=$?"))
        assert out.startswith("nameserver 10.89.1.1\n")  # back's responder, not the --dns server
        assert "Name:\tupstream.test\nAddress: 192.0.2.7\n" in out
        assert "alpha=1" in out and "10.89.0.2" not in out  # front's name: not back's to answer
        asked = upstream.read_text().splitlines()
        assert "upstream.test 1" in asked and "alpha 1" in asked  # back's responder forwarded both
        # A query over TCP is forwarded over TCP (a big answer is why a resolver uses it).
        client = net.start("client", "--network", "back", "--dns", OUTSIDE_IP)
        try:
            tcp = ask_tcp(netns_of(net, "client"), "10.89.1.1", "upstream.test", A)
            assert (tcp["rcode"], tcp["answers"]) == (0, [("A", "192.0.2.7")])
            assert "upstream.test 1 tcp" in upstream.read_text().splitlines()
        finally:
            net.stop("client", client)
    finally:
        net.stop("alpha", alpha)
    # Without --dns, the host's resolvers: its resolv.conf is a test file here, bind-mounted in a
    # mount namespace of the test's, where this engine starts the responder, which reads it.
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver 127.0.0.53\nnameserver {OUTSIDE_IP}\nsearch example.org\n")
    script = f'mount --bind {conf} /etc/resolv.conf && exec "$@"'
    out = ok(net.host("unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                      sys.executable, "-m", "mini_engine", "run", "--rm", "--network", "back", "busybox", "sh",
                      "-c", "cat /etc/resolv.conf; nslookup upstream.test", check=False, env=net.env))
    # The container keeps the host's search domains; its one nameserver is the responder, which
    # (in the host's namespace) tried 127.0.0.53, got no answer, and went on to the next.
    assert out.startswith("nameserver 10.89.1.1\nsearch example.org\n")
    assert "Name:\tupstream.test\nAddress: 192.0.2.7\n" in out
    ok(net.run("network", "rm", "front"))
    ok(net.run("network", "rm", "back"))


def test_a_killed_engines_responder_serves_on_and_the_next_engine_keeps_then_stops_it(net: NetLab) -> None:
    ok(net.run("network", "create", "front"))
    engine = net.start("alpha", "--network", "front")
    state = responder_state(net, "front")
    assert state is not None
    engine.kill()  # SIGKILL: the engine releases nothing; alpha runs on, an orphan
    engine.wait(timeout=10)
    out = ok(net.run("run", "--rm", "--network", "front", "busybox", "nslookup", "alpha"))
    assert "Name:\talpha\nAddress: 10.89.0.2\n" in out
    assert responder_state(net, "front") == state  # the same process, kept, not started again
    ok(net.run("rm", "-f", "alpha"))  # the network's last container: its responder goes
    assert responder_state(net, "front") is None
    assert procfs.start_time(state["pid"]) is None
    # A responder that died is started again by the next engine that needs it.
    engine = net.start("alpha", "--network", "front")
    try:
        first = responder_state(net, "front")
        assert first is not None
        os.kill(first["pid"], 9)
        assert wait_until(lambda: procfs.start_time(first["pid"]) is None)
        out = ok(net.run("run", "--rm", "--network", "front", "busybox", "nslookup", "alpha"))
        assert "Address: 10.89.0.2" in out
        second = responder_state(net, "front")
        assert second is not None and second["pid"] != first["pid"]
    finally:
        net.stop("alpha", engine)
    ok(net.run("network", "rm", "front"))


def test_the_default_network_has_no_responder_and_refuses_user_network_flags(net: NetLab) -> None:
    # --dns and --dns-search replace the host's lines; there is no responder to name.
    out = ok(net.run("run", "--rm", "--dns", "192.0.2.53", "--dns-search", "corp.test", "busybox",
                     "cat", "/etc/resolv.conf"))
    assert out == "search corp.test\nnameserver 192.0.2.53\n"
    assert list((net.runroot / "networks").glob("*.dns")) == []
    assert net.host("ss", "-Hulnp", "sport", "= :53").stdout == ""
    out = ok(net.run("run", "--rm", "--network", "none", "--dns", "192.0.2.53", "--dns-search", ".", "busybox",
                     "cat", "/etc/resolv.conf"))
    assert out == "nameserver 192.0.2.53\n"
    for flags, message in [
        (["--network-alias", "db"], "--network-alias needs a user network (mini-engine network create); "
                                    "--network bridge has no DNS to answer it"),
        (["--ip", "10.88.0.9"], "--ip needs a user network (mini-engine network create), not --network bridge"),
        (["--network", "none", "--ip", "10.88.0.9"], "--ip needs a user network (mini-engine network create), "
                                                     "not --network none"),
        (["--dns", "resolver"], "--dns resolver: not an IP address"),
        (["--add-host", "db"], "--add-host db: expected NAME:ADDRESS, e.g. db:10.0.0.5"),
        (["--add-host", "db:nowhere"], "--add-host db:nowhere: nowhere is not an IP address"),
        (["--network", "none", "--add-host", "gw:host-gateway"],
         "--add-host gw:host-gateway: host-gateway needs a bridge network"),
    ]:
        result = net.run("run", "--rm", *flags, "busybox", "true")
        assert (result.returncode, result.stdout) == (125, "")
        assert result.stderr.startswith(f"mini-engine: {message}"), result.stderr
    below = net.run("--stage", "6", "run", "--rm", "--dns", "192.0.2.53", "busybox", "true")
    assert below.returncode == 125 and "--dns" in below.stderr


def test_ip_and_add_host_on_a_user_network(net: NetLab) -> None:
    ok(net.run("network", "create", "front"))
    alpha = net.start("alpha", "--network", "front", "--ip", "10.89.0.77", "--add-host", "db:192.0.2.10",
                  "--add-host", "gw:host-gateway")
    try:
        out = ok(net.run("exec", "alpha", "sh", "-c", "ip -o -4 addr show eth0; cat /etc/hosts"))
        assert "inet 10.89.0.77/24" in out
        assert out.endswith("10.89.0.77\talpha " + out.split("10.89.0.77\talpha ")[1].split("\n")[0] +
                            "\n192.0.2.10\tdb\n10.89.0.1\tgw\n")
        # A container started later is in alpha's own hosts file too, which the engine keeps current.
        beta = net.start("beta", "--network", "front")
        try:
            assert "\tbeta " in ok(net.run("exec", "alpha", "cat", "/etc/hosts"))
            assert "192.0.2.10" not in ok(net.run("exec", "beta", "cat", "/etc/hosts"))  # alpha's own lines
        finally:
            net.stop("beta", beta)
        taken = net.run("run", "--rm", "--network", "front", "--ip", "10.89.0.77", "busybox", "true")
        assert taken.returncode == 125
        assert taken.stderr.startswith("mini-engine: --ip 10.89.0.77: the address is in use by container ")
        for ip, why in [("10.89.0.1", "the gateway of network front"),
                        ("10.89.1.5", "not a host address of network front's 10.89.0.0/24")]:
            result = net.run("run", "--rm", "--network", "front", "--ip", ip, "busybox", "true")
            assert result.returncode == 125 and f"--ip {ip}: {why}" in result.stderr
        none = ok(net.run("run", "--rm", "--network", "none", "--add-host", "db:192.0.2.10", "busybox",
                          "cat", "/etc/hosts"))
        assert none.endswith("192.0.2.10\tdb\n")
    finally:
        net.stop("alpha", alpha)
    ok(net.run("network", "rm", "front"))


@pytest.mark.stage(8)  # a detached container's monitor is stage 8's
def test_a_detached_containers_monitor_starts_the_responder_and_rm_stops_it(net: NetLab) -> None:
    """Here the monitor forks the responder, while the command line waits on a pipe for the
    monitor's report: run -d returns, and the responder goes with the last container."""
    ok(net.run("network", "create", "front"))
    ok(net.run("run", "-d", "--name", "web", "--network", "front", "busybox", "sleep", "120", timeout=30))
    state = responder_state(net, "front")
    assert state is not None
    out = ok(net.run("run", "--rm", "--network", "front", "busybox", "nslookup", "web", timeout=30))
    assert "Name:\tweb\nAddress: 10.89.0.2\n" in out
    ok(net.run("rm", "-f", "web"))
    assert responder_state(net, "front") is None and procfs.start_time(state["pid"]) is None
    ok(net.run("network", "rm", "front"))
