"""`compat-matrix repro`: write a cell's script, verify it, or do both for every cause of a report."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compat_matrix.envs.tox_setup import tox_setup
from compat_matrix.repro.script import NoTemplate, Script, Target, write_script
from compat_matrix.repro.verify import CellOutcome, Verdict, judge, run_script
from compat_matrix.spec.cells import Cell
from compat_matrix.spec.schema import Matrix
from reports.cli import write_pages
from reports.report import Cause, Report, Reproduction
from reports.signature import LOAD_FAILED_PREFIX, load_message

INDEX = "index.json"
"""`--causes` writes one script per cause and this index: cause id -> script, cell, verdict."""

REPRO_FOLDER = "repro"
"""`--causes` writes into this folder beside the report unless `--out` says otherwise."""

SUMMARY = "README.md"
"""`--causes` also writes this Markdown table (the nightly appends it to its regression issue)."""


ADAPTER_READ_CHECKS = ("adapter_keys", "adapter_load")
"""The adapter_roundtrip checks its script makes (its `adapter_logits` needs the writer's inputs and logits)."""


LOAD_FAILED_WORDS = "no route loaded a usable model:"
"""How `smart`'s LoadFailed starts (loader/errors.py): every route of its chain failed."""


class ReproProblem(ValueError):
    """A cell or report that cannot be used (the message names it and the fix)."""


def parse_cell(matrix: Matrix, cell_id: str) -> Cell:
    cell = Cell.from_id(cell_id)
    keys = [m.key for m in matrix.models]
    if cell is None or cell.model not in keys:
        raise ReproProblem(f"{cell_id!r} is not a cell id of this matrix: write model-strategy-profile-probe[@release], "
                           f"as report.json's cell_id (models: {', '.join(keys)})")
    if cell.profile not in matrix.model(cell.model).load_kwargs:
        raise ReproProblem(f"{cell_id}: model {cell.model} has no load profile {cell.profile!r} "
                           f"(it has {', '.join(matrix.model(cell.model).load_kwargs)})")
    return cell


def outcome_in(cells: Iterable[dict[str, Any]], cell_id: str, release: str) -> CellOutcome | None:
    """The cell's outcome among report.json's cells."""
    for cell in cells:
        if cell["cell_id"] == cell_id and cell["transformers"] == release:
            return CellOutcome(str(cell["status"]), cell.get("error_type"), cell.get("message") or "")
    return None


def run_cell(matrix: Matrix, matrix_file: Path, cell: Cell, release: str) -> CellOutcome:
    """The cell's outcome from a run of just this cell in the release's environment."""
    from compat_matrix.run.runner import run_release

    if cell.saved_by and cell.saved_by != release:
        raise ReproProblem(f"{cell.id}: a cross-release cell needs the writer's checkpoint; give --report REPORT.json "
                           "of a run with --cross-release that has this cell")
    with tempfile.TemporaryDirectory(prefix="repro-cell-") as out:
        run = run_release(matrix, matrix_file, release, [cell], Path(out), workers=1)
    line = next((line for line in run.lines if line.get("cell_id") == cell.id), None)
    if line is None:
        raise ReproProblem(f"{cell.id} did not run in transformers {release} (log: {run.log})")
    return CellOutcome(line["status"], line.get("error_type"), line.get("message", ""))


def script_for(matrix: Matrix, cell: Cell, release: str, good: str | None, name: str,
               outcome: CellOutcome | None) -> Script:
    """The cell's script; a cell whose probe never ran because its load failed gets its load cell's."""
    if outcome is not None and outcome.message.startswith(LOAD_FAILED_PREFIX) and cell.probe != "load":
        cell = Cell(cell.model, cell.strategy, cell.profile, "load", cell.saved_by)
    if (outcome is not None and cell.probe == "adapter_roundtrip" and outcome.status in ("fail", "error")
            and not outcome.message.startswith(ADAPTER_READ_CHECKS)):
        raise NoTemplate(f"the adapter_roundtrip script checks that the adapter reads whole ({', '.join(ADAPTER_READ_CHECKS)}); "
                         f"this cell fails {outcome.message.split(':')[0]}, which compares the logits on the family's inputs")
    by_content = outcome is not None and "weights newly initialised" in outcome.message
    return write_script(Target(matrix, cell, release, good, name, smart_routes=smart_routes(outcome), by_content=by_content,
                               prompt_tokens=prompt_tokens(outcome)))


def prompt_tokens(outcome: CellOutcome | None) -> int | None:
    """How many ids the writer's tokenizer gave the reference prompt, where the cell's load check quotes them
    (compat_tests/probes/load.py: '... encoded it as [970, 817, 830, 870]: the tokenizer reads back differently')."""
    found = re.search(r"encoded it as \[([\d, ]*)\]", outcome.message) if outcome is not None else None
    return len([part for part in found.group(1).split(",") if part.strip()]) if found else None


def smart_routes(outcome: CellOutcome | None) -> tuple[str, ...]:
    """The routes `smart`'s LoadFailed lists (`  route: Error: message`, loader/errors.py), in order; () for
    any other outcome."""
    message = load_message(outcome.message) if outcome is not None else ""
    if not message.startswith(LOAD_FAILED_WORDS):
        return ()
    return tuple(line.strip().split(": ", 1)[0] for line in message.splitlines()[1:] if line.startswith("  ") and ": " in line)


def verify(matrix: Matrix, matrix_file: Path, cell: Cell, script: Script, path: Path, release: str,
           good: str | None, outcome: CellOutcome) -> Verdict:
    workdir = tox_setup(matrix_file, Path(tempfile.gettempdir())).workdir
    writer = cell.saved_by if cell.saved_by and cell.saved_by != release else None
    names = [name for m in matrix.models for name in (m.key, m.hub_id)]
    bad = run_script(script, path, release, release, writer, workdir)
    good_run = run_script(script, path, good, release, writer, workdir) if good else None
    cross = writer is not None
    return judge(cell.id, cell.probe, cross, names, outcome, bad, good_run)


def cmd_repro(args: argparse.Namespace, matrix: Matrix) -> int:
    """One cell (exit 1 when --verify does not verify it), or every cause of --causes REPORT."""
    matrix_file = Path(args.matrix).resolve()
    if args.causes:
        return _causes(args, matrix, matrix_file)
    if not args.cell or not args.release:
        raise ReproProblem("give a CELL and --release R (or --causes REPORT.json --out DIR)")
    cell = parse_cell(matrix, args.cell)
    # one cell of a report of thousands: plain JSON, not the whole report validated (seconds)
    cells = json.loads(Path(args.report).read_text(encoding="utf-8"))["cells"] if args.report else None
    outcome = outcome_in(cells, cell.id, args.release) if cells is not None else None
    if cells is not None and outcome is None:
        raise ReproProblem(f"{args.report} has no cell {cell.id} in transformers {args.release}")
    out = Path(args.out or f"repro-{cell.id.replace('@', '-at-')}-{args.release}.py")
    script = script_for(matrix, cell, args.release, args.good, out.name, outcome)
    out.write_text(script.text, encoding="utf-8")
    print(f"wrote {out} ({script.lines} lines)")
    if not args.verify:
        return 0
    outcome = outcome or run_cell(matrix, matrix_file, cell, args.release)
    verdict = verify(matrix, matrix_file, cell, script, out, args.release, args.good, outcome)
    print(f"{cell.id}: {verdict.summary}")
    if not verdict.verified:
        print(verdict.bad_run.output, file=sys.stderr)
    return 0 if verdict.verified else 1


@dataclass(frozen=True)
class CauseScript:
    """The script chosen for one cause and what verifying it showed."""

    cause: str
    title: str
    script: str | None
    cell: str | None
    release: str | None
    good: str | None
    lines: int | None
    verified: bool
    summary: str
    checked: str | None = None
    """sha256 of the script, the cell's outcome and the releases `--verify` ran it with (None: not run)."""


def pick_cell(report: Report, cause: Cause) -> tuple[str, str, str | None] | None:
    """(release, cell id, good release) of the cause to write a script for: a same-release cell before
    a cross-release one, a transformers route before `smart` (ours), a load cell before the probes it
    stopped, the oldest release; good: the nearest release where the same cell passes."""
    releases = [r.transformers for r in report.releases]
    order = {v: i for i, v in enumerate(releases)}
    candidates = sorted((entry.split("/", 1) for entry in cause.cells),
                        key=lambda rc: ("@" in rc[1], "-smart-" in rc[1], not rc[1].split("@")[0].endswith("-load"),
                                        order.get(rc[0], 0), rc[1]))
    if not candidates:
        return None
    release, cell_id = candidates[0]
    body, _, writer = cell_id.partition("@")
    passing = [c.transformers for c in report.cells if c.status == "pass"
               and (c.cell_id == cell_id or (c.cell_id == body and c.transformers == writer))]  # the writer's own read
    good = min(passing, key=lambda v: abs(order.get(v, 0) - order.get(release, 0))) if passing else None
    return release, cell_id, good


def _causes(args: argparse.Namespace, matrix: Matrix, matrix_file: Path) -> int:
    report_path = Path(args.causes)
    report = Report.read(report_path)
    out = Path(args.out) if args.out else report_path.parent / REPRO_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    rows: list[CauseScript] = []
    earlier = _read_index(out / INDEX)
    for cause in report.causes:
        if cause.kind not in args.kinds or cause.status not in ("fail", "error"):
            continue
        rows.append(_cause_script(args, matrix, matrix_file, report, cause, out, earlier.get(cause.id)))
        print(f"{cause.id}: {rows[-1].summary}", file=sys.stderr)
        # after each cause: a run stopped midway (a nightly's time limit) keeps what it verified
        (out / INDEX).write_text(json.dumps([row.__dict__ for row in rows], indent=1) + "\n", encoding="utf-8")
    (out / SUMMARY).write_text(summary_md(rows, bool(args.verify)), encoding="utf-8")
    verified = sum(row.verified for row in rows)
    print(f"{len(rows)} causes, {sum(r.script is not None for r in rows)} scripts, "
          f"{verified} verified{'' if args.verify else ' (no --verify)'}; index: {out / INDEX}")
    if out.resolve().is_relative_to(report_path.parent.resolve()):
        write_pages(with_reproductions(report, rows, out.resolve().relative_to(report_path.parent.resolve())),
                    report_path.parent)
        print(f"report.json, report.md and index.html in {report_path.parent} now name each cause's script")
    else:
        print(f"{out} is not beside {report_path}: the report is left as it was (its pages link scripts beside them)")
    return 0


def _read_index(path: Path) -> dict[str, CauseScript]:
    """An earlier run's rows by cause (none when there is no index or it is not one)."""
    try:
        return {row["cause"]: CauseScript(**row) for row in json.loads(path.read_text(encoding="utf-8"))}
    except (OSError, ValueError, TypeError, KeyError):
        return {}


def with_reproductions(report: Report, rows: list[CauseScript], folder: Path) -> Report:
    """`report` with each cause's script (its path relative to the report's folder, under `folder`) and verdict."""
    by_cause = {row.cause: row for row in rows}
    causes = []
    for cause in report.causes:
        row = by_cause.get(cause.id)
        if row is None:
            causes.append(cause)
            continue
        causes.append(cause.model_copy(update={"reproduction": Reproduction(
            script=(folder / row.script).as_posix() if row.script else None,
            cell=f"{row.release}/{row.cell}" if row.cell else None, good=row.good, lines=row.lines,
            verified=row.verified, verdict=row.summary.removeprefix("no script: "))}))
    return report.model_copy(update={"causes": tuple(causes)})


def summary_md(rows: list[CauseScript], verified: bool) -> str:
    """One line per cause: its script and whether it reproduces, or why there is none."""
    if not rows:
        return "No failing causes: no reproduction scripts.\n"
    count = sum(r.verified for r in rows)
    head = (f"**Reproductions**: {count} of {len(rows)} causes have a verified script" if verified
            else f"**Reproductions**: scripts for {sum(r.script is not None for r in rows)} of {len(rows)} causes, not verified")
    lines = [head, "", "| cause | script | cell | verdict |", "| --- | --- | --- | --- |"]
    for r in rows:
        title = " ".join(r.title.split()).replace("|", "\\|")[:160]
        script = f"`{r.script}` ({r.lines} lines)" if r.script else "none"
        cell = f"`{r.release}/{r.cell}`" if r.cell else ""
        verdict = ("✅ " if r.verified else "") + " ".join(r.summary.split()).replace("|", "\\|")[:300]
        lines.append(f"| {title} | {script} | {cell} | {verdict} |")
    return "\n".join(lines) + "\n"


def _cause_script(args: argparse.Namespace, matrix: Matrix, matrix_file: Path, report: Report, cause: Cause,
                  out: Path, previous: CauseScript | None) -> CauseScript:
    """The cause's script, verified with --verify unless `previous` (the folder's index) verified the same one."""
    picked = pick_cell(report, cause)
    if picked is None:
        return CauseScript(cause.id, cause.title, None, None, None, None, None, False, "no cell")
    release, cell_id, good = picked
    try:
        cell = parse_cell(matrix, cell_id)
        found = next(c for c in report.cells if c.cell_id == cell_id and c.transformers == release)
        outcome = CellOutcome(found.status, found.error_type, found.message)
        path = out / f"{cause.id}.py"
        script = script_for(matrix, cell, release, good, path.name, outcome)
    except (NoTemplate, ReproProblem) as exc:
        return CauseScript(cause.id, cause.title, None, cell_id, release, good, None, False, f"no script: {exc}")
    path.write_text(script.text, encoding="utf-8")
    checked = hashlib.sha256(json.dumps([script.text, outcome.__dict__, release, good]).encode()).hexdigest()
    if args.verify and previous is not None and previous.checked == checked:
        return previous  # the same script was verified against the same cell: its verdict holds
    verdict = verify(matrix, matrix_file, cell, script, path, release, good, outcome) if args.verify else None
    return CauseScript(cause.id, cause.title, path.name, cell_id, release, good, script.lines,
                       bool(verdict and verdict.verified), verdict.summary if verdict else "written, not verified",
                       checked if verdict else None)
