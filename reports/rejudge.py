"""Judge cells against the expectations a matrix file holds now, not those recorded when they ran.

An expectation added after a run (say, for a cross-release break the nightly found) then takes
effect in the next report without re-running a cell. Cells of models the file no longer lists keep
what they recorded, and the report says so.

`reports` does not read matrix files (it sits below `compat_matrix`, which imports it): the caller
hands over the expectations as an object (`compat_matrix.judge.expectations.read_expectations`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from reports.report import Cell, Problem
from reports.results import Expected


class Expectations(Protocol):
    """What a matrix file expects of each cell now."""

    @property
    def source(self) -> str:
        """The file they come from, for messages."""
        ...

    def lists(self, model: str) -> bool:
        """True when the file has an entry for this model key."""
        ...

    def expected(self, cell: Cell) -> Expected | None:
        """The expectation that covers this cell, or None."""
        ...


class ExpectationsUnreadable(ValueError):
    """The expectations file is not valid; the message lists every problem, located."""


def rejudge(cells: Sequence[Cell], expectations: Expectations) -> tuple[list[Cell], list[Problem]]:
    """Each cell with `expected` from `expectations`; cells of models it does not list keep theirs."""
    judged: list[Cell] = []
    unlisted: dict[str, int] = {}
    for cell in cells:
        if not expectations.lists(cell.model):
            unlisted[cell.model] = unlisted.get(cell.model, 0) + 1
            judged.append(cell)
            continue
        judged.append(cell.model_copy(update={"expected": expectations.expected(cell)}))
    problems = [
        Problem(kind="not_in_matrix", file=expectations.source,
                message=f"model {model!r} ({count} cells) is not in this matrix file: the expectations recorded "
                        "when its cells ran are kept; add it back or drop its results")
        for model, count in sorted(unlisted.items())
    ]
    return judged, problems
