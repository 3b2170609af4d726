"""Lines the CLI writes for cells a release run never reported still say which trl, peft,
accelerate and tokenizers the release had (`libraries`), as every other line does."""

from __future__ import annotations

from pathlib import Path

from compat_matrix.run.runner import ReleaseRun, _fill_missing
from compat_matrix.spec.cells import Cell
from compat_matrix.spec.records import RECORDED_LIBRARIES, cell_record
from compat_matrix.spec.results_io import ResultsWriter, read_lines
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix

MATRIX = load_matrix(DEFAULT_MATRIX, check_model_types=False)
CELLS = [Cell("llama", "smart", "default", probe) for probe in ("load", "forward")]
RAN = {"transformers": "5.24.0", "transformers_requested": "latest", "torch": "2.13.0", "python": "3.11.9",
       "device": "cpu", "gpu_name": None, "git_commit": "abc",
       "libraries": {"trl": "1.16.0", "peft": "0.21.2", "accelerate": "1.15.0", "tokenizers": "0.23.3"}}


def release_run(tmp_path: Path) -> ReleaseRun:
    return ReleaseRun("latest", "tflatest", tmp_path / "results" / "tflatest.jsonl", tmp_path / "tflatest.log")


def test_a_cell_after_the_run_stopped_gets_the_libraries_of_the_cells_that_ran(tmp_path: Path) -> None:
    run = release_run(tmp_path)
    run.log.write_text("tflatest: commands[0]> pytest\nKilled\n")
    writer = ResultsWriter(run.results, fresh=True)
    writer.write({**cell_record(MATRIX, CELLS[0], run.env, RAN), "status": "pass"})
    writer.close()
    _fill_missing(run, MATRIX, CELLS)
    missing = read_lines(run.results)[1]
    assert missing["cell_id"] == CELLS[1].id and missing["error_type"] == "HarnessError"
    assert missing["libraries"] == RAN["libraries"]
    assert missing["transformers"] == "5.24.0" and missing["device"] == "unknown"


def test_a_release_that_could_not_be_set_up_records_the_libraries_as_unknown(tmp_path: Path) -> None:
    run = release_run(tmp_path)
    _fill_missing(run, MATRIX, CELLS)
    lines = read_lines(run.results)
    assert [line["error_type"] for line in lines] == ["InstallError"] * 2
    assert all(line["libraries"] == dict.fromkeys(RECORDED_LIBRARIES) for line in lines)
