"""The nightly's triage of a new release: when today's `latest` is a release yesterday's nightly did not
test, compare yesterday's `latest` with it (`compat-matrix check`) and write the issue text. It lists
the root causes, each marked as an upstream break (their code changed: report it to them), a
dependency change (a package the cells now need, or no longer need) or a harness error (our machinery
broke: fix us, not them); with the first bad release bisected where releases lie between; and the trl
and peft releases the cells used.

    python -m compat_matrix.bisect.new_release site/report.json baseline/report.json triage.md

Does nothing (exit 0, no file, says why) without a baseline or when `latest` did not move.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from packaging.version import Version

from compat_matrix.bisect.nightly import latest_of
from reports.report import Report

Kind = Literal["upstream break", "dependency change", "harness error"]

LISTED_SECTIONS = ("breaks", "drift", "API paths gone", "LoRA targets lost", "new requirements", "requirements dropped")
"""Sections of `check` (reports/check_view.py) that are root causes of a new release; labels that
name a release's checkpoints are added per pair (`<release> checkpoints`, `... drifting`)."""

CELLS_NAMED = 3
"""Cell ids named per root cause, then counted."""


@dataclass(frozen=True)
class RootCause:
    kind: Kind
    title: str
    scope: str
    cells: tuple[str, ...]
    """Cell ids in the main grid (cross-release ones with `@<writer>`)."""
    first_bad: str | None = None


def _kind(section: str, status: str) -> Kind:
    if section in ("new requirements", "requirements dropped"):
        return "dependency change"
    return "harness error" if status == "error" else "upstream break"


def root_causes(report: Report, old: str, new: str) -> list[RootCause]:
    """Every cause `check old -> new` lists in a section that says what the new release changes."""
    from reports.check_view import by_cause
    from reports.diff import compare_releases

    view = compare_releases(report, old, new)
    wanted = {*LISTED_SECTIONS, *(f"{r} checkpoints" for r in (old, new)), *(f"{r} checkpoints drifting" for r in (old, new))}
    found = []
    for section in by_cause(view):
        if section.label not in wanted:
            continue
        for cause in section.causes:
            found.append(RootCause(_kind(section.label, cause.status), cause.title, cause.scope,
                                   tuple(sorted({c.grid_id for c in cause.cells}))))
    return found


def with_first_bad(causes: list[RootCause], first_bad: dict[str, str]) -> list[RootCause]:
    """Each cause with the first bad release its cells agree on (bisect's answer per cell id)."""
    out = []
    for cause in causes:
        found = {first_bad.get(cell) for cell in cause.cells}
        agreed = found.pop() if len(found) == 1 else None
        out.append(RootCause(cause.kind, cause.title, cause.scope, cause.cells, agreed))
    return out


def training_libraries(report: Report, release: str) -> str:
    """`trl 1.16.0, peft 0.21.2`: the versions the release's cells ran with (several where they differ)."""
    parts = []
    for name in ("trl", "peft"):
        versions = sorted({str(c.libraries.get(name)) for c in report.cells
                           if c.transformers == release and c.libraries.get(name)})
        parts.append(f"{name} {' / '.join(versions) if versions else 'not installed'}")
    return ", ".join(parts)


def markdown(old: str, new: str, causes: Sequence[RootCause], libraries: dict[str, str], check_text: str,
             between: Sequence[str]) -> str:
    """The issue text: the root causes by kind, first bad releases, the libraries, then check's own text."""
    counts = {kind: sum(1 for c in causes if c.kind == kind) for kind in ("upstream break", "dependency change",
                                                                           "harness error")}
    lines = [f"**transformers {new}** is the new `latest` (the previous nightly tested {old}).", "",
             f"Root causes: {counts['upstream break']} upstream breaks, {counts['dependency change']} dependency "
             f"changes, {counts['harness error']} harness errors. "
             + (f"Releases between them, bisected: {', '.join(between)}." if between else "No release lies between them."),
             "", "| kind | cause | scope | cells | first bad |", "| --- | --- | --- | --- | --- |"]
    for cause in causes:
        named = ", ".join(f"`{_cell(c)}`" for c in cause.cells[:CELLS_NAMED])
        more = f" and {len(cause.cells) - CELLS_NAMED} more" if len(cause.cells) > CELLS_NAMED else ""
        first_bad = cause.first_bad or (new if not between else "not bisected to one release")
        lines.append(f"| {cause.kind} | {_cell(cause.title)} | {_cell(cause.scope)} | {len(cause.cells)}: {named}{more} "
                     f"| {first_bad} |")
    if not causes:
        lines.append("| | nothing that the new release changes | | | |")
    lines += ["", "Cells ran with " + "; ".join(f"{lib} (transformers {release})" for release, lib in libraries.items())
              + ".", "", "<details><summary>compat-matrix check " + f"--from {old} --to {new}</summary>", "", "```",
              check_text.replace("```", "'''").rstrip(), "```", "", "</details>"]
    return "\n".join(lines) + "\n"


def _cell(text: str, limit: int = 300) -> str:
    """Table-safe, one line, no @mentions from exception text."""
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    for old, new in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|"), ("@", "@\u200b")):
        text = text.replace(old, new)
    return text


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "compat_matrix.cli", *args], capture_output=True, text=True)


def _bisected(old: str, new: str, causes: list[RootCause]) -> dict[str, str]:
    """First bad release per same-release cell id of the causes, from `compat-matrix bisect` ({} when it fails)."""
    from compat_matrix.spec.cells import Cell

    cells = [cell for cause in causes for cell_id in cause.cells if (cell := Cell.from_id(cell_id)) and not cell.saved_by]
    if not cells:
        return {}
    done = _cli("bisect", "--good", old, "--bad", new, "--json", "--models", *sorted({c.model for c in cells}),
                "--strategies", *sorted({c.strategy for c in cells}), "--probes", *sorted({c.probe for c in cells}))
    sys.stderr.write(done.stderr[-5000:])
    if done.returncode:
        return {}
    return {c["cell_id"]: c["first_bad"] for c in json.loads(done.stdout)["cells"] if c.get("first_bad")}


def main(argv: list[str] | None = None) -> int:
    from compat_matrix.envs.release_sets import ReleaseIndex, between
    from compat_matrix.spec.layout import results_folder
    from reports.build import build_report

    today_path, yesterday_path, out_file = (Path(a) for a in (argv or sys.argv[1:]))
    if not yesterday_path.is_file():
        print("new release triage: no baseline report, nothing to compare `latest` with")
        return 0
    new, old = latest_of(Report.read(today_path)), latest_of(Report.read(yesterday_path))
    if new is None or old is None or Version(new) <= Version(old):
        print(f"new release triage: nothing to do: `latest` is {new}, the previous nightly tested {old}")
        return 0
    out = out_file.parent / "new-release-check"
    checked = _cli("check", "--from", old, "--to", new, "--out", str(out), "--no-drift")
    sys.stderr.write(checked.stderr[-5000:])
    results = sorted(results_folder(out).glob("*.jsonl"))
    if not results:
        out_file.write_text(f"transformers {new} is the new `latest`; `check --from {old} --to {new}` ran no cell "
                            f"(exit {checked.returncode}); see the run log.\n")
        _step_output(new)
        return 0
    report = build_report(results)
    causes = root_causes(report, old, new)
    inside = between(old, new, ReleaseIndex())[1:-1]
    if inside:
        causes = with_first_bad(causes, _bisected(old, new, causes))
    libraries = {release: training_libraries(report, release) for release in (new, old)}
    out_file.write_text(markdown(old, new, causes, libraries, checked.stdout, inside))
    print(f"new release triage: {len(causes)} root causes from {old} to {new}, written to {out_file}")
    _step_output(new)
    return 0


def _step_output(release: str) -> None:
    """`release=<new>` for the workflow's issue job, when run as a GitHub Actions step."""
    path = os.environ.get("GITHUB_OUTPUT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"release={release}\n")


if __name__ == "__main__":
    sys.exit(main())
