"""A matrix file's expectations as the report judges cells by them (`report --expectations`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from compat_matrix.spec.cells import Cell as MatrixCell
from compat_matrix.spec.records import expected_of
from compat_matrix.spec.schema import Matrix
from compat_matrix.spec.validate import MatrixError, load_matrix
from reports.rejudge import ExpectationsUnreadable
from reports.report import Cell
from reports.results import Expected


@dataclass(frozen=True)
class MatrixExpectations:
    """`reports.rejudge.Expectations` read from a matrix file."""

    matrix: Matrix
    source: str

    def lists(self, model: str) -> bool:
        return any(entry.key == model for entry in self.matrix.models)

    def expected(self, cell: Cell) -> Expected | None:
        found = expected_of(self.matrix, MatrixCell(cell.model, cell.strategy, cell.load_kwargs, cell.probe,
                                                    cell.saved_by), cell.transformers, cell.libraries)
        return Expected(**found) if found else None


def read_expectations(file: Path) -> MatrixExpectations:
    """The file's expectations; `ExpectationsUnreadable` with every located problem if it is invalid."""
    try:
        matrix = load_matrix(file, check_model_types=False)
    except MatrixError as exc:
        raise ExpectationsUnreadable(f"--expectations {file} is not a valid matrix file:\n{exc}") from None
    return MatrixExpectations(matrix, str(file))
