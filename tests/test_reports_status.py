"""The worst-status rule and the grid built on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reports.build import build_report
from reports.grid import build_grid
from reports.status import meets_expectation, worst

FIXTURES = Path(__file__).parent / "fixtures" / "results"
BASE = json.loads((FIXTURES / "nightly" / "tf457.jsonl").read_text().splitlines()[0])


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["pass"], "pass"),
        (["pass", "skipped"], "skipped"),
        (["skipped", "unsupported", "pass"], "unsupported"),
        (["unsupported", "fail"], "fail"),
        (["fail", "error", "pass"], "error"),
        (["error", "skipped"], "error"),
    ],
)
def test_worst_follows_the_documented_order(statuses, expected):
    assert worst(statuses) == expected


def test_worst_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        worst([])


@pytest.mark.parametrize(
    ("status", "expected", "meets"),
    [
        ("pass", None, True),
        ("skipped", None, True),
        ("unsupported", None, True),
        ("fail", None, False),
        ("error", None, False),
        ("fail", "fail", True),
        ("error", "fail", False),
        ("pass", "fail", False),
        ("unsupported", "unsupported", True),
    ],
)
def test_meets_expectation(status, expected, meets):
    assert meets_expectation(status, expected) is meets


def _cells(tmp_path: Path, *lines: dict) -> Path:
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps({**BASE, **line}) + "\n" for line in lines))
    return path


def test_a_grid_cell_shows_its_worst_probe_and_keeps_every_probe(tmp_path):
    expected_fail = {"status": "fail", "transformers": "<5", "reason": "known", "link": None}
    results = _cells(
        tmp_path,
        {"probe": "load", "cell_id": "m-s-default-load"},
        {"probe": "generate", "cell_id": "m-s-default-generate", "status": "skipped"},
        {"probe": "forward", "cell_id": "m-s-default-forward", "status": "fail", "expected": expected_fail},
        {"probe": "load", "cell_id": "m-s-default-load", "transformers": "5.0.0"},
    )
    grid = build_grid(build_report([results]))
    [group] = grid.groups
    [row] = group.rows
    old, new = row.cells["4.57.6"], row.cells["5.0.0"]
    assert old.worst == "fail" and old.expected_failure and not old.regression
    assert [p.probe for p in old.probes] == ["load", "forward", "generate"]  # run order, not file order
    assert new.worst == "pass" and not new.expected_failure


def test_an_unexpected_failure_marks_the_cell_as_a_regression(tmp_path):
    results = _cells(tmp_path, {"probe": "forward", "cell_id": "m-s-default-forward", "status": "error", "message": "boom"})
    [row] = build_grid(build_report([results])).groups[0].rows
    cell = row.cells["4.57.6"]
    assert cell.worst == "error" and cell.regression and not cell.expected_failure


def test_cross_release_cells_get_their_own_grid_and_same_release_ones_stay_in_the_main_grid():
    grid = build_grid(build_report([FIXTURES / "nightly"]))
    qwen2 = next(g for g in grid.groups if g.model == "qwen2")
    assert [list(r.cells) for r in qwen2.rows] == [["4.57.6"]]  # saved_by == transformers: a normal cell
    assert qwen2.cross is not None
    assert qwen2.cross.saved_by == ("4.49.0", "4.57.6") and qwen2.cross.loaded_by == ("5.0.0",)
    assert qwen2.cross.cells[("4.57.6", "5.0.0")].worst == "fail"
    assert qwen2.cross.cells[("4.49.0", "5.0.0")].worst == "pass"
    assert all(g.cross is None for g in grid.groups if g.model != "qwen2")
