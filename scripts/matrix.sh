#!/usr/bin/env bash
# The main job, from a fresh clone: set up, run the default matrix offline for every release in
# matrix.yaml, and write the report to compat-report/ (report.md, index.html, report.json).
# Extra arguments go to `compat-matrix run`, e.g. --transformers 4.57.6 --models qwen2_5_vl.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/compat-matrix run "$@"
