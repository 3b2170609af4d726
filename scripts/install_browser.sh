#!/usr/bin/env bash
# Installs what tests/test_reports_browser.py needs: Debian's chromium + chromium-driver, and
# selenium into the Python that runs the tests (PYTHON, default python3). Needs root for apt.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium chromium-driver
fi
"$PYTHON" -m pip install --quiet "selenium>=4.20"

chromium --version
chromedriver --version
"$PYTHON" -c "import selenium; print('selenium', selenium.__version__)"
