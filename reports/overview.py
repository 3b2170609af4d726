"""The top of the report: one sentence per model (how to load and train it in each release, what
changes from the oldest to the newest release tested) and the counts a person reads first.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

from reports.check_view import by_cause
from reports.diff import UpgradeView, compare_releases
from reports.release_ranges import describe
from reports.report import Cell, Report

CAUSES_NAMED = 2
"""An upgrade sentence names this many causes per direction, then counts the rest."""

TITLE_CHARS = 90
"""Cause titles are cut to this many characters inside a sentence."""


@dataclass(frozen=True)
class Counts:
    """The headline numbers."""

    regressions: int
    """Causes of kind regression (distinct breaks that no expectation records)."""
    regression_cells: int
    dependencies: int
    """Causes of kind dependency (a release from which cells need a package the environment lacks)."""
    expected: int
    """Causes of expected failures."""
    silent: int
    fixes: int
    cells: int


def counts(report: Report) -> Counts:
    kinds: dict[str, int] = defaultdict(int)
    for cause in report.causes:
        kinds[cause.kind] += 1
    return Counts(
        regressions=kinds["regression"],
        regression_cells=len(report.regressions),
        dependencies=kinds["dependency"],
        expected=kinds["expected"],
        silent=kinds["silent"],
        fixes=kinds["fix"],
        cells=len(report.cells),
    )


def model_sentences(report: Report) -> list[tuple[str, str]]:
    """(model, sentence) per model, in model order; plain text (renderers escape it)."""
    releases = [r.transformers for r in report.releases]
    by_model: dict[str, list[Cell]] = defaultdict(list)
    for cell in report.cells:
        if cell.as_published:
            by_model[cell.model].append(cell)
    view = compare_releases(report, releases[0], releases[-1]) if len(releases) > 1 else None
    return [(model, _sentence(model, by_model[model], releases, view)) for model in sorted(by_model)]


def passing_routes(cells: list[Cell]) -> list[str]:
    """Strategies whose every probe that ran passes, in every profile (else named with the profiles
    that do); a probe `skipped` here (a package this machine lacks) neither passes nor fails a route."""
    statuses: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for cell in cells:
        statuses[cell.strategy][cell.load_kwargs].add(cell.status)
    named = []
    for strategy, profiles in sorted(statuses.items()):
        passing = sorted(p for p, seen in profiles.items() if "pass" in seen and seen <= {"pass", "skipped"})
        if passing:
            named.append(strategy if len(passing) == len(profiles) else f"{strategy} ({', '.join(passing)})")
    return named


def _verdict(cells: list[Cell]) -> str:
    routes = passing_routes(cells)
    if routes:
        chosen = {route.split(" ")[0] for route in routes}
        skipped = sorted({c.probe for c in cells if c.strategy in chosen and c.status == "skipped"})
        return (", ".join(routes) + (" passes" if len(routes) == 1 else " pass") + " every probe"
                + (f" that ran ({', '.join(skipped)} not run here)" if skipped else ""))
    if all(c.status in ("skipped", "unsupported") for c in cells):
        return "not run here (" + ("skipped" if any(c.status == "skipped" for c in cells) else "unsupported") + ")"
    return "no route passes every probe"


def _sentence(model: str, cells: list[Cell], releases: list[str], view: UpgradeView | None) -> str:
    per_release: dict[str, list[Cell]] = defaultdict(list)
    for cell in cells:
        per_release[cell.transformers].append(cell)
    same: dict[str, list[str]] = defaultdict(list)
    for release in releases:
        if per_release.get(release):
            same[_verdict(per_release[release])].append(release)
    text = f"{model}: " + "; ".join(f"{describe(found, releases)}: {verdict}" for verdict, found in same.items()) + "."
    if view is not None:
        text += " " + upgrade_sentence(_only(view, model))
    return text


def upgrade_sentence(view: UpgradeView) -> str:
    """"Upgrading A -> B: 1 break (...), 2 silent changes (...), no fix." (causes, not cells)."""
    sections = {s.label: s for s in by_cause(view)}
    said = []
    for label, noun in (("breaks", "break"), ("silent changes", "silent change"), ("fixes", "fix")):
        section = sections.get(label)
        if section is None:
            said.append(f"no {noun}")
            continue
        named = "; ".join(_cut(c.title) for c in section.causes[:CAUSES_NAMED])
        more = len(section.causes) - CAUSES_NAMED
        plural = noun if len(section.causes) == 1 else ("fixes" if noun == "fix" else noun + "s")
        said.append(f"{len(section.causes)} {plural} ({named}{f'; {more} more' if more > 0 else ''})")
    return f"Upgrading {view.from_release} -> {view.to_release}: " + ", ".join(said) + "."


def _cut(title: str) -> str:
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1] + "…"


def _only(view: UpgradeView, model: str) -> UpgradeView:
    """The upgrade view of one model."""
    return replace(
        view,
        breaks=tuple(c for c in view.breaks if c.after.model == model),
        fixes=tuple(c for c in view.fixes if c.after.model == model),
        silent=tuple(s for s in view.silent if s.cell.model == model),
        surface_losses=tuple(loss for loss in view.surface_losses if loss.cell.model == model),
        not_comparable=tuple(c for c in view.not_comparable if c.after.model == model),
        old_checkpoints=tuple(c for c in view.old_checkpoints if c.model == model),
        new_checkpoints=tuple(c for c in view.new_checkpoints if c.model == model),
    )
