"""Which exercises a command called: a stage's checks must need no later stage.

The student edition promises that a stage not yet written does not break
the ones before it: stage 5's checks pass with stage 6's stubs still
raising NotImplementedError. A check breaks that promise when the command
it runs reaches a later stage's exercise (a ``run`` at the top stage that
computes capabilities, a ``-v`` that parses a volume). The test suite
finds such checks on the reference, in one run: with
``MINI_ENGINE_EXERCISE_TRACE=FILE`` set (an existing file), ``python -m mini_engine`` appends
the id of each exercise it calls to FILE, and tests/conftest.py compares
them with the stage of the check that ran it.

The hook is Python's profiler hook (sys.setprofile), called at every
Python function call; each code object is looked up once. Nothing of it
runs unless the variable is set.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from mini_engine.course.exercises import EXERCISES

VARIABLE = "MINI_ENGINE_EXERCISE_TRACE"


def install(path: str) -> None:
    """Append to ``path`` the id of each exercise this process calls (once each)."""
    top = Path(__file__).resolve().parents[2]
    targets = {(str(top / e.file), e.function): e.id for e in EXERCISES}
    looked_up: dict[CodeType, str | None] = {}
    called: set[str] = set()
    # Opened once: a runtime child that has pivoted into a container's root
    # still writes here (and never into the container's own /tmp). CLOEXEC:
    # the container's command must not inherit it.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except OSError as exc:
        raise SystemExit(f"mini-engine: {VARIABLE}={path}: {exc.strerror}") from None

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        if code not in looked_up:
            looked_up[code] = targets.get((code.co_filename, code.co_qualname))
        exercise = looked_up[code]
        if exercise is not None and exercise not in called:
            called.add(exercise)
            try:
                os.write(fd, f"{exercise}\n".encode())
            except OSError:
                # A child that closed every descriptor before exec: what it
                # calls after that goes untraced, and the hook must never
                # raise into the code it watches.
                pass

    sys.setprofile(profile)
    threading.setprofile(profile)


def called(path: Path) -> set[str]:
    """The exercises that commands traced to ``path`` called."""
    try:
        return set(path.read_text().split())
    except FileNotFoundError:
        return set()
