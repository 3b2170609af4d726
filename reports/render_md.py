"""`report.md`: the GitHub view (PR comment, step summary) of a report.

GitHub caps a step summary at 1 MiB, so messages are cut and the folded per-model details are
left out, each with a note, until the whole fits; report.json always keeps the full text.
"""

from __future__ import annotations

from reports.grid import Grid, GridCell, ModelGroup, build_grid
from reports.history import history_markdown
from reports.md_causes import cause_sections, headline, models_section, was
from reports.report import Change, Problem, Release, Report
from reports.status import EMOJI, STATUS_ORDER, SYMBOL
from reports.text import brief, md_inline

MAX_BYTES = 1_000_000
"""Below GitHub's 1 MiB (1,048,576 bytes) step-summary limit, with room for what is already there."""

MESSAGE_CHARS = 300
"""Messages longer than this are cut in Markdown (report.json and index.html keep them whole)."""

MAX_LIST_ROWS = 200
"""Regressions, fixes and problems listed in full up to this many; the rest are counted."""

LEGEND = (
    " · ".join(f"{EMOJI[s]} {s}" for s in STATUS_ORDER) + " · `*` expected by matrix.yaml · 🔺 regression · 🔧 fix · `·` not run"
)


AS_PUBLISHED_NOTE = (
    "Every release loads the checkpoint users get from the hub: for a tiny model, the one its `written_by` "
    "release wrote (\"as published by\" beside the model). Fine-tunes saved by the releases themselves are "
    "in the section after this one."
)


def render_markdown(report: Report, max_bytes: int = MAX_BYTES) -> str:
    """The whole Markdown document, at most `max_bytes` UTF-8 bytes."""
    grid = build_grid(report)
    head = "\n".join(
        [
            "# compat-matrix report",
            "",
            headline(report),
            "",
            summary_line(report),
            "",
            *_release_set(report),
            *_baseline(report),
            *models_section(report),
            *cause_sections(report),
            *_changes("Regressions", report.regressions),
            *_changes("Fixes", report.fixes),
            *_problems(report.problems),
            "## Grid: as published",
            "",
            AS_PUBLISHED_NOTE,
            "",
            LEGEND,
            "",
            *_grid(grid, report.releases),
            *_cross(grid),
            *history_markdown(report),
        ]
    )
    details = [_model_details(group, grid.releases) for group in grid.groups] + [_environments(report.releases)]
    return _fit(head, details, max_bytes)


def _release_set(report: Report) -> list[str]:
    """What a release specifier expanded to: the report says which releases `>=5.0,<5.6` meant that day."""
    chosen = report.release_set
    if chosen is None:
        return []
    note = f" ({md_inline(chosen.index, 300)})" if chosen.index else ""
    return [f"Releases asked for: {md_inline(', '.join(chosen.requested), 1000)} → {md_inline(', '.join(chosen.releases), 4000)}{note}", ""]


def summary_line(report: Report) -> str:
    """Cells, per-release status counts and the number of regressions, on one line."""
    per_release = "; ".join(
        f"**{r.transformers}**: " + ", ".join(f"{n} {EMOJI[s]} {s}" for s in STATUS_ORDER if (n := r.counts.get(s, 0)))
        for r in report.releases
    )
    parts = [f"**{len(report.cells)} cells** in {len(report.releases)} releases", per_release]
    parts.append(f"**{len(report.regressions)} regressions**" + (" 🔺" if report.regressions else ""))
    parts.append(f"{len(report.fixes)} fixes")
    if report.problems:
        parts.append(f"⚠️ {len(report.problems)} input problems (see *Could not read*)")
    return " · ".join(parts)


def cell_text(cell: GridCell | None) -> str:
    """Symbol of the worst status, with markers for expected failures, regressions and fixes."""
    if cell is None:
        return "·"
    marks = ("🔺" if cell.regression else "") + ("🔧" if cell.fix else "")
    expected = "\\*" if cell.expected_failure else ""
    return f"{marks}{EMOJI[cell.worst]}{expected}"


def _fit(head: str, details: list[str], max_bytes: int) -> str:
    note = "\n\n> ⚠️ Size cap: {n} detail sections left out to stay under {cap} bytes; see report.json or index.html.\n"
    text = head + "\n\n## Details\n"
    budget = max_bytes - len(note.encode()) - 64
    left_out = 0
    for block in details:
        if left_out == 0 and len((text + block).encode()) <= budget:
            text += "\n" + block
        else:
            left_out += 1
    if left_out:
        text += note.format(n=left_out, cap=max_bytes)
    encoded = text.encode()
    if len(encoded) > max_bytes:
        tail = f"\n\n> ⚠️ Cut at {max_bytes} bytes (size cap); see report.json or index.html for the rest.\n"
        text = encoded[: max_bytes - len(tail.encode())].decode(errors="ignore") + tail
    return text


def _baseline(report: Report) -> list[str]:
    if report.baseline is None:
        return []
    lines = [f"Compared with baseline `{md_inline(report.baseline.path, 200)}` of {report.baseline.generated_at}."]
    missing = report.baseline.missing_cells
    if missing:
        shown = ", ".join(md_inline(m, 120) for m in missing[:20])
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        lines.append(f"⚠️ {len(missing)} baseline cells are not in this report: {shown}{more}.")
    return lines + [""]


def _changes(title: str, changes: tuple[Change, ...]) -> list[str]:
    """Every cell of a kind, folded: the causes above are what a person reads first."""
    if not changes:
        return []
    lines = [
        f"<details><summary>{title}, every cell ({len(changes)})</summary>",
        "",
        "| release | cell | compared with | now | error |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in changes[:MAX_LIST_ROWS]:
        error = md_inline(f"{c.error_type}: {brief(c.message)}" if c.error_type else c.message, MESSAGE_CHARS)
        reason = f" ({md_inline(c.expected.reason, 120)})" if c.expected and c.expected.reason else ""
        lines.append(
            f"| {md_inline(c.transformers, 40)} | {md_inline(c.cell_id, 200)} | {md_inline(was(c), 60)}{reason} "
            f"| {EMOJI[c.now]} {c.now} | {error} |"
        )
    if len(changes) > MAX_LIST_ROWS:
        lines.append(f"\n…and {len(changes) - MAX_LIST_ROWS} more in report.json.")
    return lines + ["", "</details>", ""]


def _problems(problems: tuple[Problem, ...]) -> list[str]:
    if not problems:
        return []
    lines = [f"## Could not read ({len(problems)})", "", "| where | problem | message |", "| --- | --- | --- |"]
    for p in problems[:MAX_LIST_ROWS]:
        where = p.file + (f":{p.line}" if p.line is not None else "")
        lines.append(f"| {md_inline(where, 200)} | {md_inline(p.kind, 40)} | {md_inline(p.message, MESSAGE_CHARS)} |")
    if len(problems) > MAX_LIST_ROWS:
        lines.append(f"\n…and {len(problems) - MAX_LIST_ROWS} more in report.json.")
    return lines + [""]


def _release_header(release: Release) -> str:
    aliases = [r for r in release.requested if r != release.transformers]
    return md_inline(release.transformers + (f" ({', '.join(aliases)})" if aliases else ""), 60)


def _grid(grid: Grid, releases: tuple[Release, ...]) -> list[str]:
    lines = [
        "| model | strategy | " + " | ".join(_release_header(r) for r in releases) + " |",
        "| --- | --- | " + " | ".join(":-:" for _ in releases) + " |",
    ]
    for group in grid.groups:
        for i, row in enumerate(group.rows):
            label = md_inline(row.strategy + ("" if row.load_kwargs == "default" else f" · {row.load_kwargs}"), 80)
            model = f"**{md_inline(group.model, 80)}**" if i == 0 else ""
            if i == 0 and group.written_by:
                model += f" (as published by {md_inline(group.written_by, 20)})"
            lines.append(f"| {model} | {label} | " + " | ".join(cell_text(row.cells.get(v)) for v in grid.releases) + " |")
    return lines + [""]


def _cross(grid: Grid) -> list[str]:
    groups = [g for g in grid.groups if g.cross]
    if not groups:
        return []
    lines = ["## Fine-tunes: round trip and cross-release (saved by ↓, loaded by →)", "",
             "A checkpoint saved by one release (a fine-tune) and loaded by another: on the diagonal, the round "
             "trip (saved and reloaded by the same release); elsewhere, cross-release. Each cell shows the loading "
             "route (strategy, profile) that did best, by its worst probe.", ""]
    for group in groups:
        cross = group.cross
        assert cross is not None
        lines += [
            f"**{md_inline(group.model, 80)}**",
            "",
            "| saved by | " + " | ".join(md_inline(v, 40) for v in cross.loaded_by) + " |",
        ]
        lines.append("| --- | " + " | ".join(":-:" for _ in cross.loaded_by) + " |")
        for saved in cross.saved_by:
            lines.append(
                f"| {md_inline(saved, 40)} | "
                + " | ".join(cell_text(cross.cells.get((saved, loaded))) for loaded in cross.loaded_by)
                + " |"
            )
        lines.append("")
    return lines


def _model_details(group: ModelGroup, releases: tuple[str, ...]) -> str:
    probes = [p for row in group.rows for cell in row.cells.values() for p in cell.probes]
    if group.cross:
        probes += [p for cell in group.cross.cells.values() for p in cell.probes]
    not_passing = [p for p in probes if p.status != "pass"]
    order = {v: i for i, v in enumerate(releases)}
    not_passing.sort(key=lambda p: order.get(p.transformers, len(order)))
    passing = len(probes) - len(not_passing)
    title = f"<b>{md_inline(group.model, 80)}</b> ({md_inline(group.hub_id, 120)}): {passing} of {len(probes)} probes pass"
    if not not_passing:
        return title + "\n"
    lines = [f"<details><summary>{title}</summary>", ""]
    lines += ["| release | cell | status | error | loaded class | expectation |", "| --- | --- | --- | --- | --- | --- |"]
    for p in not_passing:
        error = f"{p.error_type}: {brief(p.message)}" if p.error_type else p.message
        expectation = f"{p.expected.status}: {p.expected.reason}" if p.expected else ""
        lines.append(
            f"| {md_inline(p.transformers, 40)} | {md_inline(p.cell_id, 200)} | {SYMBOL[p.status]} {p.status} "
            f"| {md_inline(error, MESSAGE_CHARS)} | {md_inline(p.loaded_class or '', 80)} | {md_inline(expectation, 200)} |"
        )
    return "\n".join(lines + ["", "</details>", ""])


def _environments(releases: tuple[Release, ...]) -> str:
    lines = [
        "<details><summary>Environments</summary>",
        "",
        "| release | requested | env | python | torch | device | GPU | commit | cells |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in releases:
        for e in r.environments:
            values = [
                r.transformers,
                ", ".join(r.requested),
                e.env,
                e.python,
                e.torch,
                e.device,
                e.gpu_name or "",
                (e.git_commit or "")[:12],
            ]
            lines.append("| " + " | ".join(md_inline(v, 80) for v in values) + f" | {e.cells} |")
    return "\n".join(lines + ["", "</details>", ""])
