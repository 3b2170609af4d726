"""Read results files line by line, keeping every good line and naming file and line of each bad one.

A run that is killed leaves a truncated last line, and nightly artifacts can mix schema
versions; neither may cost the report its good lines, and neither may pass unnoticed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from reports.report import Cell, Origin, Problem, ProblemKind
from reports.results import RESULTS_SCHEMA_VERSION

SNIPPET_CHARS = 80
"""How much of a bad line to quote in its message."""


@dataclass
class Loaded:
    """Every valid line as a cell, and a problem for everything else."""

    cells: list[Cell] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def expand_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[Problem]]:
    """Files as given, folders searched recursively for `*.jsonl` (merged artifact downloads)."""
    files: list[Path] = []
    problems: list[Problem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.jsonl") if p.is_file())
            if not found:
                problems.append(Problem(kind="missing_path", file=str(path), message="folder holds no *.jsonl results file"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(kind="missing_path", file=str(path), message="no such file or folder"))
    return files, problems


def load_results(paths: Iterable[str | Path]) -> Loaded:
    """Read every results file under `paths`; duplicates are kept here and resolved by `merge`."""
    files, problems = expand_paths(paths)
    loaded = Loaded(problems=problems)
    for path in files:
        _read_file(path, loaded)
    return loaded


def _read_file(path: Path, loaded: Loaded) -> None:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        loaded.problems.append(Problem(kind="unreadable", file=str(path), message=f"cannot read: {exc.strerror or exc}"))
        return
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if line.strip():
            outcome = _parse_line(path, number, line)
            if isinstance(outcome, Cell):
                loaded.cells.append(outcome)
            else:
                loaded.problems.append(outcome)


def _parse_line(path: Path, number: int, line: bytes) -> Cell | Problem:
    def problem(kind: ProblemKind, message: str) -> Problem:
        return Problem(kind=kind, file=str(path), line=number, message=message)

    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return problem("unreadable", f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = "" if text.rstrip().endswith("}") else "; the line looks cut short (a killed run?)"
        return problem("bad_json", f"not valid JSON ({exc.msg}, column {exc.colno}){hint}: {text[:SNIPPET_CHARS]!r}")
    if not isinstance(data, dict):
        return problem("bad_json", f"expected a JSON object, got {type(data).__name__}: {text[:SNIPPET_CHARS]!r}")
    version = data.get("schema_version")
    if version != RESULTS_SCHEMA_VERSION:
        return problem(
            "schema_version",
            f"results schema_version {version!r}; this version of reports reads {RESULTS_SCHEMA_VERSION} "
            "(regenerate the results, or report with the matching compat-matrix)",
        )
    try:
        return Cell.model_validate({**data, "origin": Origin(file=str(path), line=number)})
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'line'}: {err['msg']}" for err in exc.errors())
        return problem("invalid", f"cell {data.get('cell_id', '?')!r} does not match the results schema: {fields}")
