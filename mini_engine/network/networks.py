"""Networks: which bridge a container joins, and everything joining takes.

Chapter 07 reads this module; it puts network.py (links), ipam.py
(addresses), firewall.py (NAT), ports.py and dns.py together.

A network is a name, a bridge and a subnet. The default one, ``bridge``
(``mini0``, 10.88.0.0/16), always exists; ``mini-engine network create``
adds more (``mini1``, ``mini2``... with a /24 of 10.89.0.0/16 each, unless
``--subnet`` says otherwise). Definitions live under the engine's root
(``networks/NAME.json``); leases, the shared hosts files and the network
namespaces live under the runroot (/run: gone after a reboot, as the
containers are).

``connect`` makes, in order, each undone if a later step fails: the port
reservations, the lease, the network namespace, the bridge and veth, then
``sync`` writes the firewall and the hosts files from the leases of every
network. ``disconnect`` undoes it. A bridge, and the nft table with it,
stays when its last container goes, as docker's docker0 and podman's
podman0 do: what is the same for every container is made once, and
``network prune`` takes it down. All of it happens under one lock, so
that two engines never write the firewall from two different views of
the leases.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import signal
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from mini_engine.base import procfs
from mini_engine.base.errors import ContainerError
from mini_engine.network import dns, ipam, links, ports, resolver
from mini_engine.paths import Paths

# Network modes that are not networks: no network namespace of its own
# (``host``), or one with nothing but lo (``none``).
MODES = ("none", "host")
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
USER_SUBNETS = ipaddress.ip_network("10.89.0.0/16")  # /24s for user networks, as podman's


@dataclass(frozen=True)
class Network:
    name: str
    bridge: str
    subnet: str

    @property
    def gateway(self) -> str:
        """The bridge's own address, the first of the subnet: the containers' way out."""
        return str(next(ipaddress.ip_network(self.subnet).hosts()))


DEFAULT = Network("bridge", "mini0", "10.88.0.0/16")


@dataclass
class Connection:
    """A container on a network: what ``disconnect`` undoes."""

    network: Network
    container_id: str
    netns: str
    address: str = ""
    published: list[ports.Port] = field(default_factory=list)
    sockets: list[socket.socket] = field(default_factory=list)  # the reservations


def _config_dir(paths: Paths) -> str:
    return os.path.join(paths.root, "networks")


def _state_dir(paths: Paths) -> str:
    return os.path.join(paths.runroot, "networks")


def netns_path(paths: Paths, container_id: str) -> str:
    return os.path.join(paths.runroot, "netns", container_id)


def hosts_path(paths: Paths, network: str) -> str:
    return os.path.join(_state_dir(paths), f"{network}.hosts")


def own_hosts_path(paths: Paths, container_id: str) -> str:
    """The hosts file of a container given ``--add-host``: its network's, and its own lines."""
    return os.path.join(_state_dir(paths), "containers", f"{container_id}.hosts")


def has_responder(network: Network) -> bool:
    """User networks answer names by DNS; the default one does not (resolver.py says why)."""
    return network != DEFAULT


def _responder(paths: Paths, network: Network) -> resolver.Where:
    return resolver.Where(network.name, network.bridge, network.gateway, network.subnet,
                          _leases(paths, network).path, os.path.join(_state_dir(paths), f"{network.name}.dns"))


def definitions(paths: Paths) -> dict[str, Network]:
    """Every network, by name: the default one and those made by ``network create``."""
    found = {DEFAULT.name: DEFAULT}
    directory = _config_dir(paths)
    for entry in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if entry.endswith(".json"):
            with open(os.path.join(directory, entry)) as f:
                record = json.load(f)
            found[record["name"]] = Network(record["name"], record["bridge"], record["subnet"])
    return found


def lookup(paths: Paths, name: str) -> Network:
    found = definitions(paths)
    if name not in found:
        raise ContainerError(f'network "{name}" does not exist (see mini-engine network ls)')
    return found[name]


# [book:locked]
@contextmanager
def _locked(paths: Paths) -> Iterator[None]:
    """The networks' lock, held with SIGINT, SIGTERM and SIGHUP deferred.

    The engine stops on those signals by raising an exception from the
    handler, wherever the program is: halfway through a change of leases,
    links and table, which would then disagree. (Inside pyroute2's event
    loop, which the engine once used, the exception was swallowed with the
    netlink reply being read, and the request waited forever, holding the
    lock.) So they wait, blocked, until the lock is let go, and are
    delivered then, where an exception is safe.
    """
    directory = _state_dir(paths)
    os.makedirs(directory, mode=0o755, exist_ok=True)  # 755: the hosts files are mounted from here
    deferred = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, deferred)
    try:
        with open(os.path.join(directory, "lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
# [/book:locked]


def _leases(paths: Paths, network: Network) -> ipam.Leases:
    return ipam.Leases(_state_dir(paths), network.name, network.subnet)


def _holder_alive(paths: Paths, lease: dict[str, Any]) -> bool:
    """Is the engine that took this lease still running (the same process, not a reused pid),
    or, if it was killed, the container it wired (an orphan, on the network until rm -f)?
    The kernel knows the second without asking the runtime: a process still lives in
    the container's network namespace."""
    if procfs.same_process(lease["pid"], lease["started"]):
        return True
    return procfs.anyone_in("net", netns_path(paths, lease["container"]))


# [book:connect]
def connect(paths: Paths, container_id: str, network_name: str, publish: list[ports.Port],
            names: list[str], address: str | None = None, **details: Any) -> Connection:
    """Put a new network namespace for ``container_id`` on the network; publish its ports.

    ``address`` is ``--ip``'s; ``details`` go into the lease, for ``sync`` and the
    network's DNS responder: ``dns`` (``--dns``), ``extra_hosts`` (``--add-host``).
    """
    network = lookup(paths, network_name)
    conn = Connection(network, container_id, netns_path(paths, container_id))
    with _locked(paths), ExitStack() as undo:
        undo.callback(sync, paths)  # on failure, last: the firewall as the leases left say
        for port in publish:
            sock, bound = ports.reserve(port)
            undo.callback(sock.close)
            conn.sockets.append(sock)
            conn.published.append(bound)
        _reclaim(paths)  # addresses of engines that crashed come back first
        leases = _leases(paths, network)
        conn.address = leases.allocate(container_id, address, pid=os.getpid(),
                                       started=procfs.start_time(os.getpid()), names=names,
                                       published=[asdict(p) for p in conn.published], **details)
        undo.callback(leases.release, container_id)
        links.create_namespace(conn.netns)
        undo.callback(links.remove_namespace, conn.netns)
        if not links.exists(network.bridge):
            _refuse_overlap(paths, network)
        links.attach(conn.netns, container_id, conn.address, network.subnet, network.bridge)
        undo.callback(links.detach, container_id)
        sync(paths)
        undo.pop_all()  # it all stays, until disconnect
    return conn


def rename(paths: Paths, container_id: str, old: str | None, new: str) -> None:
    """``rename``: the container's new name in its leases, on every network it is on; ``sync``
    then writes the hosts files, and each network's DNS responder reads the leases again."""
    with _locked(paths):
        renamed = [_leases(paths, n).rename(container_id, old, new) for n in definitions(paths).values()]
        if any(renamed):
            sync(paths)


def disconnect(paths: Paths, conn: Connection) -> None:
    """Undo ``connect``: veth, namespace, lease, then the firewall and hosts files.
    The leases ``join`` took for the container on other networks go with it."""
    with _locked(paths):
        links.detach(conn.container_id)
        links.remove_namespace(conn.netns)  # the veths of join go with it
        for network in definitions(paths).values():
            _leases(paths, network).release(conn.container_id)
        sync(paths)
    for sock in conn.sockets:
        sock.close()  # the ports are free again only once no rule leads to the container
# [/book:connect]


def join(paths: Paths, container_id: str, network_name: str, names: list[str], address: str | None,
         holder: tuple[int, int | None]) -> tuple[str, str]:
    """``network connect``: one more interface for a running container, on another network.

    The container keeps its network namespace; a second veth pair joins it to
    the network's bridge, ``eth1`` inside (``eth2``...), with an address of
    that network, and its names in the network's leases, which its hosts file
    and its DNS responder answer from. The default route stays the first
    network's. The lease is held by ``holder`` (pid, start time), the engine
    or monitor that runs the container, not by this short command, so that
    ``_reclaim`` takes it back only when the container is gone. Returns the
    address and the interface's name.
    """
    network = lookup(paths, network_name)
    netns = netns_path(paths, container_id)
    if not os.path.exists(netns):
        raise ContainerError(f"container {container_id[:12]} has no network of its own (--network none, "
                             "host, or a pod's): it cannot join another network")
    with _locked(paths), ExitStack() as undo:
        undo.callback(sync, paths)
        _reclaim(paths)
        leases = _leases(paths, network)
        if any(lease["container"] == container_id for lease in leases.holders().values()):
            raise ContainerError(f"container {container_id[:12]} is already connected to network "
                                 f'"{network.name}"')
        present = links.names_in(netns)
        inside = next(f"eth{i}" for i in range(1, 100) if f"eth{i}" not in present)
        host_name = f"m{inside[3:]}{container_id[:12]}"[:15]  # IFNAMSIZ; me... is eth0's
        granted = leases.allocate(container_id, address, pid=holder[0], started=holder[1], names=names,
                                  published=[], interface=inside, veth=host_name)
        undo.callback(leases.release, container_id)
        if not links.exists(network.bridge):
            _refuse_overlap(paths, network)
        links.attach_another(netns, granted, network.subnet, network.bridge, inside, host_name)
        undo.callback(links.detach, container_id, host_name)
        sync(paths)
        undo.pop_all()
    return granted, inside


def leave(paths: Paths, container_id: str, network_name: str) -> None:
    """``network disconnect``: the interface and the lease ``join`` (or ``connect``) made."""
    network = lookup(paths, network_name)
    with _locked(paths):
        leases = _leases(paths, network)
        mine = [lease for lease in leases.holders().values() if lease["container"] == container_id]
        if not mine:
            raise ContainerError(f"container {container_id[:12]} is not connected to network "
                                 f'"{network.name}"')
        links.detach(container_id, mine[0].get("veth"))  # its peer inside goes with it
        leases.release(container_id)
        sync(paths)


# [book:sync]
def sync(paths: Paths) -> None:
    """Make the firewall, the hosts files and the DNS responders match the leases and the
    bridges (lock held)."""
    from mini_engine.network import firewall  # subprocess and nft: not for a run without a bridge
    bridges, published, own_hosts = [], [], {}
    present = links.names()
    for network in definitions(paths).values():
        holders = _leases(paths, network).holders()
        hosts = hosts_path(paths, network.name)
        if network.bridge in present or holders:
            # A bridge keeps its rules while it exists, the loopback chain above
            # all: its route_localnet stays set (firewall.py).
            bridges.append(firewall.Bridge(network.bridge, network.subnet))
        if has_responder(network):
            resolver.keep(_responder(paths, network), wanted=bool(holders))  # first container to last
        if not holders:
            if os.path.exists(hosts):
                os.unlink(hosts)  # no container uses the network: its hosts file goes
            continue
        ordered = sorted(holders.items(), key=lambda item: ipaddress.ip_address(item[0]))
        for address, lease in ordered:
            published += [firewall.Published(p["protocol"], p["host_ip"], p["host_port"], address,
                                             p["port"], lease["container"]) for p in lease["published"]]
        text = dns.hosts([(address, lease["names"]) for address, lease in ordered])
        dns.write_in_place(hosts, text)
        for lease in holders.values():
            if lease.get("extra_hosts"):  # --add-host: the network's file and its own lines
                own = own_hosts_path(paths, lease["container"])
                own_hosts[own] = text + dns.extra_hosts(lease["extra_hosts"])
    _write_own_hosts(paths, own_hosts)
    firewall.apply(bridges, published, os.path.join(_state_dir(paths), "nft.applied"))
# [/book:sync]


def _write_own_hosts(paths: Paths, wanted: dict[str, str]) -> None:
    """The hosts files of containers given ``--add-host``: written in place, the rest removed."""
    directory = os.path.dirname(own_hosts_path(paths, "x"))
    present = {os.path.join(directory, e) for e in os.listdir(directory)} if os.path.isdir(directory) else set()
    for path in present - set(wanted):
        os.unlink(path)
    if wanted:
        os.makedirs(directory, mode=0o755, exist_ok=True)
    for path, text in wanted.items():
        dns.write_in_place(path, text)


def _reclaim(paths: Paths) -> list[str]:
    """Take back what engines that died left: leases, veths, namespaces (lock held)."""
    gone = []
    for network in definitions(paths).values():
        for lease in _leases(paths, network).reclaim(lambda lease: _holder_alive(paths, lease)).values():
            links.detach(lease["container"])
            links.remove_namespace(netns_path(paths, lease["container"]))
            gone.append(lease["container"])
    return gone


def reclaim(paths: Paths) -> list[str]:
    """``prune``'s part: the networks of containers whose engine was killed."""
    if not os.path.isdir(_state_dir(paths)):
        return []
    with _locked(paths):
        gone = _reclaim(paths)
        if gone:
            sync(paths)
    return gone


def _refuse_overlap(paths: Paths, network: Network, others: bool = False) -> None:
    """A subnet must be nobody else's: not one the host routes, not another network's."""
    subnet = ipaddress.ip_network(network.subnet)
    ours = {n.bridge for n in definitions(paths).values()}
    for route, link in links.routes():
        if link not in ours and route.overlaps(subnet):
            raise ContainerError(f"network {network.name}: subnet {subnet} overlaps the host's "
                                 f"{route} on {link}")
    if others:
        for other in definitions(paths).values():
            if other.name != network.name and ipaddress.ip_network(other.subnet).overlaps(subnet):
                raise ContainerError(f"network {network.name}: subnet {subnet} overlaps network "
                                     f"{other.name}'s {other.subnet}")


# [book:network-create]
def create(paths: Paths, name: str, subnet: str | None) -> Network:
    """``network create``: a name, a bridge of its own, and a subnet nobody else uses."""
    if name in MODES or name == DEFAULT.name:
        raise ContainerError(f'network "{name}" already exists' if name == DEFAULT.name
                             else f'"{name}" is a network mode, not a name a network can have')
    if not NAME.match(name):
        raise ContainerError(f'network name "{name}": use letters, digits, "_", "." and "-" '
                             "(first a letter or digit), at most 64")
    with _locked(paths):
        existing = definitions(paths)
        if name in existing:
            raise ContainerError(f'network "{name}" already exists')
        used = {n.bridge for n in existing.values()}
        bridge = next(f"mini{i}" for i in range(1, 1000) if f"mini{i}" not in used)
        if subnet is not None:
            network = Network(name, bridge, str(parse_subnet(subnet)))
            _leases(paths, network)  # refuses one too small
            _refuse_overlap(paths, network, others=True)
        else:
            network = _free_subnet(paths, name, bridge, existing)
        os.makedirs(_config_dir(paths), mode=0o755, exist_ok=True)
        with open(os.path.join(_config_dir(paths), f"{name}.json"), "w") as f:
            json.dump(asdict(network), f, indent=2)
    return network
# [/book:network-create]


def check_address(network: Network, text: str) -> None:
    """``--ip``: an address of the network's subnet that a container may have."""
    subnet = ipaddress.ip_network(network.subnet)
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise ContainerError(f"--ip {text}: not an IPv4 address") from None
    if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
        raise ContainerError(f"--ip {text}: not a host address of network {network.name}'s {subnet}")
    if str(address) == network.gateway:
        raise ContainerError(f"--ip {text}: the gateway of network {network.name}, the bridge's own")


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    """``--subnet``: an IPv4 network in CIDR notation, ADDRESS/PREFIX, the
    address the network's first (no host bits set), as docker takes it."""
    address, slash, prefix = text.partition("/")
    example = "e.g. 10.90.0.0/24"
    try:
        first = ipaddress.IPv4Address(address)
    except ValueError:
        what = "only IPv4 subnets are supported" if ":" in address else \
            f"{address} is not an IPv4 address (expected ADDRESS/PREFIX)"
        raise ContainerError(f"--subnet {text}: {what}, {example}") from None
    if not slash or not prefix.isdigit() or int(prefix) > 32:
        raise ContainerError(f"--subnet {text}: expected a prefix length from /0 to /32, {example}")
    net = ipaddress.IPv4Network(f"{first}/{int(prefix)}", strict=False)
    if net.network_address != first:
        raise ContainerError(f"--subnet {text}: {first} is not the first address of its /{prefix}; "
                             f"did you mean {net}?")
    return net


def _free_subnet(paths: Paths, name: str, bridge: str, existing: dict[str, Network]) -> Network:
    for candidate in USER_SUBNETS.subnets(new_prefix=24):
        network = Network(name, bridge, str(candidate))
        if any(ipaddress.ip_network(n.subnet).overlaps(candidate) for n in existing.values()):
            continue
        try:
            _refuse_overlap(paths, network)
        except ContainerError:
            continue
        return network
    raise ContainerError(f"no free /24 left in {USER_SUBNETS}; give one with --subnet")


def remove(paths: Paths, name: str) -> None:
    """``network rm``: refused while a container uses it; its bridge goes with it."""
    if name == DEFAULT.name:
        raise ContainerError('the default network "bridge" cannot be removed')
    network = lookup(paths, name)
    with _locked(paths):
        _reclaim(paths)
        users = sorted(lease["container"][:12] for lease in _leases(paths, network).holders().values())
        if users:
            raise ContainerError(f'network "{name}" is in use by container {", ".join(users)}')
        os.unlink(os.path.join(_config_dir(paths), f"{name}.json"))
        _take_down(paths, network)
        sync(paths)


def _take_down(paths: Paths, network: Network) -> None:
    """Remove an unused network's bridge and files (lock held; ``sync`` then drops its rules)."""
    if has_responder(network):
        resolver.keep(_responder(paths, network), wanted=False)  # one an engine killed left
    links.remove_bridge(network.bridge)
    directory = _state_dir(paths)
    state_files = [os.path.join(directory, f"{network.name}.{kind}") for kind in ("leases.json", "lock")]
    for leftover in (hosts_path(paths, network.name), *state_files):
        if os.path.exists(leftover):
            os.unlink(leftover)


def prune(paths: Paths) -> list[str]:
    """``network prune``: remove the networks no container uses, as docker does, and take
    down the default network's bridge, and with the last bridge our nft table."""
    if not os.path.isdir(_state_dir(paths)):
        return []
    removed = []
    with _locked(paths):
        _reclaim(paths)
        present = links.names()
        for network in definitions(paths).values():
            if _leases(paths, network).holders():
                continue
            if network != DEFAULT:
                os.unlink(os.path.join(_config_dir(paths), f"{network.name}.json"))
                removed.append(network.name)
            elif network.bridge in present:
                removed.append(f"{network.name} (bridge {network.bridge} taken down)")
            _take_down(paths, network)
        sync(paths)
    return removed


def containers_on(paths: Paths, network: Network) -> dict[str, dict[str, Any]]:
    """Address -> lease of each container on ``network``."""
    if not os.path.isdir(_state_dir(paths)):
        return {}
    with _locked(paths):
        return _leases(paths, network).holders()


# [book:name-files]
def name_mounts(paths: Paths, mode: str, container_id: str = "", own_hosts: bool = False
                ) -> list[dict[str, Any]]:
    """config.json mounts for /etc/hostname, /etc/resolv.conf and /etc/hosts.

    The first two, and /etc/hosts without a bridge, are the container's own
    files in its bundle (relative sources are the bundle's). On a bridge,
    /etc/hosts is the network's shared file, read-only: one container must
    not rewrite the names the others see (with ``--add-host``, ``own_hosts``,
    a copy of it with the container's own lines, kept up to date by ``sync``).
    """
    mounts = [{"destination": f"/etc/{name}", "type": "bind", "source": name, "options": ["bind"]}
              for name in ("hostname", "resolv.conf")]
    if mode in MODES:
        mounts.append({"destination": "/etc/hosts", "type": "bind", "source": "hosts", "options": ["bind"]})
    else:
        source = own_hosts_path(paths, container_id) if own_hosts else hosts_path(paths, mode)
        mounts.append({"destination": "/etc/hosts", "type": "bind", "source": source,
                       "options": ["bind", "ro"]})
    return mounts


def write_name_files(bundle: str, mode: str, hostname: str, nameservers: list[str] | None = None,
                     search: list[str] | None = None, extra_hosts: list[list[str]] | None = None) -> None:
    """The container's own files that ``name_mounts`` mounts from its bundle.

    ``nameservers`` and ``search`` replace the host's (``--dns``, ``--dns-search``,
    or on a user network its DNS responder); ``extra_hosts`` are ``--add-host``'s.
    """
    dns.write_new(os.path.join(bundle, "hostname"), hostname + "\n")
    host_conf = dns.resolv_conf(dns.read_host_resolv_conf(), keep_loopback=mode == "host")
    dns.write_new(os.path.join(bundle, "resolv.conf"), dns.with_servers(host_conf, nameservers, search))
    extra = dns.extra_hosts(extra_hosts or [])
    if mode == "host":
        with open("/etc/hosts") as f:
            dns.write_new(os.path.join(bundle, "hosts"), f.read() + extra)
    elif mode == "none":
        dns.write_new(os.path.join(bundle, "hosts"), dns.hosts([("127.0.1.1", [hostname])]) + extra)
# [/book:name-files]
