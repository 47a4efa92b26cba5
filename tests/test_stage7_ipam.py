"""Stage 7: the address allocator, under concurrency and after crashes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mini_engine.base.errors import ContainerError
from mini_engine.network.ipam import Leases

pytestmark = pytest.mark.stage(7)

ALLOCATE = """
import sys
from mini_engine.network.ipam import Leases
print(Leases(sys.argv[1], "bridge", "10.88.0.0/24").allocate(sys.argv[2]))
"""


def test_twenty_engines_at_once_get_twenty_addresses(tmp_path: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", ALLOCATE, str(tmp_path), f"c{i}"], stdout=subprocess.PIPE,
                              text=True) for i in range(20)]
    addresses = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(addresses)) == 20
    assert "10.88.0.1" not in addresses  # the gateway's
    leases = json.loads((tmp_path / "bridge.leases.json").read_text())
    assert sorted(lease["container"] for lease in leases.values()) == sorted(f"c{i}" for i in range(20))


def test_release_and_reuse(tmp_path: Path) -> None:
    leases = Leases(str(tmp_path), "bridge", "10.88.0.0/24")
    first = leases.allocate("a")
    assert first == "10.88.0.2"
    assert leases.allocate("a") == first  # asked again: the same one
    assert leases.allocate("b") == "10.88.0.3"
    leases.release("a")
    assert leases.holders() == {"10.88.0.3": {"container": "b"}}
    assert leases.allocate("c") == "10.88.0.2"


def test_a_crashed_engines_lease_is_reclaimed(tmp_path: Path) -> None:
    leases = Leases(str(tmp_path), "bridge", "10.88.0.0/29")  # 6 hosts: gateway and 5
    for name in "abcde":
        leases.allocate(name)
    with pytest.raises(ContainerError, match="every address is taken"):
        leases.allocate("f")
    # "c" is gone (its engine was killed before it released): its address comes back.
    assert leases.reclaim(lambda lease: lease["container"] != "c") == {"10.88.0.4": {"container": "c"}}
    assert leases.allocate("f") == "10.88.0.4"
    assert "c" not in [lease["container"] for lease in leases.holders().values()]
