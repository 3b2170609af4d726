"""Judge cells against the expectations a matrix file holds now, not those recorded when they ran.

An expectation added after a run (say, for a cross-release break the nightly found) then takes
effect in the next report without re-running a cell. Cells of models the file no longer lists keep
what they recorded, and the report says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reports.report import Cell, Problem
from reports.results import Expected


def rejudge(cells: Sequence[Cell], matrix_file: Path) -> tuple[list[Cell], list[Problem]]:
    """Each cell with `expected` from `matrix_file`; MatrixError (every problem, located) if it is invalid."""
    from compat_matrix.cells import Cell as MatrixCell
    from compat_matrix.records import expected_of
    from compat_matrix.validate import load_matrix

    matrix = load_matrix(matrix_file, check_model_types=False)
    listed = {entry.key for entry in matrix.models}
    judged: list[Cell] = []
    unlisted: dict[str, int] = {}
    for cell in cells:
        if cell.model not in listed:
            unlisted[cell.model] = unlisted.get(cell.model, 0) + 1
            judged.append(cell)
            continue
        found = expected_of(matrix, MatrixCell(cell.model, cell.strategy, cell.load_kwargs, cell.probe, cell.saved_by),
                            cell.transformers)
        judged.append(cell.model_copy(update={"expected": Expected(**found) if found else None}))
    problems = [
        Problem(kind="not_in_matrix", file=str(matrix_file),
                message=f"model {model!r} ({count} cells) is not in this matrix file: the expectations recorded "
                        "when its cells ran are kept; add it back or drop its results")
        for model, count in sorted(unlisted.items())
    ]
    return judged, problems
