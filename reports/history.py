"""The history: for each model x route (strategy and load profile), the releases where its
as-published cells pass, and at each change between two neighbouring releases, what changed and why.

A route passes in a release when every probe of it passes there (the probes every release of the
route has: one that a release lacks is left out of the route's timeline). A boundary is exact when the two
releases are neighbours on the package index (the report's release set was expanded from a
specifier, so every final release between them is in it); else the releases between are untested.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from reports.merge import version_key
from reports.report import Cell, Report
from reports.status import EMOJI, worst
from reports.text import md_inline


HISTORY_RELEASES = 3
"""Reports over fewer releases have no history section: two are `check`'s question, which says more."""


@dataclass(frozen=True)
class Boundary:
    """Where a route's outcome changes: the last release with one outcome and the first with the next."""

    before: str
    after: str
    was: str
    now: str
    exact: bool
    why: str
    """The cause on the failing side (its title), else the first changed cell's message."""
    cells: tuple[str, ...]
    """`release/cell_id` of the cells whose status changed, failing side."""


@dataclass(frozen=True)
class Timeline:
    model: str
    routes: tuple[str, ...]
    """`strategy · profile` of every route with this very timeline."""
    outcomes: tuple[tuple[str, str], ...]
    """(release, outcome) in release order; outcome: pass, fail, unsupported, skipped, error."""
    boundaries: tuple[Boundary, ...]

    def spans(self) -> list[tuple[str, str, str]]:
        """(outcome, first release, last release) runs."""
        found: list[tuple[str, str, str]] = []
        for release, outcome in self.outcomes:
            if found and found[-1][0] == outcome:
                found[-1] = (outcome, found[-1][1], release)
            else:
                found.append((outcome, release, release))
        return found

    def passing(self) -> list[str]:
        return [r for r, outcome in self.outcomes if outcome == "pass"]


def _outcome(cells: list[Cell]) -> str:
    return worst(c.status for c in cells)


def _neighbours(report: Report) -> set[tuple[str, str]]:
    """Pairs of releases with no final release between them, as far as the report knows: from the
    index's releases over the set's span, else (an older release-set.json) from a set expanded from
    specifiers only (every final release in their ranges is in it)."""
    chosen = report.release_set
    if chosen is None:
        return set()
    if chosen.index_releases:
        expanded = sorted(chosen.index_releases, key=version_key)
    elif chosen.requested and all(item.strip().startswith(("<", ">", "=", "!", "~")) for item in chosen.requested):
        expanded = sorted(chosen.releases, key=version_key)
    else:
        return set()
    return set(zip(expanded, expanded[1:]))


def timelines(report: Report) -> list[Timeline]:
    """One timeline per model and distinct sequence of outcomes, routes sharing one merged."""
    releases = [r.transformers for r in report.releases]
    cause_of = {key: cause.title for cause in report.causes for key in cause.cells}
    neighbours = _neighbours(report)
    routes: dict[tuple[str, str], dict[str, list[Cell]]] = defaultdict(lambda: defaultdict(list))
    for cell in report.cells:
        if cell.as_published:
            routes[(cell.model, f"{cell.strategy} · {cell.load_kwargs}")][cell.transformers].append(cell)
    merged: dict[tuple[str, tuple[tuple[str, str], ...], tuple[Boundary, ...]], list[str]] = defaultdict(list)
    for (model, route), found_in in routes.items():
        # the probes every release of the route has: a release that lacks one (stored in part, a
        # cell the store never keeps) would otherwise make a boundary that no cell shows
        common = set.intersection(*({c.grid_id for c in cells} for cells in found_in.values()))
        by_release = {r: [c for c in cells if c.grid_id in common] for r, cells in found_in.items()}
        present = [r for r in releases if by_release.get(r)]
        outcomes = tuple((r, _outcome(by_release[r])) for r in present)
        bounds = tuple(_boundary(a, b, by_release, cause_of, neighbours)
                       for (a, was), (b, now) in zip(outcomes, outcomes[1:]) if was != now)
        merged[(model, outcomes, bounds)].append(route)
    found = [Timeline(model, tuple(sorted(names)), outcomes, bounds) for (model, outcomes, bounds), names in merged.items()]
    return sorted(found, key=lambda t: (t.model, t.routes))


def _boundary(before: str, after: str, by_release: dict[str, list[Cell]], cause_of: dict[str, str],
              neighbours: set[tuple[str, str]]) -> Boundary:
    old = {c.grid_id: c for c in by_release[before]}
    new = {c.grid_id: c for c in by_release[after]}
    changed = [(old[i], new[i]) for i in old.keys() & new.keys() if old[i].status != new[i].status]
    changed.sort(key=lambda pair: pair[0].cell_id)
    failing = [b if b.status != "pass" else a for a, b in changed]
    keys = tuple(f"{c.transformers}/{c.cell_id}" for c in failing)
    why = next((cause_of[k] for k in keys if k in cause_of), "")
    if not why and failing:
        why = f"{failing[0].probe}: {failing[0].status}: {failing[0].message.strip().splitlines()[0] if failing[0].message.strip() else ''}"
    return Boundary(before, after, _outcome(by_release[before]), _outcome(by_release[after]),
                    (before, after) in neighbours, why, keys)


def _span_text(spans: Sequence[tuple[str, str, str]]) -> str:
    return " · ".join(f"{EMOJI.get(o, o)} {a}" + (f"–{b}" if b != a else "") for o, a, b in spans)


def history_markdown(report: Report, cells_shown: int = 3, min_releases: int = HISTORY_RELEASES) -> list[str]:
    """The history section of report.md: one row per timeline, then each boundary with its cause and cells."""
    if len(report.releases) < min_releases:
        return []
    found = timelines(report)
    lines = ["", "## History", "",
             f"Each route's as-published cells over the {len(report.releases)} releases of this report "
             "(✅ every probe passes). Routes with the same timeline share a row.", "",
             "| model | routes | releases |", "| --- | --- | --- |"]
    for t in found:
        lines.append(f"| {md_inline(t.model, 40)} | {md_inline(', '.join(t.routes), 400)} | {_span_text(t.spans())} |")
    bounds = [(t, b) for t in found for b in t.boundaries]
    if bounds:
        lines += ["", "Boundaries (exact: no final release between the two; else bisect between them):", ""]
        for t, b in bounds:
            exact = "exact" if b.exact else "not adjacent on the index"
            shown = ", ".join(f"`{k}`" for k in b.cells[:cells_shown]) + (f" +{len(b.cells) - cells_shown}"
                                                                          if len(b.cells) > cells_shown else "")
            lines.append(f"- **{md_inline(t.model, 40)}** {md_inline(', '.join(t.routes), 200)}: {b.before} "
                         f"{EMOJI.get(b.was, b.was)} → {b.after} {EMOJI.get(b.now, b.now)} ({exact}): "
                         f"{md_inline(b.why, 300)}; cells {shown}")
    return lines
