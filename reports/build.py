"""Results files (plus an optional baseline and history) to one `Report`: load, merge, compare."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from reports.causes import find_causes
from reports.load import load_results
from reports.merge import merge
from reports.regressions import find_changes
from reports.rejudge import Expectations, rejudge
from reports.report import BaselineInfo, Problem, Report, TrendPoint
from reports.results import RESULTS_SCHEMA_VERSION, parse_timestamp
from reports.version import generator


def build_report(
    results: Iterable[str | Path],
    baseline: Path | None = None,
    history: Path | None = None,
    expectations: Expectations | None = None,
) -> Report:
    """Merge `results` into a report; ValueError when the baseline cannot be read (it was asked for).

    With `expectations` (a matrix file's, `compat_matrix.judge.expectations`), cells are judged against them,
    not against the ones recorded when they ran."""
    loaded = load_results(results)
    merged = merge(loaded.cells)
    cells, judge_problems = rejudge(merged.cells, expectations) if expectations else (list(merged.cells), [])
    base = Report.read(baseline) if baseline else None
    changes = find_changes(cells, base)
    trend, history_problems = read_history(history) if history else ([], [])
    return Report(
        results_schema_version=RESULTS_SCHEMA_VERSION,
        generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        generator=generator(),
        releases=tuple(merged.releases),
        cells=tuple(cells),
        regressions=tuple(changes.regressions),
        fixes=tuple(changes.fixes),
        causes=tuple(find_causes(cells, changes.regressions, changes.fixes, [r.transformers for r in merged.releases])),
        problems=tuple(loaded.problems + merged.duplicates + judge_problems + history_problems),
        baseline=(
            BaselineInfo(path=str(baseline), generated_at=base.generated_at, missing_cells=tuple(changes.missing_from_baseline))
            if base and baseline
            else None
        ),
        trend=tuple(trend),
    )


def read_history(folder: Path) -> tuple[list[TrendPoint], list[Problem]]:
    """Summarise every earlier `*.json` report under `folder`, oldest first; unreadable ones are problems."""
    points: list[TrendPoint] = []
    problems: list[Problem] = []
    if not folder.is_dir():
        return points, [Problem(kind="missing_path", file=str(folder), message="--history is not a folder")]
    for path in sorted(folder.rglob("*.json")):
        try:
            old = Report.read(path)
        except ValueError as exc:
            problems.append(Problem(kind="bad_history", file=str(path), message=str(exc)))
            continue
        counts: dict[str, int] = {}
        for cell in old.cells:
            counts[cell.status] = counts.get(cell.status, 0) + 1
        points.append(
            TrendPoint(
                generated_at=old.generated_at,
                file=str(path),
                cells=len(old.cells),
                counts=counts,
                regressions=len(old.regressions),
                fixes=len(old.fixes),
            )
        )
    points.sort(key=lambda p: parse_timestamp(p.generated_at))
    return points, problems
