"""Benchmark the tiny matrix in the installed release: seconds per probe and per cell, and the
harness overhead (a whole pytest run against the sum of the bare probe times), in one run.

Bare: every cell through `run_cell` in a fresh process without pytest, timed after the imports
(checkpoints built beforehand, as a second run finds them). The pytest run pays the imports too,
so the ratio is given with and without them (`import_s`, a fresh process importing the same).

    .tox/tf4_57_6/bin/python bench/bench_matrix.py [--models llama qwen2_5_vl] [--workers 2]

Prints ratios and medians; nothing here asserts a time (timings belong in reports, not tests).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compat_matrix.spec.cells import Cell
    from compat_tests.execute import MatrixState

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _cells_and_state(models: list[str] | None) -> tuple[list[Cell], MatrixState]:
    """The tiny cells (or those of `models`) and a fresh per-process state to run them in."""
    from compat_matrix.spec.cells import select_cells
    from compat_matrix.spec.validate import load_matrix
    from compat_tests.execute import MatrixState

    matrix = load_matrix(check_model_types=False)
    keys = models or [m.key for m in matrix.models if m.source == "tiny"]
    return select_cells(matrix, keys), MatrixState(matrix)


def warm_cache(models: list[str] | None) -> None:
    """Build every checkpoint into the on-disk cache first: builds happen once per release, not per run."""
    cells, state = _cells_and_state(models)
    for key in dict.fromkeys(cell.model for cell in cells):
        try:
            state.checkpoints.prepare(state.matrix.model(key))
        except Exception:
            pass


def bare_run(models: list[str] | None, out: Path) -> None:
    """In a fresh process, after the imports: every cell through `run_cell`, no pytest. Each model's
    first cell reads its checkpoint (config, tokenizer, processor), as it does under pytest."""
    from compat_tests.execute import run_cell

    cells, state = _cells_and_state(models)
    start = time.perf_counter()
    records = [run_cell(state, cell) for cell in cells]
    out.write_text(json.dumps({"records": records, "wall": time.perf_counter() - start}))


def bare(models: list[str] | None) -> tuple[list[dict], float]:
    """`bare_run` in a fresh process (the same imports and first reads as a pytest run); records, wall."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "bare.json"
        command = [sys.executable, __file__, "--bare-out", str(out)] + (["--models", *models] if models else [])
        subprocess.run(command, cwd=REPO, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        found = json.loads(out.read_text())
    return found["records"], found["wall"]


def pytest_wall(models: list[str] | None, workers: int) -> float:
    """Wall time of the real pytest run (fresh process: imports and collection included)."""
    with tempfile.TemporaryDirectory() as results:
        command = [sys.executable, "-m", "pytest", "compat_tests", "-q", "-p", "no:cacheprovider",
                   "--cm-results", results, "-n", str(workers), "--dist", "load"]
        if models:
            command += ["--cm-models", ",".join(models)]
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        return time.perf_counter() - start


def import_wall() -> float:
    """Seconds a fresh process needs to import what every matrix run imports (torch, transformers,
    the harness): paid once by pytest, not counted in the bare probe sum."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, transformers, compat_tests.execute"], cwd=REPO, check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", help="model keys (default: every tiny model)")
    parser.add_argument("--workers", type=int, default=2, help="xdist workers for the parallel run")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--bare-out", type=Path, help=argparse.SUPPRESS)  # internal: the fresh process of `bare`
    args = parser.parse_args()
    if args.bare_out:
        bare_run(args.models, args.bare_out)
        return

    import torch
    import transformers

    warm_cache(args.models)
    records, bare_wall = bare(args.models)
    by_probe: dict[str, list[float]] = defaultdict(list)
    by_cell_group: dict[tuple, float] = defaultdict(float)
    passed_in_group: dict[tuple, dict[str, float]] = defaultdict(dict)
    for record in records:
        if record["status"] == "pass":
            group = (record["model"], record["strategy"], record["load_kwargs"])
            by_probe[record["probe"]].append(record["duration_s"])
            by_cell_group[group] += record["duration_s"]
            passed_in_group[group][record["probe"]] = record["duration_s"]
    bare_sum = sum(r["duration_s"] for r in records)
    serial = pytest_wall(args.models, 0)
    imports = import_wall()
    parallel = pytest_wall(args.models, args.workers)
    load_forward = [p["load"] + p["forward"] for p in passed_in_group.values() if "load" in p and "forward" in p]
    numbers = {
        "transformers": transformers.__version__, "torch": torch.__version__, "cores": os.cpu_count(),
        "cells": len(records), "passed": sum(r["status"] == "pass" for r in records),
        "median_s_per_probe": {p: round(statistics.median(v), 4) for p, v in by_probe.items()},
        "median_s_load_plus_forward": round(statistics.median(load_forward), 4) if load_forward else None,
        "median_s_per_model_strategy_all_probes": round(statistics.median(by_cell_group.values()), 4),
        "bare_probe_sum_s": round(bare_sum, 2), "bare_wall_s": round(bare_wall, 2),
        "pytest_serial_wall_s": round(serial, 2), f"pytest_n{args.workers}_wall_s": round(parallel, 2),
        "overhead_ratio_serial": round(serial / bare_sum, 3),
        "import_s": round(imports, 2),
        "overhead_ratio_serial_after_imports": round((serial - imports) / bare_sum, 3),
        f"speedup_n{args.workers}": round(serial / parallel, 3),
    }
    for key, value in numbers.items():
        print(f"{key:40} {value}")
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
