"""Signals by name or number, as kill(1) takes them, for both command lines.

Man page: signal(7). ``mini-engine kill -s TERM`` and ``mini-runc kill ID
SIGTERM`` read the same words the same way.
"""

from __future__ import annotations

import signal

from mini_engine.base.errors import ContainerError


def parse_signal(text: str) -> int:
    """9, KILL or SIGKILL -> 9, as kill(1), docker and runc accept them."""
    if text.isdigit():
        return int(text)
    name = text.upper() if text.upper().startswith("SIG") else f"SIG{text.upper()}"
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ContainerError(f"unknown signal {text!r}") from None
