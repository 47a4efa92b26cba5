#!/usr/bin/env bash
# Every check, from nothing: set everything up (with the test packages),
# lint, then the test suite, which runs every stage's tests, every lab
# (headless and as a notebook), the book build and `vagrant validate`.
# Extra arguments go to pytest, e.g. scripts/test.sh -m stage2
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check .
exec .venv/bin/pytest "$@"
