"""Whether two `check` (or `run`) output folders hold the same outcomes: every result line's status,
error type and expectation by (results file, cell id), and every drift record's status by (release,
model). A check answered from the store must say exactly what the check that filled it said.

    .venv/bin/python bench/same_statuses.py /tmp/bench-check/cold /tmp/bench-check/from-store
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from compat_matrix.spec.results_io import read_lines  # noqa: E402


def outcomes(out: Path) -> dict[tuple[str, str], tuple[Any, ...]]:
    """{(file, cell id or model): what decides the report} of one output folder."""
    found: dict[tuple[str, str], tuple[Any, ...]] = {}
    for path in sorted((out / "results").glob("*.jsonl")):
        for line in read_lines(path):
            expected = (line.get("expected") or {}).get("status")
            found[(path.stem, str(line.get("cell_id")))] = (line.get("status"), line.get("error_type"), expected)
    for path in sorted((out / "drift").glob("*.json")):
        for model, record in json.loads(path.read_text(encoding="utf-8")).items():
            found[(f"drift/{path.stem}", model)] = (record.get("status"),)
    return found


def compare(first: Path, second: Path) -> list[str]:
    """The differences, one line each (empty: the same outcomes)."""
    a, b = outcomes(first), outcomes(second)
    lines = [f"only in {first}: {k}" for k in sorted(a.keys() - b.keys())]
    lines += [f"only in {second}: {k}" for k in sorted(b.keys() - a.keys())]
    lines += [f"{k}: {a[k]} != {b[k]}" for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args()
    differences = compare(args.first, args.second)
    print("\n".join(differences[:50]))
    print(f"{len(outcomes(args.first))} outcomes compared: {len(differences)} differ")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
