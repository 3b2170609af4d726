"""A support table for a README or docs page: models x releases, pass / fail / not supported, with
one footnote per distinct reason of failure (`compat-matrix report ... --support-table`): causes
that matrix.yaml explains with the same words share a footnote, which lists where each holds."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from reports.report import Cause, Cell, Report
from reports.text import md_inline

FOOTNOTE_CHARS = 600
"""A footnote is cut to this many characters (report.json keeps every message whole)."""


class UnknownSelection(ValueError):
    """A strategy or profile the report has no cell of (the message lists those it has)."""


def support_table(report: Report, strategy: str | None = None, profile: str = "default") -> str:
    """Markdown: a row per model, a column per release. Without `strategy`, a model passes in a
    release when any strategy passes every probe there (the best route)."""
    cells = [c for c in report.cells if c.as_published]
    _check(cells, strategy, profile)
    releases = [r.transformers for r in report.releases]
    cause_of: dict[tuple[str, str], Cause] = {}
    for cause in report.causes:
        for key in cause.cells:
            version, cell_id = key.split("/", 1)
            cause_of.setdefault((version, cell_id), cause)
    routes: dict[tuple[str, str], dict[str, list[Cell]]] = defaultdict(lambda: defaultdict(list))
    for cell in cells:
        if cell.load_kwargs == profile and (strategy is None or cell.strategy == strategy):
            routes[(cell.model, cell.transformers)][cell.strategy].append(cell)
    notes: dict[str, int] = {}
    texts: dict[str, str] = {}
    where: dict[str, list[str]] = defaultdict(list)  # a reason's footnote -> `scope; releases` of each cause it explains
    lines = ["| model | " + " | ".join(md_inline(v, 40) for v in releases) + " |",
             "| --- | " + " | ".join(":-:" for _ in releases) + " |"]
    for model in sorted({model for model, _ in routes}):
        row = []
        for release in releases:
            probes = _best(routes.get((model, release), {}))
            mark, causes = _mark(probes, cause_of)
            keys = []
            for cause in causes:
                why = _why(cause)
                notes.setdefault(why, len(notes) + 1)
                if (scope := f"{cause.scope}; {cause.release_ranges}") not in where[why]:
                    where[why].append(scope)
                if why not in keys:
                    keys.append(why)
            if mark == "✅" and (skipped := _not_run(probes)):
                notes.setdefault(skipped, len(notes) + 1)
                texts[skipped] = md_inline(skipped, FOOTNOTE_CHARS)
                keys.append(skipped)
            row.append(mark + "".join(f"[^{notes[k]}]" for k in keys))
        lines.append(f"| {md_inline(model, 80)} | " + " | ".join(row) + " |")
    route = f"strategy `{strategy}`" if strategy else "the best strategy (any that passes every probe)"
    lines += ["", f"✅ every probe that ran passes (a footnote names any not run here) · ❌ fails · ➖ not supported · ⏭️ not run here · `·` not tested; "
                  f"{route}, load profile `{profile}`."]
    if notes:
        lines.append("")
        lines += [f"[^{n}]: " + (md_inline(f"{key} ({' · '.join(where[key])})", FOOTNOTE_CHARS) if key in where else texts[key])
                  for key, n in notes.items()]
    return "\n".join(lines) + "\n"


def _check(cells: Sequence[Cell], strategy: str | None, profile: str) -> None:
    strategies = sorted({c.strategy for c in cells})
    profiles = sorted({c.load_kwargs for c in cells})
    if strategy is not None and strategy not in strategies:
        raise UnknownSelection(f"--strategy {strategy!r}: no cell of it in this report; it has {', '.join(strategies)}")
    if profile not in profiles:
        raise UnknownSelection(f"--profile {profile!r}: no cell of it in this report; it has {', '.join(profiles)}")


def _best(routes: dict[str, list[Cell]]) -> list[Cell]:
    """A route whose every probe passes; else the one that ran with the fewest failing probes (a
    strategy absent from the release says nothing about the model, so it comes last)."""
    if not routes:
        return []

    def rank(probes: list[Cell]) -> tuple[int, int]:
        if all(p.status in ("pass", "skipped") for p in probes) and any(p.status == "pass" for p in probes):
            return (0, sum(p.status == "skipped" for p in probes))
        if all(p.status in ("unsupported", "skipped") for p in probes):
            return (2, 0)
        return (1, sum(p.status in ("fail", "error") for p in probes))

    return min(routes.values(), key=rank)


def _mark(probes: list[Cell], cause_of: dict[tuple[str, str], Cause]) -> tuple[str, list[Cause]]:
    statuses = {p.status for p in probes}
    if not probes:
        return "·", []
    if "pass" in statuses and statuses <= {"pass", "skipped"}:
        # A probe this machine cannot run (trl_grpo without torchvision) neither passes nor fails.
        return "✅", []
    if statuses & {"fail", "error"}:
        causes = {cause.id: cause for p in probes if (cause := cause_of.get(p.key)) and p.status in ("fail", "error")}
        return "❌", sorted(causes.values(), key=lambda c: c.title)
    if "unsupported" in statuses:
        return "➖", []
    return "⏭️", []


def _not_run(probes: list[Cell]) -> str:
    """The footnote of a passing route with skipped probes: which did not run here, and why."""
    skipped = sorted({(p.probe, p.message) for p in probes if p.status == "skipped"})
    return "; ".join(f"{probe} not run here: {message}" for probe, message in skipped)


def _why(cause: Cause) -> str:
    """Why, in the words of matrix.yaml where it has them, else the error."""
    return "; ".join(cause.expectations) if cause.expectations else cause.title
