"""`compat-matrix report RESULTS... --out DIR`: merge results, write every output, set the exit code.

Exit codes: 0 written; 1 a regression and `--fail-on-regression`; 2 nothing usable (no readable
cell, or a baseline that cannot be read). Unreadable lines are warnings here and a section in
every output, so a half-broken nightly still publishes what it has.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

from reports.build import build_report
from reports.cell_data import CELLS_FOLDER, cell_files
from reports.junit import write_junit
from reports.rejudge import Expectations
from reports.render_html import render_html
from reports.render_md import render_markdown
from reports.report import ReleaseSet, Report
from reports.support_table import UnknownSelection, support_table


def write_pages(report: Report, out_dir: Path) -> None:
    """report.json, report.md and index.html: what a later step that adds to the report (`repro --causes`)
    writes again, without the cell files and JUnit that do not change."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report.write(out_dir / "report.json")
    (out_dir / "report.md").write_text(render_markdown(report), encoding="utf-8")
    (out_dir / "index.html").write_text(render_html(report), encoding="utf-8")


def write_outputs(report: Report, out_dir: Path) -> list[Path]:
    """report.json, then report.md, index.html with its cells/ and one JUnit file per release, all from it."""
    write_pages(report, out_dir)
    return [out_dir / "report.json", out_dir / "report.md", out_dir / "index.html", *write_cell_files(report, out_dir),
            *write_junit(report, out_dir)]


def write_cell_files(report: Report, out_dir: Path) -> list[Path]:
    """The page's per-model cell files; those of models no longer in the report are removed."""
    files = {out_dir / name: text for name, text in cell_files(report).items()}
    folder = out_dir / CELLS_FOLDER
    folder.mkdir(exist_ok=True)
    for stale in set(folder.glob("*.js")) - set(files):
        stale.unlink()
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return list(files)


def read_release_set(path: Path) -> ReleaseSet:
    """ValueError naming the file when it cannot be read or is not a release set."""
    try:
        return ReleaseSet.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"--release-set {path}: not a release-set.json written by compat-matrix run: {exc}") from None


def append_step_summary(markdown: str) -> bool:
    """Append to the GitHub step summary when the runner provides one (GITHUB_STEP_SUMMARY)."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    with open(path, "a", encoding="utf-8") as summary:
        summary.write(markdown + "\n")
    return True


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="compat-matrix report",
        description="Merge results files into report.json and render report.md, index.html and JUnit XML from it.",
    )
    p.add_argument("results", nargs="+", type=Path, help="results .jsonl files, or folders searched recursively for them")
    p.add_argument("--out", required=True, type=Path, help="folder for report.json, report.md, index.html, junit-*.xml")
    p.add_argument("--baseline", type=Path, help="an earlier report.json: cells that passed there and do not now are regressions")
    p.add_argument("--fail-on-regression", action="store_true", help="exit 1 when there is a regression")
    p.add_argument("--history", type=Path, help="folder of earlier report.json files (searched recursively) for the trend strip")
    p.add_argument("--expectations", type=Path, metavar="MATRIX_YAML",
                   help="judge cells against this matrix file's expectations, not those recorded when they ran")
    p.add_argument("--release-set", type=Path, metavar="JSON",
                   help="release-set.json written by `compat-matrix run`: what a specifier expanded to, kept in the report")
    p.add_argument("--support-table", action="store_true",
                   help="also write support.md (models x releases, pass / fail / not supported, footnotes for the causes) "
                        "and print it")
    p.add_argument("--strategy", help="with --support-table: this strategy only (default: the best one per cell)")
    p.add_argument("--profile", default="default", help="with --support-table: this load profile (default: default)")
    return p


def main(argv: list[str] | None = None, read_expectations: Callable[[Path], Expectations] | None = None) -> int:
    """The report command; `read_expectations` reads `--expectations` (`compat_matrix` knows matrix files
    and passes its reader: `compat-matrix report`)."""
    args = parser().parse_args(argv)
    if args.expectations and read_expectations is None:
        print("compat-matrix report: error: --expectations needs a matrix file reader; run it as `compat-matrix report`",
              file=sys.stderr)
        return 2
    try:
        expectations = read_expectations(args.expectations) if args.expectations and read_expectations else None
        report = build_report(args.results, baseline=args.baseline, history=args.history, expectations=expectations)
        if args.release_set:
            report = report.model_copy(update={"release_set": read_release_set(args.release_set)})
    except ValueError as exc:  # also ExpectationsUnreadable
        print(f"compat-matrix report: error: {exc}", file=sys.stderr)
        return 2
    for problem in report.problems:
        where = problem.file + (f":{problem.line}" if problem.line is not None else "")
        print(f"compat-matrix report: warning: {where}: {problem.message}", file=sys.stderr)
    if (args.strategy or args.profile != "default") and not args.support_table:
        print("compat-matrix report: error: --strategy and --profile go with --support-table", file=sys.stderr)
        return 2
    try:
        table = support_table(report, args.strategy, args.profile) if args.support_table and report.cells else None
    except UnknownSelection as exc:
        print(f"compat-matrix report: error: {exc}", file=sys.stderr)
        return 2
    try:
        paths = write_outputs(report, args.out)
        if table is not None:
            (args.out / "support.md").write_text(table, encoding="utf-8")
            paths.append(args.out / "support.md")
    except OSError as exc:
        print(f"compat-matrix report: error: cannot write the report to --out {args.out} ({exc.strerror or exc}); "
              "pick a writable folder", file=sys.stderr)
        return 2
    append_step_summary((args.out / "report.md").read_text(encoding="utf-8"))
    print(
        f"{len(report.cells)} cells in {len(report.releases)} releases, {len(report.regressions)} regressions, "
        f"{len(report.fixes)} fixes, {len(report.problems)} input problems; wrote {', '.join(str(p) for p in paths)}"
    )
    if not report.cells:
        print("compat-matrix report: error: no readable cell in the results given", file=sys.stderr)
        return 2
    if table is not None:
        print("\n" + table, end="")
    return 1 if args.fail_on_regression and report.regressions else 0

