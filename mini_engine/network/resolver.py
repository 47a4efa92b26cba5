"""A DNS responder per user network: the containers' names, and the rest forwarded.

Chapter 07 reads this module. Man pages: socket(7) (SO_BINDTODEVICE),
udp(7), resolv.conf(5), setsid(2), pidfd_open(2); RFC 1035. The message
format is ``dnswire.py``.

On a network made with ``network create``, a container's resolv.conf names
one nameserver, the bridge's own address (``10.89.0.1``), and a small
process of the engine's answers there: A records for the names and aliases
of the network's containers, PTR records for their addresses, an empty
answer to AAAA (they have no IPv6 address: "no data", as docker answers),
and everything else forwarded to the host's resolvers, or to the ones the
asking container was given with ``--dns``. The names come from the
network's leases file (``ipam.py``), read again whenever it changed, so a
container started a moment ago is found at once.

Where it listens. Docker's embedded resolver listens on 127.0.0.11 inside
each container's network namespace (the daemon holds a socket made in
there, and NAT rules in that namespace lead port 53 to it); podman's
aardvark-dns listens on the bridge's address in the host's namespace. This
engine does as aardvark does, one process and one socket per network
instead of one socket per container, and an address a reader can find
with ``ip addr show mini1``. An address of the host is reachable from every
interface of the host, though, not from the bridge alone: so the socket is
bound to the bridge with SO_BINDTODEVICE, and the kernel hands it only the
packets that came in by the bridge. A query from the host's uplink, or
from a container on another bridge, finds no socket and gets an ICMP
"port unreachable". That needs no firewall rule to write, keep and
remove: the restriction is the socket's own, and goes with it. (The
host's own processes do get answers: a packet the host sends to its own
address counts as arriving by the link that holds the address. They
could read the leases anyway.)

The default network has none, as docker's default bridge has none (and
podman's default network, whose ``dns_enabled`` is false): its containers
keep the host's resolvers and find each other through the network's
shared hosts file (``dns.py``). So the plain ``run --rm busybox`` pays for
no process it does not use.

Its life. The responder starts with the network's first container and
stops with its last; ``keep`` decides, called by ``networks.sync`` under the
networks' lock with the leases in hand. It is a daemon of its own, as a
detached container's monitor is (``containers/monitor.py``): forked twice
and in a session of its own, so that it belongs to no engine. An engine
killed with SIGKILL leaves it running for the containers still there,
and the next engine finds it by its state file (pid and start time) and
keeps it, or stops it when the network's last container goes. The
sockets (UDP, and TCP for answers too big for a datagram) are made and
bound by the engine before the container starts, and handed down as
descriptors 3 and 4 (systemd's socket activation, sd_listen_fds(3)): a
query sent before the responder's Python has started waits in the
socket's buffer, never lost, and the engine need not wait for it.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import select
import selectors
import signal
import socket
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from mini_engine.base import files, procfs
from mini_engine.base.errors import ContainerError
from mini_engine.network import dnswire

PORT = 53
LISTEN_FD = 3  # sd_listen_fds(3): the first descriptor handed down, UDP; the next, TCP
UPSTREAM_TIMEOUT = 2.0  # seconds per upstream server: below the resolvers' own 5 s (resolv.conf(5))
TTL = 60  # aardvark-dns's: a container's address lives as long as the container


# [book:names]
class Names:
    """The network's names, from its leases file, read again when it changes.

    The engine replaces that file by a rename (``files.write_json``), so a
    reader sees the old file or the new one, never half of one, and a new
    inode or mtime says it changed.
    """

    def __init__(self, leases_path: str) -> None:
        self.path = leases_path
        self.seen: tuple[int, int] | None = None
        self.by_name: dict[str, list[str]] = {}
        self.leases: dict[str, dict[str, Any]] = {}

    def refresh(self) -> None:
        try:
            st = os.stat(self.path)
            seen = (st.st_ino, st.st_mtime_ns)
            if seen == self.seen:
                return
            with open(self.path) as f:
                leases = dict(json.load(f))
        except (OSError, ValueError):
            seen, leases = None, {}  # no container holds an address (yet)
        by_name: dict[str, list[str]] = {}
        for address, lease in sorted(leases.items(), key=lambda item: ipaddress.ip_address(item[0])):
            for name in lease.get("names", []):
                by_name.setdefault(name.lower(), []).append(address)
        self.seen, self.leases, self.by_name = seen, leases, by_name

    def addresses(self, name: str) -> list[str]:
        return self.by_name.get(name, [])

    def name_of(self, address: str) -> str | None:
        lease = self.leases.get(address)
        return lease["names"][0] if lease and lease.get("names") else None

    def servers_for(self, address: str) -> list[str]:
        """The ``--dns`` servers the container at ``address`` was given (none: the host's)."""
        lease = self.leases.get(address)
        return list(lease.get("dns", [])) if lease else []
# [/book:names]


# [book:answer]
def answer(names: Names, subnet: ipaddress.IPv4Network, query: dnswire.Query) -> bytes | None:
    """Our answer to ``query``, or None: not ours, forward it."""
    opcode = (query.flags >> dnswire.OPCODE_SHIFT) & dnswire.OPCODE_MASK
    if opcode != dnswire.QUERY:
        return dnswire.response(query, dnswire.NOTIMP, authoritative=False)
    if query.qclass != dnswire.IN:
        return None
    names.refresh()
    found = names.addresses(query.name)
    if found:
        if query.qtype == dnswire.A:
            return dnswire.response(query, dnswire.NOERROR, [dnswire.a_record(a) for a in found], TTL)
        # The name is there but has no record of this type (AAAA: IPv4 only):
        # NOERROR with no answer, "no data" (RFC 2308), not NXDOMAIN, which
        # would tell the resolver that the name does not exist at all.
        return dnswire.response(query, dnswire.NOERROR)
    address = dnswire.reverse_address(query.name)
    if query.qtype == dnswire.PTR and address is not None and ipaddress.ip_address(address) in subnet:
        # The network's own addresses are ours to answer, the ones nobody holds too.
        name = names.name_of(address)
        if name is None:
            return dnswire.response(query, dnswire.NXDOMAIN)
        return dnswire.response(query, dnswire.NOERROR, [dnswire.ptr_record(name)], TTL)
    return None
# [/book:answer]


def host_nameservers(own: str, path: str = "/etc/resolv.conf") -> list[str]:
    """The host's nameservers, loopback ones too: the responder runs in the host's
    network namespace, where 127.0.0.53 is the host's own resolver. Never ourselves."""
    servers = []
    try:
        with open(path) as f:
            for line in f:
                words = line.split()
                if words[:1] == ["nameserver"] and len(words) > 1 and words[1] != own:
                    servers.append(words[1])
    except OSError:
        pass
    return servers


@dataclass
class Forwarded:
    """A query on its way to an upstream server, and where its answer goes."""

    query: bytes
    client: tuple[str, int]
    servers: list[str]                # the ones not tried yet
    sock: socket.socket | None = None
    deadline: float = 0.0


# [book:serve]
def serve(sock: socket.socket, names: Names, subnet: ipaddress.IPv4Network, own: str) -> None:
    """Answer queries on ``sock`` for ever: ours at once, the rest forwarded.

    One thread, one selector: a query waiting for a slow upstream server
    holds up nobody, because each forwarded query has a socket of its own,
    connected to its server (the kernel then passes it nothing but that
    server's replies), and a deadline after which the next server is tried.
    """
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    waiting: dict[socket.socket, Forwarded] = {}

    def send_on(job: Forwarded) -> None:
        """Send ``job`` to its next server; SERVFAIL when none is left."""
        while job.servers:
            server = job.servers.pop(0)
            family = socket.AF_INET6 if ":" in server else socket.AF_INET
            upstream = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            try:
                upstream.connect((server, PORT))
                upstream.send(job.query)
            except OSError:
                upstream.close()  # unreachable at once (no route): the next one
                continue
            job.sock, job.deadline = upstream, time.monotonic() + UPSTREAM_TIMEOUT
            waiting[upstream] = job
            selector.register(upstream, selectors.EVENT_READ, job)
            return
        reply = dnswire.error(job.query, dnswire.SERVFAIL)
        if reply is not None:
            _send(sock, reply, job.client)

    def done(job: Forwarded) -> None:
        assert job.sock is not None
        selector.unregister(job.sock)
        del waiting[job.sock]
        job.sock.close()

    while True:
        now = time.monotonic()
        deadlines = [job.deadline for job in waiting.values()]
        events = selector.select(max(0.0, min(deadlines) - now) if deadlines else None)
        for key, _ in events:
            if key.data is None:  # a query from a container
                try:
                    data, client = sock.recvfrom(4096)
                except OSError:
                    continue
                try:
                    query = dnswire.parse_query(data)
                except dnswire.WireError:
                    reply = dnswire.error(data, dnswire.FORMERR)
                    if reply is not None:
                        _send(sock, reply, client)
                    continue
                reply = answer(names, subnet, query)
                if reply is not None:
                    _send(sock, reply, client)
                    continue
                names.refresh()
                servers = names.servers_for(client[0]) or host_nameservers(own)
                send_on(Forwarded(data, client, servers))
            else:  # an upstream server's reply: relayed as it came, our id is the client's
                job = key.data
                assert job.sock is not None
                try:
                    reply = job.sock.recv(65535)
                except OSError:  # ICMP port unreachable, reported on the next read
                    done(job)
                    send_on(job)
                    continue
                if reply[:2] != job.query[:2]:
                    continue  # not the answer to this query: wait on
                done(job)
                _send(sock, reply, job.client)
        now = time.monotonic()
        for job in [job for job in waiting.values() if job.deadline <= now]:
            done(job)
            send_on(job)
# [/book:serve]


def _send(sock: socket.socket, data: bytes, client: tuple[str, int]) -> None:
    try:
        sock.sendto(data, client)
    except OSError:
        pass  # the container has gone meanwhile


# [book:tcp]
def serve_tcp(listener: socket.socket, leases: str, subnet: ipaddress.IPv4Network, own: str) -> None:
    """DNS over TCP (RFC 1035 4.2.2, RFC 7766): each message after its length in two bytes.

    A resolver asks over TCP when an answer came truncated (TC) over UDP,
    and a forwarded answer may be too big for a datagram. Rare and slow
    anyway, so a thread per connection, blocking, with names of its own.
    """
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_tcp_client, args=(conn, Names(leases), subnet, own), daemon=True).start()


def _tcp_client(conn: socket.socket, names: Names, subnet: ipaddress.IPv4Network, own: str) -> None:
    with conn:
        conn.settimeout(10)
        try:
            client = conn.getpeername()[0]
            while (data := _read_message(conn)) is not None:
                try:
                    query = dnswire.parse_query(data)
                except dnswire.WireError:
                    reply = dnswire.error(data, dnswire.FORMERR)
                else:
                    reply = answer(names, subnet, query) or _forward_tcp(data, names, client, own)
                if reply is None:
                    return
                conn.sendall(len(reply).to_bytes(2, "big") + reply)
        except OSError:
            return  # gone, or silent for ten seconds


def _forward_tcp(data: bytes, names: Names, client: str, own: str) -> bytes | None:
    """The upstream servers' answer over TCP, the first that gives one; else SERVFAIL."""
    for server in names.servers_for(client) or host_nameservers(own):
        try:
            with socket.create_connection((server, PORT), timeout=UPSTREAM_TIMEOUT) as upstream:
                upstream.sendall(len(data).to_bytes(2, "big") + data)
                reply = _read_message(upstream)
        except OSError:
            continue
        if reply is not None and reply[:2] == data[:2]:
            return reply
    return dnswire.error(data, dnswire.SERVFAIL)


def _read_message(conn: socket.socket) -> bytes | None:
    """One length-prefixed message, or None at the end of the stream."""
    head = _read_exactly(conn, 2)
    return None if head is None else _read_exactly(conn, int.from_bytes(head, "big"))


def _read_exactly(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
# [/book:tcp]


def main(argv: list[str]) -> None:
    """The responder's process: ``python -m mini_engine.network.resolver NETWORK LEASES SUBNET ADDRESS``,
    its UDP socket on descriptor 3, its TCP listener on 4."""
    _network, leases, subnet, own = argv
    network = ipaddress.IPv4Network(subnet)
    listener = socket.socket(fileno=LISTEN_FD + 1)
    threading.Thread(target=serve_tcp, args=(listener, leases, network, own), daemon=True).start()
    serve(socket.socket(fileno=LISTEN_FD), Names(leases), network, own)


# --- its life: started, kept, taken over and stopped by the engines -----------------------

@dataclass(frozen=True)
class Where:
    """What a network's responder needs to know, and where its state file is."""

    network: str
    bridge: str
    address: str    # the bridge's own, the gateway
    subnet: str
    leases: str     # the network's leases file
    state: str      # {"pid", "started"}: which process answers, so any engine can find it


# [book:keep]
def keep(where: Where, wanted: bool) -> None:
    """Make the responder run if ``wanted`` (the network has containers), else not
    (networks' lock held). A running one is kept, whichever engine started it."""
    record = _read_state(where.state)
    alive = record is not None and procfs.same_process(record.get("pid"), record.get("started"))
    if wanted and not alive:
        start(where)
    elif not wanted and record is not None:
        if alive:
            stop(record["pid"], record["started"])
        os.unlink(where.state)


def start(where: Where) -> None:
    """Bind the network's DNS sockets here, UDP and TCP, then hand them to a responder of its own."""
    with ExitStack() as undo:
        sockets = []
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            sock = undo.enter_context(socket.socket(socket.AF_INET, kind))
            try:
                # Only packets that arrived by the bridge reach this socket (socket(7)).
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, where.bridge.encode())
                # A listener may bind while connections of the last one wait out TIME_WAIT.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((where.address, PORT))
                if kind == socket.SOCK_STREAM:
                    sock.listen(16)
            except OSError as exc:
                raise ContainerError(f"network {where.network}: cannot answer DNS on {where.address}:{PORT} "
                                     f"({where.bridge}): {exc.strerror}") from None
            sockets.append(sock)
        pid = _spawn(sockets, [where.network, where.leases, where.subnet, where.address])
    started = procfs.start_time(pid)
    files.write_json(where.state, {"pid": pid, "started": started, "network": where.network,
                                   "address": f"{where.address}:{PORT}"})


def stop(pid: int, started: int) -> None:
    """SIGTERM the responder and wait until it has gone (through a pidfd: no pid reuse can fool it)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if procfs.start_time(pid) != started:
            return  # the pid is somebody else's by now
        for sig in (signal.SIGTERM, signal.SIGKILL):
            signal.pidfd_send_signal(pidfd, sig)
            if select.select([pidfd], [], [], 5)[0]:  # readable once it has exited
                return
    finally:
        os.close(pidfd)
# [/book:keep]


def _spawn(sockets: list[socket.socket], args: list[str]) -> int:
    """Fork twice and exec the responder with ``sockets`` as descriptors 3, 4...; its pid."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(read_end)
            os.setsid()  # no terminal, no session of any engine's
            grandchild = os.fork()
            if grandchild:
                os.write(write_end, str(grandchild).encode())
                os._exit(0)  # the responder is nobody's child: init (or a subreaper) reaps it
            # Each to its place, through copies above every place: a socket's own
            # descriptor may be the very number another one is to take.
            above = LISTEN_FD + len(sockets)
            copies = [fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, above) for sock in sockets]
            for number, copy in enumerate(copies, LISTEN_FD):
                os.dup2(copy, number)  # dup2's copy is inheritable: it stays across execve
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            # Every other descriptor goes. Python opens its own close-on-exec, so
            # execve(2) would close the networks' lock file and the monitor's pipe
            # anyway; one made inheritable on purpose would stay, and a copy of the
            # lock's descriptor holds the flock(2) for as long as it is open.
            os.closerange(LISTEN_FD + len(sockets), os.sysconf("SC_OPEN_MAX"))
            # The engine blocks these while it holds the lock (networks._locked),
            # and a blocked or ignored signal stays so across execve(2).
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL)
            os.chdir("/")
            package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            env = dict(os.environ, PYTHONPATH=package_parent)
            os.execve(sys.executable, [sys.executable, "-m", "mini_engine.network.resolver", *args], env)
        finally:
            os._exit(127)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as report:
        pid = report.read()
    os.waitpid(child, 0)
    if not pid:
        raise ContainerError("network: the DNS responder could not be started")
    return int(pid)


def _read_state(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            record: dict[str, Any] = json.load(f)
        return record
    except (FileNotFoundError, ValueError):
        return None


if __name__ == "__main__":
    main(sys.argv[1:])
