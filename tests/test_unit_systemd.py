"""runtime/systemd.py's pure parts: D-Bus's wire format, and where a scope's cgroup lies.

The scope itself, made by a real systemd, is checked in the test VM booted with
systemd as PID 1 (tests/test_runtime_cli.py, ``-m systemd``).
"""

from __future__ import annotations

import pytest

from mini_engine.base.errors import ContainerError
from mini_engine.runtime import systemd

pytestmark = pytest.mark.unit


def test_an_array_of_properties_on_the_wire() -> None:
    """a(sv) [("A", <uint32 1>)], as the D-Bus specification lays it out byte by byte."""
    out = bytearray()
    systemd.write_value(out, "a(sv)", [("A", ("u", 1))])
    assert bytes(out) == bytes([
        16, 0, 0, 0,     # the array's length in bytes, from its first item
        0, 0, 0, 0,      # padding: a struct starts at a multiple of 8
        1, 0, 0, 0, 65, 0,  # "A": its length, its byte, a NUL
        1, 117, 0,       # the variant's signature "u"
        0, 0, 0,         # padding: a uint32 starts at a multiple of 4
        1, 0, 0, 0])     # 1


def test_a_message_reads_back_as_written() -> None:
    """The header and body of a StartTransientUnit call, read back by read_value."""
    props = [("Slice", ("s", "system.slice")), ("PIDs", ("au", [42, 43])), ("Delegate", ("b", True)),
             ("MemoryMax", ("t", 2**64 - 1))]
    data = systemd.message(systemd.METHOD_CALL, 7, {systemd.MEMBER: ("s", "StartTransientUnit")},
                           "ssa(sv)a(sa(sv))", ("x.scope", "replace", props, []))
    assert data[:4] == b"l\x01\x00\x01" and int.from_bytes(data[8:12], "little") == 7
    fields, end = systemd.read_value(data, 12, "a(yv)")
    assert dict(fields) == {systemd.MEMBER: ("s", "StartTransientUnit"),
                            systemd.SIGNATURE: ("g", "ssa(sv)a(sa(sv))")}
    body = data[end + (-end % 8):]
    assert len(body) == int.from_bytes(data[4:8], "little")
    values, position = [], 0
    for part in systemd.split("ssa(sv)a(sa(sv))"):
        value, position = systemd.read_value(body, position, part)
        values.append(value)
    assert values == ["x.scope", "replace", [tuple(p) for p in props], []]
    assert position == len(body)


def test_signatures_split_into_complete_types() -> None:
    assert systemd.split("ssa(sv)a(sa(sv))") == ["s", "s", "a(sv)", "a(sa(sv))"]
    assert systemd.split("a{sv}uo") == ["a{sv}", "u", "o"]


@pytest.mark.parametrize("path, expected", [
    ("system.slice:mini:web", ("system.slice", "mini-web.scope", "system.slice/mini-web.scope")),
    (":mini:web", ("system.slice", "mini-web.scope", "system.slice/mini-web.scope")),
    ("machine.slice:libpod:ab12", ("machine.slice", "libpod-ab12.scope", "machine.slice/libpod-ab12.scope")),
    ("kubepods-besteffort-pod1.slice:cri-containerd:c9",
     ("kubepods-besteffort-pod1.slice", "cri-containerd-c9.scope",
      "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-c9.scope")),
    ("-.slice:mini:top", ("-.slice", "mini-top.scope", "mini-top.scope")),
])
def test_where_a_scope_lies(path: str, expected: tuple[str, str, str]) -> None:
    assert systemd.scope_of(path) == expected


@pytest.mark.parametrize("path, error", [
    ("/mini/web", "--systemd-cgroup: linux.cgroupsPath is \"slice:prefix:name\", not '/mini/web'"),
    ("system.slice::web",
     "--systemd-cgroup: linux.cgroupsPath is \"slice:prefix:name\", not 'system.slice::web'"),
    ("system:mini:web", "--systemd-cgroup: 'system' is not a slice's name"),
    ("a--b.slice:mini:web", "--systemd-cgroup: 'a--b.slice' is not a slice's name"),
    ("system.slice:mini:web.slice",
     "--systemd-cgroup: web.slice: a slice as the container's own unit is not supported"),
    ("system.slice:mini:../../x", "--systemd-cgroup: '../../x' cannot be part of a unit's name"),
    ("system.slice:_mini:web", "--systemd-cgroup: '_mini' cannot be part of a unit's name"),
])
def test_a_path_systemd_cannot_take(path: str, error: str) -> None:
    with pytest.raises(ContainerError) as caught:
        systemd.scope_of(path)
    assert str(caught.value) == error


def test_limits_as_properties() -> None:
    """systemd.resource-control(5)'s names, with -1 (no limit) as its infinity."""
    assert systemd.properties_for({"memory": {"limit": 1 << 26, "swap": 1 << 27, "reservation": 1 << 25},
                                   "pids": {"limit": -1}, "blockIO": {"weight": 500},
                                   "cpu": {"shares": 1024, "quota": 50000, "period": 100000}}) == [
        ("MemoryMax", ("t", 1 << 26)), ("MemorySwapMax", ("t", 1 << 26)), ("MemoryLow", ("t", 1 << 25)),
        ("TasksMax", ("t", 2**64 - 1)), ("CPUWeight", ("t", 100)),
        ("CPUQuotaPerSecUSec", ("t", 500000)), ("CPUQuotaPeriodUSec", ("t", 100000)),
        ("IOWeight", ("t", 4950))]


def test_a_quota_is_rounded_up_to_whole_percents_and_a_zero_pids_limit_is_no_property() -> None:
    """12345 us per 100 ms is 12.345% of a CPU: systemd keeps 13%."""
    assert systemd.properties_for({"cpu": {"quota": 12345, "period": 100000}, "pids": {"limit": 0}}) == [
        ("CPUQuotaPerSecUSec", ("t", 130000)), ("CPUQuotaPeriodUSec", ("t", 100000))]
