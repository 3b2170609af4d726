"""The weight accounting against transformers' own loading report, cell by cell, from a run's
`load` lines: re-initialised parameters (accounting) vs missing + mismatched keys (transformers),
unused checkpoint tensors vs unexpected keys, per release and model; then each disagreement with
both sides' names, and what the accounting cost (its seconds as a share of the load's).

    compat-matrix run --transformers 4.57.6 --probes load --out runs/tf457 -n 1
    python bench/weight_accounting_agreement.py runs/tf457 [runs/tf500 ...] [--markdown table.md]

Cells whose loader reports nothing (user callables) or that did not load are left out and counted.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator


def load_lines(folders: list[Path]) -> Iterator[dict[str, Any]]:
    for folder in folders:
        for file in sorted((folder / "results").glob("*.jsonl")):
            for line in file.read_text().splitlines():
                record = json.loads(line)
                if record.get("probe") == "load":
                    yield record


def sides(record: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """((accounting re-initialised, unused), (transformers missing+mismatched, unexpected)), or None
    when the cell has no accounting or no loading report."""
    details = record.get("details") or {}
    weights = details.get("weights")
    if not isinstance(weights, dict) or "missing_count" not in details or record.get("callables", {}).get("strategy"):
        return None
    ours = (weights["reinitialised"]["count"], weights["unused"]["count"] + weights["dropped"]["count"])
    theirs = (details["missing_count"] + details.get("mismatched_count", len(details.get("mismatched_keys", []))),
              details["unexpected_count"])
    return ours, theirs


def first(weights: dict[str, Any], group: str) -> list[str]:
    return list(weights.get(group, {}).get("first", []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    table: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    disagreements, left_out, shares = [], 0, []
    for record in load_lines(args.folders):
        compared = sides(record)
        if compared is None:
            left_out += 1
            continue
        details = record["details"]
        release = record["transformers"] + (f" <- {record['saved_by']}" if record.get("saved_by") else "")
        row = table[(release, record["model"])]
        row[0 if compared[0] == compared[1] else 1] += 1
        if details.get("load_s"):
            shares.append(details.get("weights_s", 0.0) / details["load_s"])
        if compared[0] != compared[1]:
            weights = details["weights"]
            disagreements.append(
                f"| {release} | {record['cell_id']} | {compared[0][0]} reinit, {compared[0][1]} unused: "
                f"{', '.join(first(weights, 'reinitialised')[:3] + first(weights, 'unused')[:3])} | "
                f"{compared[1][0]} missing, {compared[1][1]} unexpected: "
                f"{', '.join((details['missing_keys'] + details['mismatched_keys'])[:3] + details['unexpected_keys'][:3])} |")
    lines = ["| release | model | agree | disagree |", "|---|---|---|---|"]
    lines += [f"| {release} | {model} | {a} | {d} |" for (release, model), (a, d) in sorted(table.items())]
    lines += ["", f"cells compared: {sum(a + d for a, d in table.values())}, agreeing: {sum(a for a, _ in table.values())}, "
                  f"left out (no report or no load): {left_out}"]
    if shares:
        lines.append(f"accounting seconds / load seconds: median {statistics.median(shares):.2f}, max {max(shares):.2f}")
    if disagreements:
        lines += ["", "| release | cell | accounting | transformers |", "|---|---|---|---|", *disagreements]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
