"""The matrix: one test per cell of `matrix.yaml` for the installed transformers release.

The result line is attached to the report (the controller writes it); the pytest outcome says
whether the cell met its expectation: unexpected failures fail, expected ones are xfail.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from compat_matrix.spec.cells import Cell
from compat_tests.execute import MatrixState, run_cell
from compat_tests.plugin import RESULT_PROPERTY


def test_cell(cell: Cell, matrix_state: MatrixState, record_property: Callable[[str, Any], None],
              request: pytest.FixtureRequest) -> None:
    record = run_cell(matrix_state, cell)
    record_property(RESULT_PROPERTY, record)
    status, expected = record["status"], record["expected"]
    if status == "pass":
        return
    if status in ("skipped", "unsupported"):
        pytest.skip(f"{status}: {record['message']}")
    first_line = (record["message"].strip().splitlines() or [""])[0][:300]
    summary = f"{status}: {record['error_type']}: {first_line}"
    if expected and expected["status"] == status:
        # an xfail mark plus a traceback-free failure: pytest.xfail() formats a full traceback (~20 ms a cell)
        request.node.add_marker(pytest.mark.xfail(reason=f"expected ({expected['reason']}) -- {summary}"))
    pytest.fail(summary, pytrace=False)
