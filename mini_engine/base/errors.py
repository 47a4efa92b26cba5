"""How the runtime and the engine fail: one line, one exit code.

The exit codes are docker's and podman's, so scripts written for them work
here: 125 when the engine or runtime failed, 126 when the command cannot be
invoked, 127 when it is not found, and 128+N when the container was killed
by signal N (computed in ``process.exit_code``).
"""

from __future__ import annotations

ENGINE_FAILED = 125
CANNOT_INVOKE = 126
NOT_FOUND = 127


class ContainerError(Exception):
    """A failure the user can act on, printed as one line with no traceback."""

    def __init__(self, message: str, exit_code: int = ENGINE_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code
