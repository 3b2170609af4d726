"""The Markdown head of `report.md`: the counts, one sentence per model, and the causes (regressions
open, the other kinds folded), before any per-cell table."""

from __future__ import annotations

from reports.overview import counts, model_sentences
from reports.report import Cause, Change, Report
from reports.status import EMOJI
from reports.text import md_inline

EXAMPLE_CHARS = 200
"""A cause's example message is cut to this many characters here (report.json keeps it whole)."""

SECTIONS: tuple[tuple[str, str, bool], ...] = (
    ("regression", "Breaks by cause (not in matrix.yaml)", True),
    ("dependency", "Dependency changes (a release from which cells need a package this machine lacks: skipped, "
                   "not broken)", True),
    ("expected", "Expected failures by cause (matrix.yaml says why)", False),
    ("silent", "Silent changes between consecutive releases", False),
    ("fix", "Fixes (expectations that no longer hold)", False),
)
"""(kind, heading, open): regressions are what needs action, and dependency changes say why cells
stopped running, so they alone are unfolded."""


def headline(report: Report) -> str:
    """Distinct breaks first, then the rest, then the size of the run."""
    n = counts(report)
    breaks = f"**{n.regressions} distinct breaks** ({n.regression_cells} cells)" + (" 🔺" if n.regressions else "")
    if n.dependencies:
        breaks += f" · {n.dependencies} dependency {'change' if n.dependencies == 1 else 'changes'}"
    return (f"{breaks} · {n.expected} expected failures · {n.silent} silent changes · "
            f"{n.fixes} {'fix' if n.fixes == 1 else 'fixes'} · {n.cells} cells in {len(report.releases)} releases")


def models_section(report: Report) -> list[str]:
    sentences = model_sentences(report)
    if not sentences:
        return []
    return ["## Models", ""] + [f"- **{md_inline(model, 80)}**{md_inline(text[len(model):], 1000)}"
                                for model, text in sentences] + [""]


def cause_sections(report: Report) -> list[str]:
    lines: list[str] = reproduction_line(report)
    for kind, heading, unfolded in SECTIONS:
        causes = [c for c in report.causes if c.kind == kind]
        if not causes:
            continue
        cells = sum(len(c.cells) for c in causes)
        title = f"{heading}: {len(causes)} {'cause' if len(causes) == 1 else 'causes'}, {cells} cells"
        table = _table(causes)
        if unfolded:
            lines += [f"## {title}", "", *table, "", *_yaml(causes)]
        else:
            lines += [f"<details><summary><b>{md_inline(title, 200)}</b></summary>", "", *table, "", "</details>", ""]
    return lines


def was(change: Change) -> str:
    """What a regression or fix was compared with, in words: a baseline report, or an expectation
    (no expectation in matrix.yaml means the cell is expected to pass)."""
    if "baseline" in change.against:
        return f"{change.before} in the baseline"
    if change.expected is None:
        return "expected to pass (no expectation)"
    return f"expected {change.before} (matrix.yaml)"


def _table(causes: list[Cause]) -> list[str]:
    lines = ["| | cause | scope | releases | breaks (cells) | example |", "| --- | --- | --- | --- | --- | --- |"]
    for c in causes:
        releases = c.release_ranges + (f" (first bad: {c.first_bad})" if c.first_bad else "")
        example = f"`{md_inline(c.example_cell, 120)}`: {md_inline(c.example, EXAMPLE_CHARS)}"
        if c.expectations:
            example += " — " + md_inline("; ".join(c.expectations), 200)
        if c.repro:
            example += " — reproduce: " + ", ".join(f"`{md_inline(path, 120)}`" for path in c.repro)
        if c.reproduction is not None:
            example += " — " + reproduction_text(c)
        lines.append(f"| {EMOJI.get(c.status, '')} | {md_inline(c.title, 200)} | {md_inline(c.scope, 120)} "
                     f"| {md_inline(releases, 120)} | {c.breaks} ({len(c.cells)}) | {example} |")
    return lines


def reproduction_text(cause: Cause) -> str:
    """The cause's script from `compat-matrix repro --causes`, in words: verified, or why not."""
    r = cause.reproduction
    assert r is not None
    if r.script and r.verified:
        return f"verified script: [`{md_inline(r.script, 120)}`]({r.script}) ({r.lines} lines; {md_inline(r.verdict, 300)})"
    if r.script:
        return f"script [`{md_inline(r.script, 120)}`]({r.script}), **not verified**: {md_inline(r.verdict, 300)}"
    return f"**no verified script**: {md_inline(r.verdict, 300)}"


def reproduction_line(report: Report) -> list[str]:
    """How many failing causes have a verified script, where `compat-matrix repro --causes` ran on the report."""
    done = [c for c in report.causes if c.reproduction is not None]
    if not done:
        return []
    verified = sum(bool(c.reproduction and c.reproduction.verified) for c in done)
    return [f"**Reproductions**: {verified} of {len(done)} failing causes have a verified script "
            "(`compat-matrix repro --causes`); each cause below says which, or why none.", ""]


def _yaml(causes: list[Cause]) -> list[str]:
    """The expectation that records each break, folded, ready to paste into matrix.yaml."""
    lines: list[str] = []
    for c in causes:
        if c.expectation_yaml:
            lines += [f"<details><summary>matrix.yaml expectation for: {md_inline(c.title, 120)}</summary>", "",
                      "```yaml", c.expectation_yaml.rstrip().replace("```", "'''"), "```", "", "</details>", ""]
    return lines
