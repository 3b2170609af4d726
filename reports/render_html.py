"""`index.html`: the first screen (headline, causes, one sentence per model) and the grid's
frame, with inline CSS and JS and no network; each model's cells come from its file beside the
page (`reports/cell_data.py`), loaded when the reader opens that model.

Jinja2 autoescapes every value, so text from exceptions and model configs always renders as
text; the script builds cells from their files with textContent, never parsing markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from jinja2 import Environment, StrictUndefined, Template
from markupsafe import Markup

from reports.cell_data import causes_by_cell, cell_file
from reports.grid import GridCell, ModelGroup, build_grid
from reports.history import HISTORY_RELEASES, timelines
from reports.md_causes import SECTIONS, was
from reports.overview import counts, model_sentences
from reports.report import Cell, Report
from reports.status import STATUS_ORDER, SYMBOL, rank
from reports.text import brief


MAX_CELL_LINKS = 60
"""A cause lists links to this many of its cells on the page; report.json has them all."""
MAX_CHANGE_ROWS = 200
"""The regression and fix tables list this many cells on the page; report.json has them all."""

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
    """The page for `report`; its cells are in `cell_files(report)`, written beside it."""
    grid = build_grid(report)
    cells = {f"{c.transformers}/{c.cell_id}": c for c in report.cells}
    causes = causes_by_cell(report)

    def first_cause(cell: GridCell) -> str | None:
        """The cause a route's failing cell links to: its worst probe's (the one the cell shows)."""
        worst_first = sorted(cell.probes, key=lambda p: -rank(p.status))
        return next((causes[p.key][0] for p in worst_first if p.key in causes), None)
    return _template().render(
        report=report,
        counts=counts(report),
        sentences=model_sentences(report),
        kinds=[(kind, heading) for kind, heading, _ in SECTIONS],
        cell_total=lambda causes: sum(len(c.cells) for c in causes),
        max_links=MAX_CELL_LINKS,
        max_changes=MAX_CHANGE_ROWS,
        link_of=lambda key: row_anchor(cells[key]) if key in cells else "",
        was=was,
        brief=brief,
        grid=grid,
        groups={g.model: g for g in grid.groups},
        first_cause=first_cause,
        tally=tally,
        cell_file=cell_file,
        statuses=STATUS_ORDER,
        symbol=SYMBOL,
        strategies=sorted({row.strategy for g in grid.groups for row in g.rows}),
        trend=trend_bars(report),
        history=timelines(report) if len(report.releases) >= HISTORY_RELEASES else [],
        css=Markup(_asset("report.css")),
        js=Markup(_asset("report.js")),
    )


def tally(group: ModelGroup) -> list[tuple[str, int]]:
    """How many of a model's grid cells (route x release) end in each status, worst first: what a
    folded model shows."""
    found: dict[str, int] = {}
    for row in group.rows:
        for cell in row.cells.values():
            found[cell.worst] = found.get(cell.worst, 0) + 1
    return [(status, found[status]) for status in reversed(STATUS_ORDER) if status in found]


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
