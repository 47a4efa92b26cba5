"""``python -m mini_engine`` is the ``mini-engine`` command."""

from mini_engine.cli import main

raise SystemExit(main())
