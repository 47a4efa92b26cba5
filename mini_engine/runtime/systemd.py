"""Cgroups through systemd (``--systemd-cgroup``): a scope unit, asked for over D-Bus.

Chapter 03 reads this module, after cgroups.py. Spec: config-linux.md
("Control groups": a ``cgroupsPath`` of the form ``slice:prefix:name``).
systemd: systemd.scope(5), systemd.resource-control(5) ("Delegate="),
org.freedesktop.systemd1(5). D-Bus: the specification's "Message Protocol".

Where systemd is PID 1 it owns the cgroup tree: it made every cgroup above
us, and expects to be the only one who writes there. A runtime there does
not mkdir its cgroup. It asks systemd for a *transient scope*: a unit made
on the fly around processes that someone else started (here, the
container's first one), with ``Delegate=yes``, which hands what lies below
the scope to us. The scope's own files stay systemd's: it writes them from
the unit's properties, again on every ``daemon-reload``. So the runtime
writes the limits there as cgroups.py does, and gives systemd the same
limits as properties. runc, crun and podman do the same.

The request travels over D-Bus. As root we talk to systemd itself, on its
private socket /run/systemd/private (no bus daemon between), in D-Bus's wire
format: a header and a body of typed values, each at a multiple of its
type's alignment. The hundred lines below marshal the handful of types
systemd's methods take.
"""

from __future__ import annotations

import os
import socket
import struct
import time

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
    for part in (prefix, name):  # what systemd takes in a unit's name, and no escaping needed
        if not all(c.isascii() and (c.isalnum() or c in "_.-") for c in part) or part[0] in "._":
            raise ContainerError(f"--systemd-cgroup: {part!r} cannot be part of a unit's name")
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
    memory, cpu, pids, block = (resources.get(k, {}) for k in ("memory", "cpu", "pids", "blockIO"))
    if memory.get("limit") is not None:
        props.append(("MemoryMax", ("t", limit(memory["limit"]))))
        if memory.get("swap") is not None:
            props.append(("MemorySwapMax", ("t", limit(cgroups.swap_alone(memory)))))
    if memory.get("reservation") is not None:
        props.append(("MemoryLow", ("t", max(memory["reservation"], 0))))
    if pids.get("limit"):  # systemd refuses TasksMax=0; a 0 stays in pids.max alone
        props.append(("TasksMax", ("t", limit(pids["limit"]))))
    if cpu.get("shares"):
        props.append(("CPUWeight", ("t", cgroups.shares_to_weight(cpu["shares"]))))
    if cpu.get("quota") is not None or cpu.get("period") is not None:
        period = cpu.get("period") or 100000
        quota = cpu.get("quota")
        per_second = INFINITY if quota is None or quota < 0 else quota * 1_000_000 // period
        if per_second != INFINITY:
            # systemd keeps the quota as a percentage of a CPU (its unit files say
            # CPUQuota=N%): rounded up to whole percents, as runc does, it comes
            # back from a reload as it went in.
            per_second = -(-per_second // 10000) * 10000
        props += [("CPUQuotaPerSecUSec", ("t", per_second)), ("CPUQuotaPeriodUSec", ("t", period))]
    if block.get("weight"):
        props.append(("IOWeight", ("t", cgroups.blkio_to_io_weight(block["weight"]))))
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


def check_placed(pid: int, cgroup: str) -> None:
    """Is ``pid`` in ``cgroup``, where scope_of said systemd would put it?"""
    from mini_engine.runtime import cgroups

    with open(f"/proc/{pid}/cgroup") as f:
        found = f.read().strip().removeprefix("0::")
    wanted = "/" + os.path.relpath(cgroup, cgroups.mount_point())
    if found != wanted:
        raise ContainerError(f"systemd put the container in {found}, not {wanted}")


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
    """One connection to systemd's private socket: authenticate, call, wait for a job.

    On a direct connection there is no bus: no Hello, no destination needed,
    and systemd sends its signals (JobRemoved among them) to every peer. Of
    those, only JobRemoved's body is read; the others are skipped whole."""

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
        self.jobs_removed: dict[str, str] = {}  # job path -> result, from JobRemoved signals
        self.buffer = b""
        self.deadline = time.monotonic() + TIMEOUT
        # SASL's EXTERNAL mechanism: "I am the uid the kernel tells you I am"
        # (it reads SO_PEERCRED), the uid in decimal, then in hex digits.
        # BEGIN ends the line protocol and has no answer. The spec lets a
        # client send its first message right after it, but systemd 252's
        # server (sd-bus) left a message unanswered when it came in the same
        # read as BEGIN: the call hung, one time in three. So BEGIN goes with
        # NEGOTIATE_UNIX_FD, which has an answer, and nothing more is sent
        # until that answer is in: then BEGIN has surely been read.
        uid = str(os.getuid()).encode().hex().encode()
        self.sock.sendall(b"\0AUTH EXTERNAL " + uid + b"\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n")
        for expected in (b"OK ", b"AGREE_UNIX_FD"):
            answer = self._read_line()
            if not answer.startswith(expected):
                self.sock.close()
                raise ContainerError(f"systemd refused to authenticate us: {answer.decode(errors='replace')}")

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def call(self, member: str, signature: str, *args: Any) -> tuple[Any, ...]:
        """Call a method of systemd's Manager; its reply's values, or its error as a ContainerError."""
        self.serial += 1
        self.deadline = time.monotonic() + TIMEOUT
        fields = {PATH: ("o", MANAGER[0]), INTERFACE: ("s", MANAGER[1]), MEMBER: ("s", member),
                  DESTINATION: ("s", "org.freedesktop.systemd1")}
        self.sock.sendall(message(METHOD_CALL, self.serial, fields, signature, args))
        while True:
            kind, headers, body = self._read_message()
            if kind in (METHOD_RETURN, ERROR) and headers.get(REPLY_SERIAL) == self.serial:
                values = read_body(headers, body)
                if kind == ERROR:
                    text = values[0] if values else ""
                    raise ContainerError(f"systemd: {member}: {text} ({headers.get(ERROR_NAME)})")
                return values

    def wait_for_job(self, job: str) -> str:
        """Wait for systemd's JobRemoved signal of ``job``: its result ("done", "failed"...).
        It may have come before the call's reply: call() kept it."""
        self.deadline = time.monotonic() + TIMEOUT
        while job not in self.jobs_removed:
            self._read_message()
        return self.jobs_removed.pop(job)

    def _read_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._receive()
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _receive(self) -> None:
        left = self.deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
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

    def _read_message(self) -> tuple[int, dict[int, Any], bytes]:
        """One message: its type, its header fields (code -> value), its body unread.
        A JobRemoved signal is noted on the way."""
        fixed = self._read_exactly(16)
        if fixed[:1] != b"l":
            raise ContainerError("systemd sent a big-endian D-Bus message; only little-endian is read here")
        body_length, fields_length = struct.unpack_from("<I4xI", fixed, 4)
        rest = self._read_exactly(fields_length + (-(16 + fields_length) % 8) + body_length)
        raw_fields, end = read_value(fixed + rest, 12, "a(yv)")
        headers = {code: value for code, (_, value) in raw_fields}
        body = (fixed + rest)[end + (-end % 8):]
        if fixed[1] == SIGNAL and headers.get(MEMBER) == "JobRemoved":
            _, job, _, result = read_body(headers, body)  # (id, job, unit, result)
            self.jobs_removed[job] = result
        return fixed[1], headers, body


def read_body(headers: dict[int, Any], body: bytes) -> tuple[Any, ...]:
    """A message's body as the values its SIGNATURE header names."""
    values, position = [], 0
    for part in split(headers.get(SIGNATURE, "")):
        value, position = read_value(body, position, part)
        values.append(value)
    return tuple(values)


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
