#!/usr/bin/env bash
# The project's tests, from a fresh clone: the matrix end to end (the README's main command,
# scripts/matrix.sh, on a slice) for one 4.x and one 5.x release on
# the tiny models, each also loading the other's checkpoints (report checked for every cell; --fresh:
# every cell runs, none comes from the results store), the reproduction scripts of five causes
# verified against that report (docs/repro.md), then
# compat-matrix as an installed tool on examples/grpo_trainer from outside the repository (built
# wheel, init, two releases, report checked), then the unit tests (tox -e unit).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# CI pins trl and peft as it pins its releases: a new trl or peft must not change its verdicts
export COMPAT_MATRIX_TRAINING_CONSTRAINTS="$PWD/requirements/ci-training.txt"
PYTHON=.venv/bin/python bash scripts/install_browser.sh || echo "browser install failed: the browser test will skip and say why"

E2E_OUT="${E2E_OUT:-compat-report-ci}"
E2E_RELEASES="${E2E_RELEASES:-4.57.6 5.24.0}"
echo "== matrix end to end: transformers $E2E_RELEASES -> $E2E_OUT"
# shellcheck disable=SC2086
bash scripts/matrix.sh --transformers $E2E_RELEASES --cross-release --out "$E2E_OUT" --fail-on-regression --fresh
echo "== report holds every cell"
.venv/bin/python -m pytest tests/e2e/test_report_complete.py -q -p no:cacheprovider --report-dir "$E2E_OUT" --releases "$E2E_RELEASES" --cross-release
echo "== bisect end to end: since when does qwen3_vl load (explicit_class), between 4.52.4 and 4.57.6; --record"
BISECT_OUT="$E2E_OUT/bisect"
mkdir -p "$BISECT_OUT"
cp matrix.yaml "$BISECT_OUT/matrix.yaml"
SECONDS=0
.venv/bin/compat-matrix --matrix "$BISECT_OUT/matrix.yaml" bisect --good 4.52.4 --bad 4.57.6 --models qwen3_vl \
    --strategies explicit_class --probes load --profiles default --no-reuse --record --json > "$BISECT_OUT/bisect.json" 2> "$BISECT_OUT/bisect.err" \
    || { cat "$BISECT_OUT/bisect.err" >&2; exit 1; }
cat "$BISECT_OUT/bisect.err" >&2
echo "bisect: ${SECONDS} s"
.venv/bin/python -m pytest tests/e2e/test_bisect_recorded.py -q -p no:cacheprovider --bisect-dir "$BISECT_OUT"
echo "== cross-release bisect end to end: which writer's llama checkpoint 4.57.6 first fails to read (4.57.6 .. 5.1.0); --record"
CROSS_OUT="$E2E_OUT/bisect-cross"
mkdir -p "$CROSS_OUT"
cp matrix.yaml "$CROSS_OUT/matrix.yaml"
SECONDS=0
.venv/bin/compat-matrix --matrix "$CROSS_OUT/matrix.yaml" bisect --cross-release --loaded-by 4.57.6 --good 4.57.6 --bad 5.1.0 \
    --models llama --strategies smart --probes load --profiles default --no-reuse --record --json --out "$CROSS_OUT" \
    > "$CROSS_OUT/bisect.json" 2> "$CROSS_OUT/bisect.err" || { cat "$CROSS_OUT/bisect.err" >&2; exit 1; }
cat "$CROSS_OUT/bisect.err" >&2
echo "cross-release bisect: ${SECONDS} s"
.venv/bin/python -m pytest tests/e2e/test_bisect_cross_recorded.py -q -p no:cacheprovider --cross-bisect-dir "$CROSS_OUT"
echo "== history from the store: qwen2 over 4.49.0 4.50.0 twice (the second reuses every cell), then 4.50.1 added (only it runs)"
HISTORY_OUT="$E2E_OUT/history"
rm -rf "$HISTORY_OUT" && mkdir -p "$HISTORY_OUT"
HISTORY=(--models qwen2 --strategies smart explicit_class --profiles default --probes load forward -n 1)
SECONDS=0
for step in "first:4.49.0 4.50.0" "second:4.49.0 4.50.0" "third:4.49.0 4.50.0 4.50.1"; do
    # shellcheck disable=SC2086
    COMPAT_MATRIX_STORE="$HISTORY_OUT/store" .venv/bin/compat-matrix run --transformers ${step#*:} "${HISTORY[@]}" \
        --out "$HISTORY_OUT/${step%%:*}" 2> "$HISTORY_OUT/${step%%:*}.err" || { cat "$HISTORY_OUT/${step%%:*}.err" >&2; exit 1; }
done
echo "history from the store: ${SECONDS} s"
.venv/bin/python -m pytest tests/e2e/test_history_store.py -q -p no:cacheprovider --history-dir "$HISTORY_OUT"
echo "== repro end to end: five causes of different kinds reproduce on their release and pass on the good one; a broken probe does not"
SECONDS=0
.venv/bin/python -m pytest tests/e2e/test_repro_verified.py -q -p no:cacheprovider --report-dir "$E2E_OUT"
echo "repro: ${SECONDS} s"
echo "== the installed tool from outside the repository: examples/grpo_trainer"
PYTHON=.venv/bin/python bash scripts/example_e2e.sh
echo "== types: mypy (loader, reports, compat_matrix; pyproject.toml [tool.mypy])"
.venv/bin/tox exec -qq -e unit -- python -m mypy
echo "== unit tests"
.venv/bin/tox -qq -e unit -- -n 2 --durations=15   # two xdist workers (CI has 2 cores); -qq: pytest's summary stays the last line
