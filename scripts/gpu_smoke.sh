#!/usr/bin/env bash
# The GPU slice of the matrix: every image-text tiny model, every strategy and probe, on cuda (bf16),
# offline, then a short table (status counts, median seconds per probe, peak GPU MiB).
# Needs a Python with a CUDA torch, transformers and requirements/harness.txt (PYTHON, default python3);
# takes a few minutes on one GPU. Usage: PYTHON=.tox/tf4_57_6/bin/python bash scripts/gpu_smoke.sh [OUT]
# GPU_SMOKE_DEVICE=cpu rehearses it without a GPU (fp32; tests/test_gpu_smoke.py does, on one model);
# GPU_SMOKE_MODELS=llava,qwen2_vl narrows the slice.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
OUT="${1:-${OUT:-gpu-smoke}}"
DEVICE="${GPU_SMOKE_DEVICE:-cuda}"
MODELS="${GPU_SMOKE_MODELS:-}"
[ -n "$MODELS" ] || MODELS=$("$PYTHON" -c "from compat_matrix.spec.validate import load_matrix
m = load_matrix(check_model_types=False)
print(','.join(e.key for e in m.models if e.modality == 'image-text' and e.source == 'tiny'))")
if [ "$DEVICE" = cuda ]; then
  "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')"
fi
export COMPAT_MATRIX_DEVICE="$DEVICE" COMPAT_MATRIX_ENV="gpu" HF_HUB_OFFLINE=1 PYTHONPATH="$PWD"
start=$(date +%s)
"$PYTHON" -m pytest compat_tests -q -p no:cacheprovider -rN --cm-models "$MODELS" --cm-results "$OUT" || true
echo "wall: $(( $(date +%s) - start )) s"
"$PYTHON" - "$OUT/gpu.jsonl" <<'PY'
import collections, json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print(f"{rows[0]['gpu_name'] or rows[0]['device']} | transformers {rows[0]['transformers']} | torch {rows[0]['torch']} | {len(rows)} cells")
print(f"{'probe':<10} {'pass':>5} {'fail':>5} {'other':>5} {'median s':>9} {'peak MiB':>9}")
for probe in ("load", "forward", "generate", "grpo_step"):
    mine = [r for r in rows if r["probe"] == probe]
    counts = collections.Counter(r["status"] for r in mine)
    times = [r["duration_s"] for r in mine if r["status"] == "pass"] or [0.0]
    peak = max((r["peak_memory_mb"] or 0.0) for r in mine) if mine else 0.0
    print(f"{probe:<10} {counts['pass']:>5} {counts['fail']:>5} {len(mine) - counts['pass'] - counts['fail']:>5} "
          f"{statistics.median(times):>9.3f} {peak:>9.1f}")
for r in rows:
    if r["status"] in ("fail", "error") and r["strategy"] in ("explicit_class", "smart"):
        print(f"  {r['cell_id']}: {r['status']}: {r['message'][:150]}")
PY
