"""`index.html`: one self-contained page (inline CSS and JS, no network) to browse a report.

Jinja2 autoescapes every value, so text from exceptions and model configs always renders as
text; each cell's details sit in an inert `<template>` that the script clones, never parses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from jinja2 import Environment, StrictUndefined, Template
from markupsafe import Markup

from reports.grid import GridCell, build_grid
from reports.md_causes import SECTIONS, was
from reports.overview import counts, model_sentences
from reports.report import Cell, Report
from reports.status import STATUS_ORDER, SYMBOL
from reports.text import brief


MAX_CELL_LINKS = 60
"""A cause lists links to this many of its cells on the page; report.json has them all."""

def row_anchor(cell: Cell) -> str:
    """The page's stable link target for a cell's row: `model/strategy/profile`, or `model/cross`
    for a checkpoint another release saved. The same from one nightly to the next."""
    if not cell.as_published:
        return f"{cell.model}/cross"
    return f"{cell.model}/{cell.strategy}/{cell.load_kwargs}"


@dataclass(frozen=True)
class TrendBar:
    """One report in the trend strip: when, how many cells, and each status's share in percent."""

    when: str
    cells: int
    regressions: int
    shares: tuple[tuple[str, float], ...]


def render_html(report: Report) -> str:
    """The whole page for `report`."""
    grid = build_grid(report)
    ids: dict[int, str] = {}

    def detail_id(cell: GridCell) -> str:
        return ids.setdefault(id(cell), f"d{len(ids)}")

    causes_by_cell: dict[tuple[str, str], list[str]] = {}
    for cause in report.causes:
        for key in cause.cells:
            version, cell_id = key.split("/", 1)
            causes_by_cell.setdefault((version, cell_id), []).append(cause.id)
    cells = {f"{c.transformers}/{c.cell_id}": c for c in report.cells}

    def causes_of(cell: GridCell) -> list[str]:
        return sorted({cid for p in cell.probes for cid in causes_by_cell.get(p.key, [])})

    return _template().render(
        report=report,
        counts=counts(report),
        sentences=model_sentences(report),
        kinds=[(kind, heading) for kind, heading, _ in SECTIONS],
        cell_total=lambda causes: sum(len(c.cells) for c in causes),
        max_links=MAX_CELL_LINKS,
        link_of=lambda key: row_anchor(cells[key]) if key in cells else "",
        causes_of=causes_of,
        causes_of_probe=lambda p: causes_by_cell.get(p.key, []),
        was=was,
        brief=brief,
        grid=grid,
        statuses=STATUS_ORDER,
        symbol=SYMBOL,
        detail_id=detail_id,
        strategies=sorted({row.strategy for g in grid.groups for row in g.rows}),
        trend=trend_bars(report),
        as_json=lambda value: json.dumps(value, indent=1, sort_keys=True, default=str),
        css=Markup(_asset("report.css")),
        js=Markup(_asset("report.js")),
    )


def trend_bars(report: Report) -> list[TrendBar]:
    """The history of `--history` plus this report, oldest first; empty without a history."""
    if not report.trend:
        return []
    now: dict[str, int] = {s: sum(r.counts.get(s, 0) for r in report.releases) for s in STATUS_ORDER}
    points = [(p.generated_at, p.cells, p.counts, p.regressions) for p in report.trend]
    points.append((report.generated_at, len(report.cells), now, len(report.regressions)))
    return [
        TrendBar(
            when=when,
            cells=cells,
            regressions=regressions,
            shares=tuple((s, round(100 * counts[s] / cells, 1)) for s in STATUS_ORDER if counts.get(s)),
        )
        for when, cells, counts, regressions in points
    ]


@lru_cache(maxsize=1)
def _template() -> Template:
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.from_string(_asset("index_template.html"))


def _asset(name: str) -> str:
    """Template, CSS and JS ship next to this module (package data: *.html, *.css, *.js)."""
    return resources.files("reports").joinpath(name).read_text(encoding="utf-8")
