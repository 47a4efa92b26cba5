"""IP address management: one address per container, never two at once, none lost.

Chapter 07 reads this module. Man pages: flock(2), ip-address(8).

Each network has a subnet (``10.88.0.0/16`` for the default bridge). The
bridge takes the first host address as the gateway; containers get the
next free ones. The leases live in a JSON file under the runtime root
(/run is a tmpfs: after a reboot no container holds an address), changed
only under flock(2), so that twenty engines starting containers at once
never hand out one address twice.

A lease names its container and the engine process that holds it (its pid
and start time, so that a reused pid is not mistaken for it). An engine
killed before it could release its lease leaves it behind; before the next
allocation, ``reclaim`` takes back every lease whose holder is gone
(``alive`` says which are), so no address is lost for good.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mini_engine.base import files
from mini_engine.base.errors import ContainerError


class Leases:
    def __init__(self, directory: str, network: str, subnet: str) -> None:
        self.path = os.path.join(directory, f"{network}.leases.json")
        self.lock_path = os.path.join(directory, f"{network}.lock")
        self.directory = directory
        self.subnet = ipaddress.ip_network(subnet)
        if self.subnet.num_addresses < 4:
            raise ContainerError(f"subnet {subnet} is too small for a gateway and a container")

    @property
    def gateway(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return self.subnet.network_address + 1  # the first host address (the subnet has four or more)

    @contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(self.path) as f:
                    leases = dict(json.load(f))
            except (FileNotFoundError, ValueError):
                leases = {}
            before = {address: dict(lease) for address, lease in leases.items()}
            yield leases
            if leases != before:  # a look (holders) writes nothing
                files.write_json(self.path, leases)

    # [book:allocate]
    def allocate(self, container_id: str, wanted: str | None = None, **details: Any) -> str:
        """The next free address for ``container_id`` (its old one if it has one),
        or the one it asked for (``--ip``) if nobody holds it (the caller has
        checked that it is in the subnet and not the gateway). Refused with
        ContainerError, in words the checks compare: ``--ip ADDRESS: the
        address is in use by container ID12`` (the holder's first 12
        characters; or ``by the gateway``) and ``network SUBNET: every
        address is taken``."""
        with self._locked() as leases:
            for address, lease in leases.items():
                if lease["container"] == container_id:
                    return address
            taken = set(leases) | {str(self.gateway)}
            if wanted is not None:
                if wanted in taken:
                    holder = "the gateway" if wanted == str(self.gateway) else \
                        f"container {leases[wanted]['container'][:12]}"
                    raise ContainerError(f"--ip {wanted}: the address is in use by {holder}")
                leases[wanted] = dict(details, container=container_id)
                return wanted
            for host in self.subnet.hosts():
                if str(host) not in taken:
                    leases[str(host)] = dict(details, container=container_id)
                    return str(host)
        raise ContainerError(f"network {self.subnet}: every address is taken")

    def reclaim(self, alive: Callable[[dict[str, Any]], bool]) -> dict[str, dict[str, Any]]:
        """Take back the leases whose holder is gone (a crashed engine's); return them."""
        with self._locked() as leases:
            stale = {address: lease for address, lease in leases.items() if not alive(lease)}
            for address in stale:
                del leases[address]
        return stale
    # [/book:allocate]

    def release(self, container_id: str) -> None:
        with self._locked() as leases:
            for address in [a for a, lease in leases.items() if lease["container"] == container_id]:
                del leases[address]

    def rename(self, container_id: str, old: str | None, new: str) -> bool:
        """``rename``: ``new`` in place of ``old`` among the names of the container's lease
        (the first name, if it had none); False if it holds no address here."""
        with self._locked() as leases:
            for lease in leases.values():
                if lease["container"] == container_id:
                    names = list(lease.get("names", []))
                    lease["names"] = [new if n == old else n for n in names] if old in names else [new, *names]
                    return True
        return False

    def holders(self) -> dict[str, dict[str, Any]]:
        """Address -> lease, for every address handed out."""
        with self._locked() as leases:
            return dict(leases)
