"""Hooks: programs the engine asks the runtime to run at fixed points of the lifecycle.

Spec: config.md ("POSIX-platform Hooks"), runtime.md ("Lifecycle").

Each hook is ``{"path", "args", "env", "timeout"}`` and gets the
container's state as JSON on its stdin. When, where, and what a failure does:

==================  ======================================  =================  ==================
hook                runs                                    namespaces         if it fails
==================  ======================================  =================  ==================
createRuntime       during create, before pivot_root        the runtime's      create fails
createContainer     during create, before pivot_root        the container's    create fails
prestart            during start, before the byte is sent   the runtime's      start fails [#]_
startContainer      during start, before the user's exec    the container's    the process fails
poststart           during start, after the byte is sent    the runtime's      a warning
poststop            during delete, after it is gone         the runtime's      a warning
==================  ======================================  =================  ==================

.. [#] and the container is killed. prestart is where config.md puts it ("after
   the start operation is called but before the user-specified program command
   is executed", the status "created"); runc runs it during create, with the
   status "creating", as runtime.md's older lifecycle had it.
"""

from __future__ import annotations

import json
import sys

from mini_engine.base.errors import ContainerError

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: see mini_engine/runtime/__init__.py
    from typing import Any


def run(config: dict[str, Any], kind: str, state: dict[str, Any]) -> None:
    """Run every ``kind`` hook of config.json in order; raise for the first that fails."""
    import subprocess  # here: most containers have no hooks, and every runtime call would pay

    for i, hook in enumerate(config.get("hooks", {}).get(kind, [])):
        argv = hook.get("args") or [hook["path"]]
        env = dict(item.split("=", 1) for item in hook.get("env", []))
        try:
            done = subprocess.run(argv, executable=hook["path"], env=env, input=json.dumps(state),
                                  capture_output=True, text=True, timeout=hook.get("timeout"))
        except subprocess.TimeoutExpired:
            raise ContainerError(f"{kind} hook {i} ({hook['path']}) timed out after "
                                 f"{hook['timeout']} s") from None
        except OSError as exc:
            raise ContainerError(f"{kind} hook {i} ({hook['path']}): {exc.strerror}") from None
        if done.returncode != 0:
            why = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
            raise ContainerError(f"{kind} hook {i} ({hook['path']}) exited with "
                                 f"{done.returncode}{': ' + why if why else ''}")


def warn(config: dict[str, Any], kind: str, state: dict[str, Any]) -> None:
    """Run hooks whose failure the spec makes a warning, not an error."""
    try:
        run(config, kind, state)
    except ContainerError as exc:
        print(f"mini-runc: warning: {exc}", file=sys.stderr)
