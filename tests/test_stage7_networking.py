"""Stage 7: `run --network`, published ports, names, NAT, IPAM, teardown.

The engine runs in a "host" network namespace the test makes, linked to an
"outside" one (tests/fixtures/netlab.py); the machine's own network is
never touched. Every test ends by checking that the host namespace holds
nothing of the engine's: no link, nft table, lease, namespace or hosts file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from conftest import Engine, ok
from fixtures.netlab import HOST_IP, OUTSIDE_IP, UPLINK_MTU, NetLab

from mini_engine.labkit import wait_until

pytestmark = [pytest.mark.stage(7), pytest.mark.root]


def test_bridge_gives_eth0_an_address_a_route_and_the_uplinks_mtu(net: NetLab) -> None:
    out = ok(net.run("run", "--rm", "busybox", "sh", "-c",
                     "ip -o -4 addr show eth0; ip route; cat /sys/class/net/eth0/mtu; ip -o link | wc -l"))
    lines = out.splitlines()
    assert "inet 10.88.0.2/16" in lines[0]
    assert "default via 10.88.0.1 dev eth0" in lines[1]
    assert lines[-2] == str(UPLINK_MTU)  # the MTU of the host's way out, not Ethernet's 1500
    assert lines[-1].strip() == "2"  # lo and eth0


def test_network_none_has_only_lo_and_host_shares_the_hosts(net: NetLab) -> None:
    links = ok(net.run("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link"))
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
    shared = ok(net.run("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link"))
    assert "uplink" in shared  # the host namespace's own link
    config = json.loads(ok(net.run("spec", "--network", "host", "busybox")))
    assert "network" not in [ns["type"] for ns in config["linux"]["namespaces"]]
    # Neither made anything in the host's namespace.
    assert net.links() == ["lo", "uplink"]


def test_name_files_hostname_hosts_and_filtered_resolv_conf(net: NetLab, tmp_path: object) -> None:
    """/etc/resolv.conf is the host's minus loopback resolvers; the host's is a test file here,
    bind-mounted over /etc/resolv.conf in a mount namespace of the test's."""
    conf = os.path.join(str(tmp_path), "resolv.conf")
    with open(conf, "w") as f:
        f.write("nameserver 127.0.0.53\nnameserver 10.1.2.3\nsearch example.org\noptions edns0\n")

    def run_with_host_conf(*args: str) -> str:
        script = f'mount --bind {conf} /etc/resolv.conf && exec "$@"'
        return ok(net.host("unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                           sys.executable, "-m", "mini_engine", *args, check=False, env=net.env))

    bridge = run_with_host_conf("run", "--rm", "--hostname", "box", "busybox", "sh", "-c",
                                "cat /etc/resolv.conf; echo ---; cat /etc/hostname; hostname; cat /etc/hosts")
    resolv, rest = bridge.split("---\n")
    assert resolv == "nameserver 10.1.2.3\nsearch example.org\noptions edns0\n"
    hostname, hostname2, *hosts = rest.splitlines()
    assert hostname == hostname2 == "box"
    assert hosts[0] == "127.0.0.1\tlocalhost"
    assert hosts[-1].split("\t")[0] == "10.88.0.2" and "box" in hosts[-1].split("\t")[1].split()
    # The host's network: its loopback resolver works there, so it stays.
    host = run_with_host_conf("run", "--rm", "--network", "host", "busybox", "cat", "/etc/resolv.conf")
    assert host.startswith("nameserver 127.0.0.53\nnameserver 10.1.2.3\n")
    # Nothing but loopback resolvers: docker's fallback.
    with open(conf, "w") as f:
        f.write("nameserver 127.0.0.1\n")
    only = run_with_host_conf("run", "--rm", "busybox", "cat", "/etc/resolv.conf")
    assert only == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"


def test_containers_on_one_network_reach_each_other_by_name_and_no_other_network_can(net: NetLab) -> None:
    ok(net.run("network", "create", "front"))
    ok(net.run("network", "create", "back"))
    started = []
    try:
        for name in ("alpha", "beta"):
            started.append(net.popen("run", "--rm", "--name", name, "--network", "front", "busybox",
                                     "sleep", "60"))
            assert wait_until(lambda n=name: net.run("exec", n, "true").returncode == 0), \
                f"{name} did not start"
        # Both ways: alpha started first, and still finds beta (the shared hosts file changed in place).
        ok(net.run("exec", "alpha", "ping", "-c", "1", "-W", "3", "beta"))
        ok(net.run("exec", "beta", "ping", "-c", "1", "-W", "3", "alpha"))
        beta_ip = json.loads(ok(net.run("network", "inspect", "front")))["containers"]
        addresses = {lease["names"][0]: address for address, lease in beta_ip.items()}
        assert sorted(addresses) == ["alpha", "beta"]
        assert all(a.startswith("10.89.0.") for a in addresses.values())
        third = net.run("run", "--rm", "--network", "back", "busybox", "sh", "-c",
                        f"ping -c 1 -W 2 alpha; echo name=$?; ping -c 1 -W 2 {addresses['alpha']}; echo ip=$?")
        assert "ping: bad address 'alpha'" in third.stderr
        assert "name=1" in third.stdout and "ip=1" in third.stdout  # nothing forwarded between bridges
        # A network in use is not removed.
        refused = net.run("network", "rm", "front")
        assert refused.returncode == 1
        assert 'network "front" is in use by container' in refused.stderr
    finally:
        for name, p in zip(("alpha", "beta"), started, strict=False):
            net.stop(name, p)
    ok(net.run("network", "rm", "front", "back"))
    assert "front" not in ok(net.run("network", "ls"))


# A real HTTP client (busybox's static wget crashes on this machine).
FETCH = ("import sys, urllib.request; "
         "print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode(), end='')")
SERVE = "mkdir -p /www && echo hello from web > /www/index.html && exec httpd -f -p 80 -h /www"


def test_published_port_from_the_host_from_loopback_and_from_outside(net: NetLab) -> None:
    server = net.popen("run", "--rm", "--name", "web", "-p", "8080:80", "-p", "127.0.0.1:8081:80",
                       "busybox", "sh", "-c", SERVE)
    try:
        def fetch(where: str, url: str) -> str:
            result = getattr(net, where)(sys.executable, "-c", FETCH, url, check=False)
            return result.stdout
        assert wait_until(lambda: fetch("host", f"http://{HOST_IP}:8080/")) == "hello from web\n"
        assert fetch("host", "http://127.0.0.1:8080/") == "hello from web\n"  # route_localnet + masquerade
        assert fetch("outside", f"http://{HOST_IP}:8080/") == "hello from web\n"
        # Published on 127.0.0.1 only: not from outside.
        assert fetch("host", "http://127.0.0.1:8081/") == "hello from web\n"
        assert fetch("outside", f"http://{HOST_IP}:8081/") == ""
        ps = json.loads(ok(net.run("ps", "--format", "json")))
        mine = next(r for r in ps if r.get("Name") == "web")
        assert mine["NetworkSettings"]["Ports"] == ["0.0.0.0:8080->80/tcp", "127.0.0.1:8081->80/tcp"]
        rules = net.host("nft", "list", "table", "inet", "mini_engine").stdout
        assert f"dnat ip to {mine['NetworkSettings']['IPAddress']}:80" in rules
    finally:
        net.stop("web", server)


# The host's loopback-only services: what -p 127.0.0.1:... must not open to containers.
# The UDP sockets print each datagram's destination; "control" (the gateway's
# port 5001) is what a container may reach: once its datagram is in, one sent
# before it to 127.0.0.1 would be in too.
LOOPBACK_SERVICES = """
import select, socket
tcp = socket.socket()
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("127.0.0.1", 5000))
tcp.listen()
secret = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
secret.bind(("127.0.0.1", 5000))
control = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
control.bind(("0.0.0.0", 5001))
print("ready", flush=True)
while True:
    for s in select.select([secret, control], [], [])[0]:
        data, _ = s.recvfrom(100)
        print("control" if s is control else "127.0.0.1:5000 " + data.hex(), flush=True)
"""


def test_the_hosts_loopback_is_out_of_a_containers_reach(net: NetLab) -> None:
    """CVE-2020-8558's class: route_localnet on the bridge (for -p 127.0.0.1:...) lets the
    host accept packets for 127.0.0.1 that come in from a container; our input chain drops
    them unless they answer a DNATed connection. Tried routed and raw, from a default
    container (CAP_NET_RAW) and one with CAP_NET_ADMIN; and a port published on 127.0.0.1
    only is the host's alone, not the containers'."""
    import base64
    import queue
    import threading

    from fixtures.rawpacket import sender, udp_packet

    services = subprocess.Popen(["nsenter", f"--net={net.ns('host')}", sys.executable, "-c",
                                 LOOPBACK_SERVICES], stdout=subprocess.PIPE, text=True)
    spy = net.popen("run", "--rm", "--name", "spy", "-p", "127.0.0.1:8081:80", "busybox", "sh", "-c", SERVE)
    try:
        assert services.stdout is not None and services.stdout.readline() == "ready\n"
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line.strip()) for line in services.stdout],
                         daemon=True).start()

        def reached() -> list[str]:
            """What reached the host's 127.0.0.1 until the control datagram came."""
            got = []
            while (line := lines.get(timeout=10)) != "control":
                got.append(line)
            return got

        assert wait_until(lambda: net.run("exec", "spy", "true").returncode == 0)
        # Routed: traceroute binds its socket to eth0 (SO_BINDTODEVICE, CAP_NET_RAW), so
        # the lookup skips lo's routes and 127.0.0.1 goes out by the default route.
        # Its first probe goes to port -p + 1.
        ok(net.run("exec", "spy", "sh", "-c", "traceroute -n -i eth0 -p 4999 -q 1 -m 1 -w 1 127.0.0.1; "
                   "traceroute -n -i eth0 -p 5000 -q 1 -m 1 -w 1 10.88.0.1"))
        assert reached() == []
        # Raw: a packet socket sends whatever IPv4 packet it is given, to the gateway's MAC.
        address = ok(net.run("exec", "spy", "ip", "-o", "-4", "addr", "show", "eth0")).split()[3].split("/")[0]
        ifindex = int(ok(net.run("exec", "spy", "cat", "/sys/class/net/eth0/ifindex")))
        mac = json.loads(net.host("ip", "-j", "link", "show", "mini0").stdout)[0]["address"]
        program = sender(ifindex, mac, [udp_packet(address, "127.0.0.1", 40000, 5000, b"raw"),
                                        udp_packet(address, "10.88.0.1", 40000, 5001, b"control")])
        ok(net.run("exec", "-i", "spy", "sh", "-c", "base64 -d > /tmp/send && chmod +x /tmp/send && /tmp/send",
                   input=base64.b64encode(program).decode()))
        assert reached() == []
        # Routed, TCP: with CAP_NET_ADMIN a container may take 127.0.0.0/8 from lo and send it
        # to the gateway. Neither the host's socket nor spy's published-on-127.0.0.1 port may
        # even see the SYN (a socket in SYN-RECV).
        net.run("run", "--rm", "--cap-add", "NET_ADMIN", "busybox", "sh", "-c",
                "ip route del local 127.0.0.1 table local && ip route del local 127.0.0.0/8 table local && "
                "ip route add 127.0.0.1 via 10.88.0.1 dev eth0 && "
                "nc -w 1 127.0.0.1 5000 </dev/null; nc -w 1 127.0.0.1 8081 </dev/null")
        assert net.host("ss", "-Htn", "state", "syn-recv", "( sport = :5000 )").stdout == ""
        spy_id = next(r["Id"] for r in json.loads(ok(net.run("ps", "--format", "json"))) if r["Name"] == "spy")
        spy_netns = net.runroot / "netns" / spy_id
        assert net.host("nsenter", f"--net={spy_netns}", "ss", "-Htn", "state", "syn-recv").stdout == ""
        # The host itself still reaches it (route_localnet, as before).
        assert wait_until(lambda: net.host(sys.executable, "-c", FETCH, "http://127.0.0.1:8081/",
                                           check=False).stdout) == "hello from web\n"
    finally:
        services.kill()
        services.wait()
        net.stop("spy", spy)


OUTSIDE_SERVER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((OUTSIDE_IP, 9000))
s.listen()
print("ready", flush=True)
c, peer = s.accept()
print(peer[0], c.recv(100).decode(), flush=True)
"""


def test_outbound_nat_the_outside_sees_the_hosts_address(net: NetLab) -> None:
    server = subprocess.Popen(["nsenter", f"--net={net.ns('outside')}", sys.executable, "-c",
                               f"OUTSIDE_IP = {OUTSIDE_IP!r}\n{OUTSIDE_SERVER}"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline() == "ready\n"
        ok(net.run("run", "--rm", "busybox", "sh", "-c", f"echo hi | nc -w 3 {OUTSIDE_IP} 9000"))
        assert server.stdout.readline() == f"{HOST_IP} hi\n"  # masqueraded: not 10.88.0.2
    finally:
        server.kill()
        server.wait()


def test_twenty_containers_at_once_get_twenty_addresses_and_leave_nothing(net: NetLab) -> None:
    procs = [net.popen("run", "--rm", "busybox", "sh", "-c", "ip -o -4 addr show eth0; sleep 2",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(20)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs if err]
    addresses = [out.split()[3] for out, _ in outs]
    assert len(set(addresses)) == 20
    assert all(a.startswith("10.88.0.") and a.endswith("/16") for a in addresses)
    # The fixture then checks: no veth, bridge, lease, nft table or namespace is left.


def test_a_killed_engines_network_is_reclaimed_by_prune(net: NetLab) -> None:
    engine = net.popen("run", "--rm", "--name", "orphan", "-p", "8082:80", "busybox", "sleep", "60")
    assert wait_until(lambda: net.run("exec", "orphan", "true").returncode == 0)
    engine.kill()  # nsenter has become the engine: same pid
    engine.wait(timeout=10)
    assert net.leftovers()["leases"]  # still there: nobody released it
    ok(net.run("prune"))
    left = net.leftovers()
    assert (left["links"], left["leases"], left["netns"]) == (["mini0"], {}, [])  # the bridge stays


@pytest.mark.parametrize("spec,message", [
    ("80:", "-p 80:: expected [HOSTIP:][HOSTPORT:]PORT[/tcp|udp], e.g. 8080:80"),
    ("http", "-p http: expected [HOSTIP:][HOSTPORT:]PORT[/tcp|udp], e.g. 8080:80"),
    ("70000:80", "-p 70000:80: port 70000 is not between 1 and 65535"),
    ("8080:80/sctp", "-p 8080:80/sctp: protocol sctp is not tcp or udp"),
    ("8000-8001:80-81", "-p 8000-8001:80-81: port ranges are not supported; give one -p per port"),
    ("1.2.3:80:80", "-p 1.2.3:80:80: 1.2.3 is not an IPv4 address"),
])
def test_bad_publish_specs(net: NetLab, spec: str, message: str) -> None:
    result = net.run("run", "--rm", "-p", spec, "busybox", "true")
    assert (result.returncode, result.stderr) == (125, f"mini-engine: {message}\n")


def test_a_port_in_use_an_unknown_network_and_overlapping_subnets_are_refused(net: NetLab,
                                                                              engine: Engine) -> None:
    before = engine.containers()
    holder = subprocess.Popen(["nsenter", f"--net={net.ns('host')}", sys.executable, "-c",
                               "import socket, sys; s = socket.socket(); s.bind(('0.0.0.0', 8080)); s.listen();"
                               "print('ready', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "ready\n"
        taken = net.run("run", "--rm", "-p", "8080:80", "busybox", "true")
        assert (taken.returncode, taken.stderr) == (125,
                                                    "mini-engine: port 8080/tcp on 0.0.0.0 is already in use\n")
    finally:
        holder.kill()
        holder.wait()
    unknown = net.run("run", "--rm", "--network", "nope", "busybox", "true")
    assert unknown.stderr == 'mini-engine: network "nope" does not exist (see mini-engine network ls)\n'
    overlap = net.run("network", "create", "--subnet", "10.99.0.128/25", "wide")
    assert overlap.stderr == ("mini-engine: network wide: subnet 10.99.0.128/25 overlaps the host's "
                              "10.99.0.0/24 on uplink\n")
    ok(net.run("network", "create", "--subnet", "10.77.0.0/24", "first"))
    try:
        second = net.run("network", "create", "--subnet", "10.77.0.0/16", "second")
        assert second.stderr == ("mini-engine: network second: subnet 10.77.0.0/16 overlaps network "
                                 "first's 10.77.0.0/24\n")
        again = net.run("network", "create", "first")
        assert again.stderr == 'mini-engine: network "first" already exists\n'
    finally:
        ok(net.run("network", "rm", "first"))
    assert engine.containers() == before
    no_net = net.run("run", "--rm", "--network", "none", "-p", "80", "busybox", "true")
    assert no_net.stderr == ("mini-engine: --publish needs a bridge network; with --network none there is "
                             "nothing to publish to\n")


def test_name_must_be_unique_and_stage_6_refuses_the_flags(net: NetLab) -> None:
    sleeper = net.popen("run", "--rm", "--name", "solo", "--network", "none", "busybox", "sleep", "60")
    try:
        assert wait_until(lambda: net.run("exec", "solo", "true").returncode == 0)
        again = net.run("run", "--rm", "--name", "solo", "busybox", "true")
        assert again.returncode == 125
        assert again.stderr.startswith('mini-engine: the name "solo" is in use by container ')
    finally:
        net.stop("solo", sleeper)
    old = net.run("--stage", "6", "run", "--rm", "-p", "8080:80", "busybox", "true")
    assert old.stderr == "mini-engine: --publish needs stage 7 or above (this is stage 6, security)\n"


def test_publish_all_maps_each_exposed_port_to_a_free_one(net: NetLab, test_images: Any, tmp_path: Any) -> None:
    """-P: the image EXPOSEs 80/tcp (umoci writes it); the kernel picks the host's port."""
    from fixtures.images import skopeo, umoci

    umoci("config", "--image", f"{test_images.layout}:single", "--tag", "exposed",
          "--config.exposedports", "80/tcp")
    archive = tmp_path / "exposed.tar"
    skopeo("copy", f"oci:{test_images.layout}:exposed", f"oci-archive:{archive}:example.test/exposed:1")
    ok(net.run("load", "-q", "-i", str(archive)))
    server = net.popen("run", "--rm", "--name", "exposed", "-P", "-u", "0", "--entrypoint", "sh",
                       "example.test/exposed:1", "-c", SERVE)
    try:
        def published() -> list[str]:
            records = json.loads(net.run("ps", "--format", "json").stdout or "[]")
            return [p for r in records if r.get("Name") == "exposed"
                    for p in r.get("NetworkSettings", {}).get("Ports", [])]
        ports = wait_until(published)
        assert len(ports) == 1 and ports[0].startswith("0.0.0.0:") and ports[0].endswith("->80/tcp")
        host_port = int(ports[0].split(":")[1].split("-")[0])
        assert host_port >= 1024  # from the kernel's ephemeral range, not 80
        assert wait_until(lambda: net.host(sys.executable, "-c", FETCH, f"http://{HOST_IP}:{host_port}/",
                                         check=False).stdout) == "hello from web\n"
    finally:
        net.stop("exposed", server)
        ok(net.run("rmi", "example.test/exposed:1"))


def test_no_run_pays_for_networking_it_does_not_use() -> None:
    """run imports no nft code, and nothing imports pyroute2 (whose import alone, with its
    asyncio loop, cost more than a whole networked run)."""
    code = ("import sys; from mini_engine import cli; from mini_engine.containers import run; "
            "from mini_engine.network import networks; "
            "print([m for m in ('pyroute2', 'asyncio', 'mini_engine.network.firewall') "
            "if m in sys.modules])")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout == "[]\n"


GENERATION = "from mini_engine.network.firewall import ruleset_generation; print(ruleset_generation())"


def test_the_bridge_and_table_stay_untouched_between_containers_and_prune_removes_them(net: NetLab) -> None:
    """As docker0 and podman0: made once. A container without -p needs no nft transaction (the
    ruleset's generation, the kernel's count of changes, stays); a table someone deleted comes back."""
    ok(net.run("run", "--rm", "busybox", "true"))
    assert net.links() == ["lo", "mini0", "uplink"]
    rules = net.host("nft", "list", "table", "inet", "mini_engine").stdout
    assert 'iifname != "lo" ip daddr 127.0.0.0/8 drop' in rules and "dnat ip to" not in rules
    generation = net.host(sys.executable, "-c", GENERATION).stdout
    ok(net.run("run", "--rm", "busybox", "true"))
    assert net.host(sys.executable, "-c", GENERATION).stdout == generation
    net.host("nft", "delete", "table", "inet", "mini_engine")
    ok(net.run("run", "--rm", "busybox", "true"))
    assert net.host("nft", "list", "table", "inet", "mini_engine").stdout == rules
    assert ok(net.run("network", "prune")) == "bridge (bridge mini0 taken down)\n"
    assert net.links() == ["lo", "uplink"]
    assert net.host("nft", "list", "tables").stdout == ""
