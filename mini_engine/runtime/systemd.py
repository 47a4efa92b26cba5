"""Cgroups through systemd (``--systemd-cgroup``): a scope unit, asked for over D-Bus.

Chapter 03 reads this module, after cgroups.py. Spec: config-linux.md
("Control groups": a ``cgroupsPath`` of the form ``slice:prefix:name``).
systemd: systemd.scope(5), systemd.resource-control(5) ("Delegate="),
org.freedesktop.systemd1(5). D-Bus: the specification's "Message Protocol".

Where systemd is PID 1 it owns the cgroup tree: it made every cgroup above
us and tidies what it does not know. A runtime there does not mkdir its
cgroup. It asks systemd for a *transient scope*: a unit made on the fly
around processes that someone else started (here, the container's first
one), with ``Delegate=yes``, which hands the scope's subtree to us. Then it
writes the limits into the scope as cgroups.py does, and gives them to
systemd too, which rewrites a unit's files from its own properties on every
``daemon-reload``. runc, crun and podman do the same.

The request travels over D-Bus. As root we talk to systemd itself, on its
private socket /run/systemd/private (no bus daemon between), in D-Bus's wire
format: a header and a body of typed values, each aligned to its size. The
hundred lines below marshal the handful of types systemd's methods take.
"""

from __future__ import annotations

import os
import socket
import struct

from mini_engine.base.errors import ContainerError

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: see mini_engine/runtime/__init__.py
    from typing import Any

PRIVATE_SOCKET = "/run/systemd/private"
MANAGER = ("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager")
TIMEOUT = 30.0  # seconds for systemd to answer, and to finish a job
INFINITY = 2**64 - 1  # systemd's "infinity" for a uint64 limit

# D-Bus's basic types: the struct format of the fixed-size ones, and every
# type's alignment. A value starts at a multiple of its alignment, counted
# from the start of the message, padded with zero bytes.
FIXED = {"y": "B", "b": "I", "u": "I", "i": "i", "t": "Q", "x": "q", "h": "I"}
ALIGN = {"y": 1, "b": 4, "u": 4, "i": 4, "t": 8, "x": 8, "h": 4, "s": 4, "o": 4, "g": 1,
         "a": 4, "(": 8, "{": 8, "v": 1}
# The message types, and the header fields this module reads or writes.
METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
PATH, INTERFACE, MEMBER, ERROR_NAME, REPLY_SERIAL, DESTINATION, SIGNATURE = 1, 2, 3, 4, 5, 6, 8


# [book:systemd-scope]
def scope_of(cgroups_path: str) -> tuple[str, str, str]:
    """``slice:prefix:name`` (config-linux.md's form for systemd) as the slice,
    the scope unit, and the scope's path below the cgroup2 mount.

    ``system.slice:mini:web`` is the scope ``mini-web.scope`` in system.slice,
    whose cgroup is ``system.slice/mini-web.scope``. A dash in a slice's name
    nests it: ``kubepods-besteffort.slice`` lives in ``kubepods.slice``.
    """
    parts = cgroups_path.split(":")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise ContainerError(f'--systemd-cgroup: linux.cgroupsPath is "slice:prefix:name", '
                             f"not {cgroups_path!r}")
    slice_name, prefix, name = parts
    slice_name = slice_name or "system.slice"
    if name.endswith(".slice"):
        raise ContainerError(f"--systemd-cgroup: {name}: a slice as the container's own unit is not supported")
    unit = f"{prefix}-{name}.scope"
    return slice_name, unit, os.path.join(slice_path(slice_name), unit)


def slice_path(slice_name: str) -> str:
    """Where systemd puts a slice's cgroup: ``a-b.slice`` is ``a.slice/a-b.slice``."""
    if slice_name == "-.slice":  # the root slice
        return ""
    stem = slice_name.removesuffix(".slice")
    if stem == slice_name or not stem or "/" in stem or "" in stem.split("-"):
        raise ContainerError(f"--systemd-cgroup: {slice_name!r} is not a slice's name")
    parts = stem.split("-")
    return "/".join("-".join(parts[:i + 1]) + ".slice" for i in range(len(parts)))


def properties_for(resources: dict[str, Any]) -> list[tuple[str, tuple[str, Any]]]:
    """The limits of ``linux.resources`` that systemd keeps as unit properties
    (systemd.resource-control(5)), so that it writes what we wrote, not "max"."""
    from mini_engine.runtime import cgroups

    def limit(value: int | None) -> int:
        return INFINITY if value is None or value < 0 else value

    props: list[tuple[str, tuple[str, Any]]] = []
    memory, cpu, pids = (resources.get(k, {}) for k in ("memory", "cpu", "pids"))
    if memory.get("limit") is not None:
        props.append(("MemoryMax", ("t", limit(memory["limit"]))))
    if pids.get("limit") is not None:
        props.append(("TasksMax", ("t", limit(pids["limit"]))))
    if cpu.get("shares"):
        props.append(("CPUWeight", ("t", cgroups.shares_to_weight(cpu["shares"]))))
    if cpu.get("quota") is not None or cpu.get("period") is not None:
        period = cpu.get("period") or 100000
        quota = cpu.get("quota")
        per_second = INFINITY if quota is None or quota < 0 else quota * 1_000_000 // period
        props += [("CPUQuotaPerSecUSec", ("t", per_second)), ("CPUQuotaPeriodUSec", ("t", period))]
    return props


def start_scope(bus: Connection, unit: str, slice_name: str, pid: int, resources: dict[str, Any]) -> None:
    """Ask systemd for the scope ``unit`` around process ``pid``, and wait until it runs.

    systemd moves ``pid`` into the new cgroup itself. Delegate=yes: the subtree
    is ours (we write its files, a container may make cgroups below it).
    DefaultDependencies=no: only we, or the end of its processes, stop it.
    CollectMode=inactive-or-failed: a scope that failed is forgotten too.
    """
    props: list[tuple[str, tuple[str, Any]]] = [
        ("Description", ("s", f"mini-runc container {unit}")),
        ("Slice", ("s", slice_name)),
        ("PIDs", ("au", [pid])),
        ("Delegate", ("b", True)),
        ("DefaultDependencies", ("b", False)),
        ("CollectMode", ("s", "inactive-or-failed")),
        ("MemoryAccounting", ("b", True)),
        ("CPUAccounting", ("b", True)),
        ("TasksAccounting", ("b", True)),
        ("IOAccounting", ("b", True)),
        *properties_for(resources),
    ]
    job = bus.call("StartTransientUnit", "ssa(sv)a(sa(sv))", unit, "replace", props, [])[0]
    result = bus.wait_for_job(job)
    if result != "done":
        raise ContainerError(f"systemd could not start the scope {unit}: the job ended {result!r}")


def set_properties(unit: str, resources: dict[str, Any]) -> None:
    """``update``: the new limits as the scope's properties too (runtime only, as runc)."""
    props = properties_for(resources)
    if props:
        with Connection() as bus:
            bus.call("SetUnitProperties", "sba(sv)", unit, True, props)


def stop_scope(unit: str) -> None:
    """Tell systemd the scope is over (``delete``), and wait until it is gone.
    A scope whose cgroup emptied may already be: that is no error."""
    with Connection() as bus:
        try:
            job = bus.call("StopUnit", "ss", unit, "replace")[0]
        except ContainerError as exc:
            if "NoSuchUnit" in str(exc):
                return
            raise
        bus.wait_for_job(job)
# [/book:systemd-scope]


class Connection:
    """One connection to systemd's private socket: authenticate, call, read signals.

    On a direct connection there is no bus: no Hello, no destination needed,
    and systemd sends its signals (JobRemoved among them) to every peer."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(TIMEOUT)
        try:
            self.sock.connect(PRIVATE_SOCKET)
        except OSError as exc:
            self.sock.close()
            raise ContainerError(f"--systemd-cgroup: cannot reach systemd at {PRIVATE_SOCKET} "
                                 f"({exc.strerror}): is systemd PID 1 here? else use the cgroupfs manager"
                                 ) from None
        self.serial = 0
        self.signals: list[tuple[str, tuple[Any, ...]]] = []
        self.buffer = b""
        # SASL's EXTERNAL mechanism: "I am the uid the kernel tells you I am"
        # (it reads SO_PEERCRED), the uid in decimal, then in hex digits.
        # BEGIN, which ends the line protocol, has no answer; sent with a
        # line that has one, and the first message only once that answer
        # is in, it never shares a read with the message. (systemd 252 left
        # a message read together with BEGIN unanswered: the call hung.)
        uid = str(os.getuid()).encode().hex().encode()
        self.sock.sendall(b"\0AUTH EXTERNAL " + uid + b"\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n")
        for expected in (b"OK ", b"AGREE_UNIX_FD"):
            answer = self._read_line()
            if not answer.startswith(expected):
                raise ContainerError(f"systemd refused to authenticate us: {answer.decode(errors='replace')}")

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def call(self, member: str, signature: str, *args: Any) -> tuple[Any, ...]:
        """Call a method of systemd's Manager; its reply's values, or its error as a ContainerError."""
        self.serial += 1
        fields = {PATH: ("o", MANAGER[0]), INTERFACE: ("s", MANAGER[1]), MEMBER: ("s", member),
                  DESTINATION: ("s", "org.freedesktop.systemd1")}
        self.sock.sendall(message(METHOD_CALL, self.serial, fields, signature, args))
        while True:
            kind, headers, body = self._read_message()
            if kind == SIGNAL:
                self.signals.append((headers.get(MEMBER, ""), body))
            elif headers.get(REPLY_SERIAL) == self.serial:
                if kind == ERROR:
                    text = body[0] if body else ""
                    raise ContainerError(f"systemd: {member}: {text} ({headers.get(ERROR_NAME)})")
                return body

    def wait_for_job(self, job: str) -> str:
        """Wait for systemd's JobRemoved signal of ``job``: its result ("done", "failed"...)."""
        while True:
            for member, body in self.signals:
                if member == "JobRemoved" and body[1] == job:  # (id, job, unit, result)
                    return str(body[3])
            self.signals.clear()
            kind, headers, body = self._read_message()
            if kind == SIGNAL:
                self.signals.append((headers.get(MEMBER, ""), body))

    def _read_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._receive()
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _receive(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise ContainerError(f"systemd did not answer within {TIMEOUT:.0f} s") from None
        if not chunk:
            raise ContainerError("systemd closed the connection")
        self.buffer += chunk

    def _read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._receive()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _read_message(self) -> tuple[int, dict[int, Any], tuple[Any, ...]]:
        """One message: its type, its header fields (code -> value), its body's values."""
        fixed = self._read_exactly(16)
        if fixed[:1] != b"l":
            raise ContainerError("systemd sent a big-endian D-Bus message; only little-endian is read here")
        body_length, fields_length = struct.unpack_from("<I4xI", fixed, 4)
        rest = self._read_exactly(fields_length + (-(16 + fields_length) % 8) + body_length)
        data = fixed + rest
        raw_fields, end = read_value(data, 12, "a(yv)")
        headers = {code: value for code, (_, value) in raw_fields}
        body_at = end + (-end % 8)
        values, signature = [], headers.get(SIGNATURE, "")
        position = 0
        body = data[body_at:]
        for part in split(signature):
            value, position = read_value(body, position, part)
            values.append(value)
        return fixed[1], headers, tuple(values)


# The wire format: write_value and read_value, one branch per kind of type.

def message(kind: int, serial: int, fields: dict[int, tuple[str, Any]], signature: str,
            args: tuple[Any, ...]) -> bytes:
    """A whole message: the fixed header, the header fields, padding to 8, the body."""
    body = bytearray()
    for part, value in zip(split(signature), args, strict=True):
        write_value(body, part, value)
    if signature:
        fields = {**fields, SIGNATURE: ("g", signature)}
    header = bytearray()
    # little-endian ("l"), the type, no flags, protocol version 1
    for code, value in (("y", ord("l")), ("y", kind), ("y", 0), ("y", 1),
                        ("u", len(body)), ("u", serial), ("a(yv)", list(fields.items()))):
        write_value(header, code, value)
    header += b"\0" * (-len(header) % 8)
    return bytes(header + body)


def write_value(out: bytearray, signature: str, value: Any) -> None:
    """Append ``value`` of the one complete type ``signature`` to ``out``, aligned."""
    kind = signature[0]
    out += b"\0" * (-len(out) % ALIGN[kind])
    if kind in FIXED:
        out += struct.pack("<" + FIXED[kind], value)
    elif kind in "so":  # a string: its length, its UTF-8 bytes, a NUL
        data = value.encode()
        out += struct.pack("<I", len(data)) + data + b"\0"
    elif kind == "g":  # a signature: the same, with a one-byte length
        out += bytes([len(value)]) + value.encode() + b"\0"
    elif kind == "v":  # a variant: its value's signature, then the value
        inner, item = value
        write_value(out, "g", inner)
        write_value(out, inner, item)
    elif kind == "a":  # an array: its length in bytes, then its items (the length skips their padding)
        at = len(out)
        out += b"\0\0\0\0"
        out += b"\0" * (-len(out) % ALIGN[signature[1]])
        start = len(out)
        for item in value:
            write_value(out, signature[1:], item)
        struct.pack_into("<I", out, at, len(out) - start)
    elif kind in "({":  # a struct or a dict entry: its members in order, from an 8-byte boundary
        for part, item in zip(split(signature[1:-1]), value, strict=True):
            write_value(out, part, item)
    else:
        raise ValueError(f"D-Bus type {kind!r} is not written here")


def read_value(data: bytes, position: int, signature: str) -> tuple[Any, int]:
    """The value of type ``signature`` at ``position`` (aligned first), and where it ends."""
    kind = signature[0]
    position += -position % ALIGN[kind]
    if kind in FIXED:
        fmt = "<" + FIXED[kind]
        return struct.unpack_from(fmt, data, position)[0], position + struct.calcsize(fmt)
    if kind in "so":
        (length,) = struct.unpack_from("<I", data, position)
        return data[position + 4:position + 4 + length].decode(), position + 4 + length + 1
    if kind == "g":
        length = data[position]
        return data[position + 1:position + 1 + length].decode(), position + 1 + length + 1
    if kind == "v":
        inner, position = read_value(data, position, "g")
        item, position = read_value(data, position, inner)
        return (inner, item), position
    if kind == "a":
        (length,) = struct.unpack_from("<I", data, position)
        position += 4
        position += -position % ALIGN[signature[1]]
        end, items = position + length, []
        while position < end:
            item, position = read_value(data, position, signature[1:])
            items.append(item)
        return items, position
    if kind in "({":
        members = []
        for part in split(signature[1:-1]):
            item, position = read_value(data, position, part)
            members.append(item)
        return tuple(members), position
    raise ValueError(f"D-Bus type {kind!r} is not read here")


def split(signature: str) -> list[str]:
    """A signature as its complete types: "sa(sv)b" is ["s", "a(sv)", "b"]."""
    types, i = [], 0
    while i < len(signature):
        end = _complete(signature, i)
        types.append(signature[i:end])
        i = end
    return types


def _complete(signature: str, i: int) -> int:
    """Where the complete type that starts at ``i`` ends."""
    if signature[i] == "a":
        return _complete(signature, i + 1)
    if signature[i] in "({":
        close, i = ")" if signature[i] == "(" else "}", i + 1
        while signature[i] != close:
            i = _complete(signature, i)
        return i + 1
    return i + 1
