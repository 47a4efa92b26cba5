"""IP address management (mini_engine/network/ipam.py): allocation, release,
exhaustion, exact addresses. A leases file in tmp_path; no network touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mini_engine.base.errors import ContainerError
from mini_engine.network.ipam import Leases

pytestmark = [pytest.mark.stage(7), pytest.mark.unit]


def test_the_gateway_is_the_first_host_and_containers_get_the_next_ones(tmp_path: Path) -> None:
    leases = Leases(str(tmp_path), "front", "10.89.3.0/24")
    assert str(leases.gateway) == "10.89.3.1"
    assert [leases.allocate(f"c{i}", pid=100 + i, started=7) for i in range(3)] == \
        ["10.89.3.2", "10.89.3.3", "10.89.3.4"]
    assert json.loads((tmp_path / "front.leases.json").read_text()) == {
        "10.89.3.2": {"pid": 100, "started": 7, "container": "c0"},
        "10.89.3.3": {"pid": 101, "started": 7, "container": "c1"},
        "10.89.3.4": {"pid": 102, "started": 7, "container": "c2"},
    }


def test_a_released_address_is_the_next_handed_out_lowest_first(tmp_path: Path) -> None:
    leases = Leases(str(tmp_path), "front", "10.89.3.0/24")
    for name in "abcd":
        leases.allocate(name)
    leases.release("c")
    leases.release("a")
    leases.release("nobody")  # nothing to release: nothing changes
    assert sorted(leases.holders()) == ["10.89.3.3", "10.89.3.5"]
    assert leases.allocate("e") == "10.89.3.2"
    assert leases.allocate("f") == "10.89.3.4"
    assert leases.allocate("g") == "10.89.3.6"


def test_the_smallest_subnet_holds_one_container_and_then_is_exhausted(tmp_path: Path) -> None:
    leases = Leases(str(tmp_path), "tiny", "192.168.50.0/30")  # hosts .1 and .2
    assert leases.allocate("only") == "192.168.50.2"
    assert leases.allocate("only") == "192.168.50.2"  # asked again: the same, not a second
    with pytest.raises(ContainerError) as caught:
        leases.allocate("second")
    assert str(caught.value) == "network 192.168.50.0/30: every address is taken"
    assert leases.holders() == {"192.168.50.2": {"container": "only"}}  # the failure wrote nothing


def test_a_subnet_without_room_for_a_container_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ContainerError) as caught:
        Leases(str(tmp_path), "none", "10.0.0.0/31")
    assert str(caught.value) == "subnet 10.0.0.0/31 is too small for a gateway and a container"


def test_reclaim_returns_exactly_the_leases_of_holders_gone(tmp_path: Path) -> None:
    leases = Leases(str(tmp_path), "front", "10.89.3.0/29")
    for name, pid in (("a", 1), ("b", 2), ("c", 3)):
        leases.allocate(name, pid=pid)
    assert leases.reclaim(lambda lease: lease["pid"] != 2) == {"10.89.3.3": {"pid": 2, "container": "b"}}
    assert leases.reclaim(lambda lease: True) == {}
    assert sorted(leases.holders()) == ["10.89.3.2", "10.89.3.4"]


def test_ipv6(tmp_path: Path) -> None:
    leases = Leases(str(tmp_path), "six", "fd00:1::/126")
    assert str(leases.gateway) == "fd00:1::1"
    assert (leases.allocate("a"), leases.allocate("b")) == ("fd00:1::2", "fd00:1::3")
    with pytest.raises(ContainerError, match="every address is taken"):
        leases.allocate("c")
