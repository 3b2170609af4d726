"""scripts/gpu_smoke.sh, rehearsed on CPU: the script a GPU session runs must work the first time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from collections import Counter

from compat_matrix.spec.cells import select_cells
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix

REPO = Path(__file__).resolve().parent.parent
MATRIX = load_matrix(DEFAULT_MATRIX, check_model_types=False)
CELLS = select_cells(MATRIX, ["llava"])
PER_PROBE = Counter(cell.probe for cell in CELLS)
"""LLaVA's cells of each probe: one per load profile and strategy (a LoRA profile runs fewer)."""


def test_the_gpu_slice_script_runs_its_cells_and_prints_the_table(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "GPU_SMOKE_DEVICE": "cpu", "GPU_SMOKE_MODELS": "llava"}
    done = subprocess.run(["bash", "scripts/gpu_smoke.sh", str(tmp_path / "out")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("probe"))
    assert lines[header - 1].startswith("cpu | transformers") and lines[header - 1].endswith(f"| {len(CELLS)} cells")
    table = {line.split()[0]: line.split()[1:] for line in lines[header + 1:header + 5]}
    assert list(table) == ["load", "forward", "generate", "grpo_step"]
    for probe, (passed, failed, other, median, peak) in table.items():
        assert int(passed) + int(failed) + int(other) == PER_PROBE[probe], (probe, table[probe])
        assert int(passed) >= 3 and float(median) > 0  # image-text-to-text, explicit class and smart load LLaVA
    assert (tmp_path / "out" / "gpu.jsonl").is_file()
