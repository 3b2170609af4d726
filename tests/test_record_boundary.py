"""`bisect --record`: a boundary becomes an expectation in matrix.yaml, the rest of the file untouched."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from compat_matrix.bisect.record import narrowed, propose, record, snippet
from compat_matrix.bisect.run import grouped, same_outcome
from compat_matrix.bisect.search import Boundary
from compat_matrix.spec.cells import Cell
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix
from reports.report import Cell as Result


def result(cell: Cell, release: str, status: str, **fields: Any) -> Result:
    line = {"schema_version": 1, "env": "tf", "transformers": release, "transformers_requested": release,
            "torch": "2.13.0", "python": "3.11.7", "device": "cpu", "gpu_name": None, "git_commit": None,
            "model": cell.model, "hub_id": "x/y", "modality": "image-text", "source": "tiny", "saved_by": None,
            "strategy": cell.strategy, "load_kwargs": cell.profile, "probe": cell.probe, "cell_id": cell.id,
            "status": status, "error_type": None, "message": "", "loaded_class": None, "load_path": None,
            "expected": None, "duration_s": 0.1, "peak_memory_mb": None, "dtype": None, "details": {},
            "timestamp": "2026-01-01T00:00:00+00:00", "origin": {"file": "x.jsonl", "line": 1}}
    return Result.model_validate(line | fields)


def boundary(cell: Cell, before: Result, after: Result, last_good: str, first_bad: str) -> Boundary:
    return Boundary(cell.id, "boundary", last_good, first_bad, before, after, tested=["a", "b", "c", "d", "e"])


def test_narrowing_replaces_only_the_bound_on_the_boundary_side() -> None:
    assert narrowed("<4.57", failing_newer=False, first_new="4.57.0") == "<4.57.0"
    assert narrowed(">=5,<5.24", failing_newer=True, first_new="5.3.0") == ">=5.3.0,<5.24"
    assert narrowed(">=5.3.0,<5.5.4", failing_newer=False, first_new="5.5.2") == ">=5.3.0,<5.5.2"
    assert narrowed("==4.57.*", failing_newer=True, first_new="4.57.1") is None


def test_record_narrows_the_covering_expectation_in_place_with_a_comment(tmp_path: Path) -> None:
    matrix_file = tmp_path / "matrix.yaml"
    shutil.copy(DEFAULT_MATRIX, matrix_file)
    matrix = load_matrix(matrix_file)
    cell = Cell("qwen3_vl", "explicit_class", "default", "load")
    found = boundary(cell, result(cell, "4.52.4", "unsupported", message="model_type qwen3_vl unknown"),
                     result(cell, "4.57.6", "pass"), "4.56.2", "4.57.0")
    [group] = grouped([found])
    proposal = propose(matrix, group, {cell.id: cell}, 5)
    assert proposal is not None and proposal.replaces is not None and proposal.transformers == "<4.57.0"
    before = matrix_file.read_text().splitlines()
    record(matrix_file, [proposal])
    after = matrix_file.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and len(changed) == 1, changed
    assert changed[0][1].strip().startswith('transformers: "<4.57.0"  # bisect ')
    assert "last good 4.56.2, first bad 4.57.0 (5 releases tested)" in changed[0][1]
    assert load_matrix(matrix_file).model("qwen3_vl").expectations[0].transformers == "<4.57.0"


def test_a_new_failure_gets_its_own_expectation_first_in_the_models_list(tmp_path: Path) -> None:
    matrix_file = tmp_path / "matrix.yaml"
    shutil.copy(DEFAULT_MATRIX, matrix_file)
    matrix = load_matrix(matrix_file)
    cells = [Cell("llama", "smart", "default", probe) for probe in ("load", "forward")]
    group = [boundary(c, result(c, "5.0.0", "pass"), result(c, "5.4.0", "fail", error_type="ValueError",
                                                            message="boom\nmore"), "5.2.0", "5.3.0") for c in cells]
    proposal = propose(matrix, group, {c.id: c for c in cells}, 4)
    assert proposal is not None and proposal.replaces is None
    assert (proposal.status, proposal.transformers, proposal.reason) == ("fail", ">=5.3.0", "ValueError: boom more")
    assert "strategies: [smart]" in snippet(proposal) and "probes: [load, forward]" in snippet(proposal)
    text_before = matrix_file.read_text()
    record(matrix_file, [proposal])
    entry = load_matrix(matrix_file).model("llama")
    assert entry.expectations[0].transformers == ">=5.3.0" and entry.expectations[0].probes == ("load", "forward")
    kept = [line for line in text_before.splitlines() if line.lstrip().startswith("#")]
    assert all(line in matrix_file.read_text() for line in kept), "every comment is still there"


def test_outcomes_differ_by_status_or_by_a_silent_change_the_upgrade_view_reports() -> None:
    cell = Cell("llama", "smart", "default", "load")
    base = result(cell, "5.0.0", "pass", loaded_class="LlamaForCausalLM")
    assert same_outcome(base, result(cell, "5.1.0", "pass", loaded_class="LlamaForCausalLM"))
    assert not same_outcome(base, result(cell, "5.1.0", "pass", loaded_class="LlamaModel"))
    assert not same_outcome(base, result(cell, "5.1.0", "fail"))
    assert not same_outcome(result(cell, "5.0.0", "fail", message="a"), result(cell, "5.1.0", "fail", message="b"))


def test_a_failing_cell_keeps_its_outcome_while_only_a_number_path_or_address_in_its_message_changes() -> None:
    """The cause is the report's (reports/signature.py): what varies between runs never makes a boundary."""
    cell = Cell("llama", "smart", "default", "load")

    def failing(release: str, message: str, error_type: str = "OSError") -> Result:
        return result(cell, release, "fail", error_type=error_type, message=message)

    base = failing("5.0.0", "Can't load /tmp/tmpa1b2/llama-5.0.0/preprocessor_config.json: 3 files, object at 0x7f3a9c")
    for same in ("Can't load /work/cache/x/llama-5.1.0/preprocessor_config.json: 12 files, object at 0x55d0e1",
                 "Can't load   /tmp/q/preprocessor_config.json: 3 files, object at 0xdeadbeef\n  File line 812"):
        assert same_outcome(base, failing("5.1.0", same)), same
    assert not same_outcome(base, failing("5.1.0", "'list' object has no attribute 'keys'", "AttributeError"))
    assert not same_outcome(base, failing("5.1.0", base.message, "ValueError")), "another error type is another cause"
    assert not same_outcome(base, result(cell, "5.1.0", "error", error_type="OSError", message=base.message))


def test_unchanged_cells_are_one_group_and_a_shared_boundary_one_group() -> None:
    cells = [Cell("llama", s, "default", "load") for s in ("smart", "explicit_class", "auto_model")]
    same = [Boundary(c.id, "no change", before=result(c, "5.0.0", status, message=status),
                     after=result(c, "5.1.0", status, message=status)) for c, status in zip(cells, ("pass", "fail", "error"))]
    shared = [boundary(c, result(c, "5.0.0", "pass"), result(c, "5.4.0", "fail", error_type="E", message="m"),
                       "5.2.0", "5.3.0") for c in cells[:2]]
    assert [len(g) for g in grouped(same + shared)] == [3, 2]
