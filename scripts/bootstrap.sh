#!/usr/bin/env bash
# Creates .venv with the compat-matrix CLI and tox (no torch: each release gets its own tox env).
# Sourced by scripts/matrix.sh and scripts/test.sh; safe to run again (it only installs what changed).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e . -r requirements/dev.txt
