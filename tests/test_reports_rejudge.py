"""`report --expectations matrix.yaml`: cells judged against the file's expectations now, so an
expectation recorded after a run (a cross-release break the nightly found) clears its regressions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compat_matrix.cli import main
from compat_matrix.judge.expectations import read_expectations
from reports.build import build_report

FIXTURES = Path(__file__).parent / "fixtures" / "results"
BASE = json.loads((FIXTURES / "nightly" / "tf457.jsonl").read_text().splitlines()[0])

MATRIX = """\
transformers: [4.57.6]
models:
  - key: llama
    hub_id: meta-llama/Llama-3.2-1B-Instruct
    modality: text
    recipe: {model_type: llama, architecture: LlamaForCausalLM, config: {hidden_size: 64}}
expectations:
  - {status: fail, saved_by: '>=5', reason: 5.x writes a tokenizer class 4.x cannot import}
"""


def cross_cell(tmp_path: Path, saved_by: str, model: str = "llama") -> Path:
    """A failed cross-release cell that recorded no expectation (it ran before one existed)."""
    line = {**BASE, "model": model, "saved_by": saved_by, "status": "fail", "expected": None,
            "cell_id": f"{model}-auto_causal_lm-default-load@{saved_by}", "message": "TokenizersBackend"}
    path = tmp_path / "tf4_57_6-cross.jsonl"
    path.write_text(json.dumps(line) + "\n")
    return path


def matrix(tmp_path: Path, text: str = MATRIX) -> Path:
    path = tmp_path / "matrix.yaml"
    path.write_text(text)
    return path


def test_without_the_file_the_recorded_expectation_decides(tmp_path: Path) -> None:
    report = build_report([cross_cell(tmp_path, "5.24.0")])
    assert [c.cell_id for c in report.regressions] == ["llama-auto_causal_lm-default-load@5.24.0"]


def test_an_expectation_added_after_the_run_clears_the_regression(tmp_path: Path) -> None:
    report = build_report([cross_cell(tmp_path, "5.24.0")], expectations=read_expectations(matrix(tmp_path)))
    assert report.regressions == ()
    [cell] = report.cells
    assert cell.expected is not None and cell.expected.saved_by == ">=5" and "tokenizer" in cell.expected.reason


def test_a_checkpoint_from_outside_the_saved_by_range_stays_a_regression(tmp_path: Path) -> None:
    report = build_report([cross_cell(tmp_path, "4.49.0")], expectations=read_expectations(matrix(tmp_path)))
    assert [c.cell_id for c in report.regressions] == ["llama-auto_causal_lm-default-load@4.49.0"]


def test_a_cause_bounded_by_peft_is_judged_by_the_peft_each_line_ran_with(tmp_path: Path) -> None:
    bounded = matrix(tmp_path, MATRIX.replace("saved_by: '>=5',", "saved_by: '>=5', libraries: {peft: '<0.22.0'},"))
    old, new = cross_cell(tmp_path, "5.24.0"), tmp_path / "tf4_57_6-cross-new-peft.jsonl"
    line = json.loads(old.read_text())
    new.write_text(json.dumps({**line, "libraries": {"trl": "1.16.0", "peft": "0.22.0"}}) + "\n")
    old.write_text(json.dumps({**line, "libraries": {"trl": "1.16.0", "peft": "0.21.2"}}) + "\n")
    report = build_report([new], expectations=read_expectations(bounded))
    assert [c.cell_id for c in report.regressions] == ["llama-auto_causal_lm-default-load@5.24.0"]
    report = build_report([old], expectations=read_expectations(bounded))
    assert report.regressions == () and report.cells[0].expected.libraries == {"peft": "<0.22.0"}


def test_a_model_the_file_does_not_list_keeps_its_record_and_is_named(tmp_path: Path) -> None:
    report = build_report([cross_cell(tmp_path, "5.24.0", model="gone")], expectations=read_expectations(matrix(tmp_path)))
    assert len(report.regressions) == 1
    [problem] = report.problems
    assert problem.kind == "not_in_matrix" and "'gone' (1 cells)" in problem.message


def test_an_invalid_file_is_exit_2_with_the_located_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = matrix(tmp_path, MATRIX.replace("saved_by: '>=5'", "saved_by: '5.x'"))
    code = main(["report", str(cross_cell(tmp_path, "5.24.0")), "--out", str(tmp_path / "out"), "--expectations", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "expectations[0].saved_by" in err and "PEP 440" in err and "Traceback" not in err
