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


def sides(record: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int], int] | None:
    """((accounting re-initialised, unused), (transformers missing+mismatched, unexpected), constant), or
    None when the cell has no accounting or no loading report. `constant`: tensors the accounting found
    only by content, one value throughout (an init gives the same): transformers counts them missing,
    and their checkpoint copies unexpected."""
    details = record.get("details") or {}
    weights = details.get("weights")
    if not isinstance(weights, dict) or "missing_count" not in details or record.get("callables", {}).get("strategy"):
        return None
    ours = (weights["reinitialised"]["count"], weights["unused"]["count"] + weights["dropped"]["count"])
    theirs = (details["missing_count"] + details.get("mismatched_count", len(details.get("mismatched_keys", []))),
              details["unexpected_count"])
    return ours, theirs, weights.get("constant", {}).get("count", 0)


def first(weights: dict[str, Any], group: str) -> list[str]:
    return list(weights.get(group, {}).get("first", []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    table: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    disagreements, left_out, shares = [], 0, []
    for record in load_lines(args.folders):
        compared = sides(record)
        if compared is None:
            left_out += 1
            continue
        details = record["details"]
        release = record["transformers"] + (f" <- {record['saved_by']}" if record.get("saved_by") else "")
        row = table[(release, record["model"])]
        (ours, theirs, constant) = compared
        up_to_constant = (ours[0] + constant, ours[1] + constant) == theirs
        row[0 if ours == theirs else 1 if up_to_constant else 2] += 1
        if details.get("load_s"):
            shares.append(details.get("weights_s", 0.0) / details["load_s"])
        if ours != theirs:
            weights = details["weights"]
            disagreements.append(
                f"| {release} | {record['cell_id']} | {ours[0]} reinit, {ours[1]} unused, {constant} constant: "
                f"{', '.join(first(weights, 'reinitialised')[:3] + first(weights, 'unused')[:3])} | "
                f"{theirs[0]} missing, {theirs[1]} unexpected: "
                f"{', '.join((details['missing_keys'] + details['mismatched_keys'])[:3] + details['unexpected_keys'][:3])} |")
    readers: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for (release, _), row in table.items():
        reader = readers[release.split(" <- ")[0] + (" (other writers)" if " <- " in release else "")]
        reader[0] += 1
        for i in range(3):
            reader[i + 1] += row[i]
    lines = ["| release (loading) | models (x writers) | agree | agree up to constant tensors | disagree |", "|---|---|---|---|---|"]
    lines += [f"| {release} | {m} | {a} | {c} | {d} |" for release, (m, a, c, d) in sorted(readers.items())]
    lines += ["", "| release | model | agree | agree up to constant tensors | disagree |", "|---|---|---|---|---|"]
    lines += [f"| {release} | {model} | {a} | {c} | {d} |" for (release, model), (a, c, d) in sorted(table.items())]
    lines += ["", f"cells compared: {sum(map(sum, table.values()))}, agreeing: {sum(row[0] for row in table.values())}, "
                  f"up to constant tensors: {sum(row[1] for row in table.values())}, "
                  f"disagreeing: {sum(row[2] for row in table.values())}, left out (no report or no load): {left_out}"]
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
