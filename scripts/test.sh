#!/usr/bin/env bash
# Every check, from nothing: set everything up (with the test packages),
# lint and type-check, then the test suite, which runs every stage's tests, every lab
# (headless and as a notebook), the book build and `vagrant validate`.
# A host that keeps the memory, cpu and pids controllers on cgroup v1 runs
# the stage-3 tests a second time, for real, in the throwaway cgroup-v2 VM.
# Extra arguments go to pytest instead, e.g. scripts/test.sh -m stage2
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/mypy  # the whole package, strict (pyproject.toml's [tool.mypy])
if [ "$#" -gt 0 ]; then
    exec .venv/bin/pytest "$@"
fi

status=0
.venv/bin/pytest || status=$?
if ! .venv/bin/python -c '
import sys
from mini_engine.runtime import cgroups
sys.exit(0 if {"memory", "cpu", "pids"} <= cgroups.available(cgroups.mount_point()) else 1)'
then
    echo "== this host keeps memory, cpu and pids off cgroup v2: stage 3 and podman run in the test VM"
    # The venv's Python, Debian's 3.11.2, runs the scripts too: not whatever
    # python3 comes first on PATH (tests/test_python_floor.py keeps them to it).
    .venv/bin/python scripts/testvm.py run -- .venv/bin/pytest -p no:cacheprovider --color=no -m "stage3 or vm" \
        || status=$?
fi
if [ ! -d /run/systemd/system ]; then
    echo "== systemd is not PID 1 here: mini-runc --systemd-cgroup runs in the test VM booted with systemd"
    .venv/bin/python scripts/testvm.py run --systemd -- .venv/bin/pytest -p no:cacheprovider --color=no -m systemd \
        || status=$?
fi
exit "$status"
