#!/usr/bin/env bash
# The main job, from nothing: set everything up, then run a container from
# the bundled busybox image (built offline from Debian's busybox-static).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo '$ mini-engine run --rm busybox echo hello'
exec .venv/bin/mini-engine run --rm busybox echo hello
