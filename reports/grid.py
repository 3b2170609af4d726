"""The grid both renderers draw: rows model x strategy x load profile, grouped by model, one
column per release, each cell the worst of its probes; plus a saved-by x loaded-by grid per
model for cross-release cells.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from reports.merge import version_key
from reports.report import Cell, Report
from reports.status import FAILING, meets_expectation, rank, worst


@dataclass(frozen=True)
class GridCell:
    """The probes of one row in one release (or one saved-by/loaded-by pair), summarised."""

    probes: tuple[Cell, ...]
    worst: str
    expected_failure: bool
    """The worst status fails, and every failing probe meets a failing expectation of matrix.yaml."""
    regression: bool
    fix: bool


@dataclass(frozen=True)
class Row:
    """One model x strategy x load profile, with a cell per release that ran it."""

    model: str
    strategy: str
    load_kwargs: str
    cells: dict[str, GridCell]


@dataclass(frozen=True)
class CrossGrid:
    """Fine-tuned checkpoints of one model: rows are the release that saved, columns the one that
    loaded; the diagonal is the round trip (saved and reloaded by the same release), the rest are
    cross-release cells."""

    saved_by: tuple[str, ...]
    loaded_by: tuple[str, ...]
    cells: dict[tuple[str, str], GridCell]


@dataclass(frozen=True)
class ModelGroup:
    """All rows of one model."""

    model: str
    hub_id: str
    modality: str
    rows: tuple[Row, ...]
    """The main grid: the as-published checkpoint (a tiny model's as `written_by` wrote it)."""
    cross: CrossGrid | None
    written_by: str | None = None
    """The release that wrote the as-published checkpoint, where another release loaded it."""


@dataclass(frozen=True)
class Grid:
    """Every model group, and the releases (columns) in version order."""

    releases: tuple[str, ...]
    groups: tuple[ModelGroup, ...]


def build_grid(report: Report) -> Grid:
    """Group the report's cells (already in grid order) into rows and cells."""
    flagged = _Flags(
        regressions=frozenset((c.transformers, c.cell_id) for c in report.regressions),
        fixes=frozenset((c.transformers, c.cell_id) for c in report.fixes),
    )
    by_model: dict[str, list[Cell]] = {}
    for cell in report.cells:
        by_model.setdefault(cell.model, []).append(cell)
    return Grid(
        releases=tuple(r.transformers for r in report.releases),
        groups=tuple(_group(model, by_model[model], flagged) for model in sorted(by_model)),
    )


@dataclass(frozen=True)
class _Flags:
    """Which (release, cell id) pairs are regressions or fixes, to mark the grid cells holding them."""

    regressions: frozenset[tuple[str, str]]
    fixes: frozenset[tuple[str, str]]

    def summarise(self, probes: list[Cell]) -> GridCell:
        failing = [p for p in probes if p.status in FAILING]
        return GridCell(
            probes=tuple(probes),
            worst=worst(p.status for p in probes),
            expected_failure=bool(failing)
            and all(p.expected is not None and meets_expectation(p.status, p.expected.status) for p in failing),
            regression=any(p.key in self.regressions for p in probes),
            fix=any(p.key in self.fixes for p in probes),
        )


def _best_route(probes: list[Cell], flags: _Flags) -> GridCell:
    """A saved-by x loaded-by cell: the best working loading route (strategy, profile), else the worst
    of all; every route's probes stay in the cell for its details. Headless AutoModel failing
    everywhere must not hide that the checkpoint loads fine through the class that fits."""
    routes: dict[tuple[str, str], list[Cell]] = {}
    for probe in probes:
        routes.setdefault((probe.strategy, probe.load_kwargs), []).append(probe)
    working = [cell for cell in map(flags.summarise, routes.values()) if cell.worst in ("pass", "skipped")]
    if not working:  # no route works: the worst of everything (an absent route must not hide a failing one)
        return flags.summarise(probes)
    return replace(min(working, key=lambda cell: rank(cell.worst)), probes=tuple(probes))


def _group(model: str, cells: list[Cell], flags: _Flags) -> ModelGroup:
    rows: dict[tuple[str, str], dict[str, list[Cell]]] = {}
    cross: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        if not cell.as_published:
            cross.setdefault((cell.checkpoint_from, cell.transformers), []).append(cell)
        else:
            rows.setdefault((cell.strategy, cell.load_kwargs), {}).setdefault(cell.transformers, []).append(cell)
    return ModelGroup(
        model=model,
        hub_id=cells[0].hub_id,
        modality=cells[0].modality,
        rows=tuple(
            Row(
                model=model, strategy=strategy, load_kwargs=profile, cells={v: flags.summarise(p) for v, p in per_release.items()}
            )
            for (strategy, profile), per_release in sorted(rows.items())
        ),
        written_by=next((c.saved_by for c in cells if c.as_published and c.saved_by), None),
        cross=(
            CrossGrid(
                saved_by=tuple(sorted({saved for saved, _ in cross}, key=version_key)),
                loaded_by=tuple(sorted({loaded for _, loaded in cross}, key=version_key)),
                cells={pair: _best_route(probes, flags) for pair, probes in cross.items()},
            )
            if cross
            else None
        ),
    )
