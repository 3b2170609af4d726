"""The harness's result lines are exactly what `reports` reads: one schema, checked on real lines."""

from __future__ import annotations

from compat_matrix.spec.cells import Cell
from compat_matrix.spec.records import cell_record
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix
from compat_tests.execute import MatrixState, run_cell
from reports.results import CellResult

MATRIX = load_matrix(DEFAULT_MATRIX, check_model_types=False)


def test_probe_lines_match_the_reports_schema() -> None:
    state = MatrixState(MATRIX)
    for cell in (Cell("llama", "auto_model", "default", "load"),        # expectation without a release range
                 Cell("llama", "explicit_class", "default", "forward"),  # no expectation, pass
                 Cell("qwen2_5_vl_3b_hub", "smart", "default", "load")):  # skipped offline
        record = run_cell(state, cell)
        parsed = CellResult.model_validate(record)
        assert parsed.cell_id == cell.id and parsed.status == record["status"]
    assert CellResult.model_validate(run_cell(state, Cell("llama", "auto_model", "default", "load"))).expected is not None


def test_lines_the_cli_writes_for_cells_that_never_ran_match_too() -> None:
    fingerprint = {"transformers": "4.99.0", "transformers_requested": "4.99.0", "torch": "2.13.0",
                   "python": "3.11.7", "device": "unknown", "gpu_name": None, "git_commit": None}
    record = cell_record(MATRIX, Cell("llama", "smart", "default", "load", "4.57.6"), "tf4_99_0", fingerprint)
    assert CellResult.model_validate(record).saved_by == "4.57.6"
