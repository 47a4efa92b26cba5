"""``python -m mini_engine`` is the ``mini-engine`` command."""

import os

if os.environ.get("MINI_ENGINE_EXERCISE_TRACE"):
    # The test suite's check that a stage needs no later one (course/trace.py).
    from mini_engine.course import trace

    trace.install(os.environ["MINI_ENGINE_EXERCISE_TRACE"])

from mini_engine.cli import main

raise SystemExit(main())
