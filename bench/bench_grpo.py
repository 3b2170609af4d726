"""Our `grpo_step` against TRL's GRPOTrainer (`trl_grpo`) on the same tiny checkpoint, in one process
and one run: medians of each and their ratio.

Each repeat is a whole cell through `run_cell` (the model loaded by the strategy, the probe, its
checks); `trl_grpo`'s import of trl is paid once, before the timed repeats, as a run pays it once
per worker. Prints medians and ratios; nothing here asserts a time.

    .tox/tf4_57_6/bin/python bench/bench_grpo.py [--model llama] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def timed_cells(model: str, probe: str, repeats: int) -> list[dict[str, Any]]:
    """`repeats` runs of one (model, smart, default, probe) cell, after one untimed warm-up run."""
    from compat_matrix.cells import Cell
    from compat_matrix.validate import load_matrix
    from compat_tests.execute import MatrixState, run_cell

    state = MatrixState(load_matrix(check_model_types=False))
    cell = Cell(model, "smart", "default", probe)
    run_cell(state, cell)  # builds or reads the checkpoint, imports trl
    records = [run_cell(state, cell) for _ in range(repeats)]
    failed = [r["message"] for r in records if r["status"] != "pass"]
    if failed:
        raise SystemExit(f"{probe} on {model} did not pass: {failed[0]}")
    return records


def median(records: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r["details"][key] if key in r["details"] else r[key] for r in records), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama", help="a tiny text model key (default: llama)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    ours = timed_cells(args.model, "grpo_step", args.repeats)
    trl = timed_cells(args.model, "trl_grpo", args.repeats)
    numbers = {
        "model": args.model, "repeats": args.repeats,
        "transformers": ours[0]["transformers"], "trl": trl[0]["details"]["trl"],
        "grpo_step_cell_s": median(ours, "duration_s"),
        "grpo_step_probe_s": median(ours, "time_s"),
        "trl_grpo_cell_s": median(trl, "duration_s"),
        "trl_grpo_init_s": median(trl, "init_s"),
        "trl_grpo_step_s": median(trl, "step_s"),
    }
    numbers["ratio_grpo_step_cell_to_trl_step"] = round(numbers["grpo_step_cell_s"] / numbers["trl_grpo_step_s"], 3)
    numbers["ratio_grpo_step_cell_to_trl_cell"] = round(numbers["grpo_step_cell_s"] / numbers["trl_grpo_cell_s"], 3)
    text = json.dumps(numbers, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
