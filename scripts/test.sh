#!/usr/bin/env bash
# The project's tests, from a fresh clone: the matrix end to end for one 4.x and one 5.x release on
# the tiny models, each also loading the other's checkpoints (report checked for every cell), then
# the unit tests (tox -e unit).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
PYTHON=.venv/bin/python bash scripts/install_browser.sh || echo "browser install failed: the browser test will skip and say why"

E2E_OUT="${E2E_OUT:-compat-report-ci}"
E2E_RELEASES="${E2E_RELEASES:-4.57.6 latest}"
echo "== matrix end to end: transformers $E2E_RELEASES -> $E2E_OUT"
# shellcheck disable=SC2086
.venv/bin/compat-matrix run --transformers $E2E_RELEASES --cross-release --out "$E2E_OUT" --fail-on-regression
echo "== report holds every cell"
.venv/bin/python -m pytest tests/e2e -q -p no:cacheprovider --report-dir "$E2E_OUT" --releases "$E2E_RELEASES" --cross-release
echo "== types: mypy (loader, reports, compat_matrix; pyproject.toml [tool.mypy])"
.venv/bin/tox exec -qq -e unit -- python -m mypy
echo "== unit tests"
.venv/bin/tox -qq -e unit   # -qq: pytest's summary stays the last line
