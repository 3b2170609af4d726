"""Regressions and fixes: each cell against its `matrix.yaml` expectation and against a baseline report.

A regression breaks the expectation, or passed in the baseline and does not now; a fix is the
reverse. A `skipped` cell did not run, so it says nothing against an expectation; against a
baseline where it passed it is still a regression (the matrix lost coverage), unless it needs a
package the environment lacks (`details.needs`): that is a dependency change, not a regression.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reports.report import Against, Cell, Change, ChangeKind, Report
from reports.status import meets_expectation

NOT_PASSING_RAN = frozenset({"fail", "error", "unsupported"})
"""Baseline statuses that make a pass now a fix (skipped did not run, so passing now fixes nothing)."""


@dataclass
class Changes:
    """Regressions, fixes, and the baseline cells this report lacks."""

    regressions: list[Change]
    fixes: list[Change]
    missing_from_baseline: list[str]


def find_changes(cells: Sequence[Cell], baseline: Report | None = None) -> Changes:
    """Compare every cell with its expectation and, when given, with the same cell in `baseline`."""
    before = {cell.key: cell.status for cell in baseline.cells} if baseline else {}
    regressions: list[Change] = []
    fixes: list[Change] = []
    for cell in cells:
        verdicts: dict[Against, ChangeKind | None] = {
            "expectation": _against_expectation(cell),
            "baseline": _against_baseline(cell, before.get(cell.key)),
        }
        kind = verdicts["expectation"] or verdicts["baseline"]
        if kind is not None:
            against = tuple(name for name, verdict in verdicts.items() if verdict == kind)
            (regressions if kind == "regression" else fixes).append(_change(cell, kind, against, before.get(cell.key)))
    seen = {cell.key for cell in cells}
    missing = [f"{version}/{cell_id}" for version, cell_id in before if (version, cell_id) not in seen]
    return Changes(regressions=regressions, fixes=fixes, missing_from_baseline=missing)


def _against_expectation(cell: Cell) -> ChangeKind | None:
    expected = cell.expected.status if cell.expected else None
    if cell.status == "skipped" or meets_expectation(cell.status, expected):
        return None
    return "fix" if cell.status == "pass" else "regression"


def _against_baseline(cell: Cell, baseline_status: str | None) -> ChangeKind | None:
    if cell.needs:  # a package the environment lacks: a dependency change, not a regression (reports/dependencies.py)
        return None
    if baseline_status == "pass" and cell.status != "pass":
        return "regression"
    if baseline_status in NOT_PASSING_RAN and cell.status == "pass":
        return "fix"
    return None


def _change(cell: Cell, kind: ChangeKind, against: tuple[Against, ...], baseline_status: str | None) -> Change:
    if "baseline" in against:
        before = baseline_status or ""
    else:
        before = cell.expected.status if cell.expected else "pass"
    return Change(
        kind=kind,
        against=against,
        transformers=cell.transformers,
        cell_id=cell.cell_id,
        model=cell.model,
        strategy=cell.strategy,
        load_kwargs=cell.load_kwargs,
        probe=cell.probe,
        saved_by=cell.saved_by,
        before=before,
        now=cell.status,
        expected=cell.expected,
        baseline_status=baseline_status,
        error_type=cell.error_type,
        message=cell.message,
    )
