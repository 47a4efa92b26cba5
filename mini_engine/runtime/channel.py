"""The engine's line to the container it is making: a socket pair, one JSON message per datagram.

Chapter 00 reads this module. Man pages: socketpair(2), unix(7) (SOCK_SEQPACKET).
"""

from __future__ import annotations

import json

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: see mini_engine/runtime/__init__.py
    import socket
    from typing import Any


class Sync:
    """One end of the engine-container socket: JSON messages, one per datagram."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, **message: Any) -> None:
        self.sock.send(json.dumps(message).encode())

    def recv(self) -> dict[str, Any] | None:
        """The next message, or None once every process on the other end is gone."""
        data = self.sock.recv(65536)
        return json.loads(data) if data else None

    def close(self) -> None:
        self.sock.close()
