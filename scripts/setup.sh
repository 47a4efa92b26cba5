#!/usr/bin/env bash
# Set the workbench up on a Debian 12 machine, as root: system packages, the
# Python venv with the engine installed in it, and the bundled busybox image.
#
#   scripts/setup.sh          for running containers, the book and the labs
#   scripts/setup.sh --test   plus what the test suite needs
#
# VENV (default: .venv in the repository) says where the venv goes.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-system-deps.sh "$@"

venv=${VENV:-.venv}
# Debian's own Python: the floor the workbench promises is Debian 12's 3.11.
if [ ! -x "$venv/bin/python" ]; then
    /usr/bin/python3 -m venv "$venv"
fi
stamp="$venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -e "$stamp" ]; then
    "$venv/bin/pip" install --quiet --upgrade pip
    # editable_mode=compat: a plain path in a .pth file, not an import hook,
    # which would cost every mini-engine and mini-runc call ~20 ms at start.
    "$venv/bin/pip" install --quiet -e '.[dev,docs,labs]' --config-settings editable_mode=compat
    touch "$stamp"
fi
# mini-runc, the runtime alone: bin/mini-runc starts Python lean (-I -S),
# which a console script cannot. And every module compiled now, so that no
# call compiles one again when PYTHONDONTWRITEBYTECODE is set.
ln -sfn "$PWD/bin/mini-runc" "$venv/bin/mini-runc"
"$venv/bin/python" -m compileall -q mini_engine
