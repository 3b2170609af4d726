"""What the drift fingerprints cost: per model, the forward probe's seconds (a real cell
through `run_cell`), the same forward passes a drift record makes with and without the module
hooks, and the hooks' extra time as a share of the forward probe (target: under 20%).

    .tox/tf4_57_6/bin/python bench/bench_drift.py [--models llama qwen2_vl qwen2_5_vl] [--repeats 40]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def fastest_seconds(run: Callable[[], Any], repeats: int) -> float:
    """The least CPU time of this process over `repeats` runs (one thread): on a shared machine
    wall-clock time also counts the time other processes held the cores, which moved these
    millisecond passes by more than the hooks cost."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return min(times)


def measure(key: str, repeats: int) -> dict[str, float]:
    import torch

    from compat_matrix.spec.cells import Cell
    from compat_matrix.spec.validate import load_matrix
    from compat_tests.execute import MatrixState, run_cell
    from compat_tests.fingerprint import ModuleTrace
    from compat_tests.sources import resolve
    from compat_tests.tiny.inputs import InputBuilder
    from loader import load_model

    matrix = load_matrix(check_model_types=False)
    entry = matrix.model(key)
    state = MatrixState(matrix)
    torch.set_num_threads(1)  # after MatrixState shares the cores out: drift records are made on one thread
    cell = Cell(key, "explicit_class", "default", "forward")
    run_cell(state, cell)  # loads the model once; the timed runs reuse it, as cells of one group do
    probe = fastest_seconds(lambda: run_cell(state, cell), repeats)

    checkpoint = resolve(entry)
    inputs = InputBuilder(checkpoint.path, entry.modality)
    batches = [inputs.text()] + ([inputs.image_text()] if entry.modality == "image-text" else [])
    model = load_model(str(checkpoint.path), "explicit_class", torch_dtype=torch.float32).model.eval()

    def passes(traced: bool) -> None:
        with torch.no_grad():
            for batch in batches:
                if traced:
                    with ModuleTrace(model):
                        model(**batch)
                else:
                    model(**batch)

    # interleaved, so a busy spell of a shared machine slows both alike
    bare, traced = math.inf, math.inf
    for _ in range(repeats):
        bare = min(bare, fastest_seconds(lambda: passes(False), 1))
        traced = min(traced, fastest_seconds(lambda: passes(True), 1))
    return {"forward_probe_s": probe, "passes_s": bare, "traced_s": traced,
            "hooks_share_of_probe": (traced - bare) / probe}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["llama", "qwen2_vl", "qwen2_5_vl"])
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    import transformers

    print(f"transformers {transformers.__version__}; least CPU time of {args.repeats} runs, one thread")
    print(f"{'model':<12} {'forward probe s':>16} {'passes s':>10} {'with hooks s':>13} {'hooks / probe':>14}")
    for key in args.models:
        row = measure(key, args.repeats)
        print(f"{key:<12} {row['forward_probe_s']:>16.4f} {row['passes_s']:>10.4f} {row['traced_s']:>13.4f} "
              f"{row['hooks_share_of_probe']:>14.1%}")


if __name__ == "__main__":
    main()
