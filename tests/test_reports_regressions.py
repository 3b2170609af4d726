"""Regressions and fixes against `matrix.yaml` expectations and against a baseline report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reports.build import build_report
from reports.cli import main
from reports.md_causes import was

FIXTURES = Path(__file__).parent / "fixtures" / "results"
BASE = json.loads((FIXTURES / "nightly" / "tf457.jsonl").read_text().splitlines()[0])
EXPECT_FAIL = {"status": "fail", "transformers": "<5", "reason": "upstream bug", "link": None}


def results(path: Path, *lines: dict) -> Path:
    path.write_text("".join(json.dumps({**BASE, "cell_id": f"c{i}", **line}) + "\n" for i, line in enumerate(lines)))
    return path


@pytest.mark.parametrize(
    ("line", "kind", "before"),
    [
        ({"status": "fail"}, "regression", "pass"),  # no expectation: a failure is a regression
        ({"status": "error"}, "regression", "pass"),
        ({"status": "error", "expected": EXPECT_FAIL}, "regression", "fail"),  # breaks the failing expectation differently
        ({"status": "pass", "expected": EXPECT_FAIL}, "fix", "fail"),  # the expectation is now stale
        ({"status": "fail", "expected": EXPECT_FAIL}, None, None),  # an expected failure
        ({"status": "unsupported"}, None, None),
        ({"status": "skipped", "expected": EXPECT_FAIL}, None, None),  # did not run: says nothing
    ],
)
def test_against_the_expectation(tmp_path, line, kind, before):
    report = build_report([results(tmp_path / "r.jsonl", line)])
    changes = [*report.regressions, *report.fixes]
    if kind is None:
        assert changes == []
        return
    [change] = changes
    assert (change.kind, change.against, change.before, change.now) == (kind, ("expectation",), before, line["status"])


@pytest.mark.parametrize(
    ("then", "now", "kind", "against"),
    [
        ("pass", "fail", "regression", ("expectation", "baseline")),
        ("pass", "skipped", "regression", ("baseline",)),  # lost coverage, e.g. the hub was unreachable
        ("pass", "unsupported", "regression", ("baseline",)),
        ("error", "pass", "fix", ("baseline",)),
        ("unsupported", "pass", "fix", ("baseline",)),
        ("skipped", "pass", None, None),
        ("fail", "fail", "regression", ("expectation",)),  # still unexpected, whatever the baseline said
    ],
)
def test_against_a_baseline(tmp_path, then, now, kind, against):
    old = build_report([results(tmp_path / "old.jsonl", {"status": then})])
    old.write(tmp_path / "baseline.json")
    report = build_report([results(tmp_path / "new.jsonl", {"status": now})], baseline=tmp_path / "baseline.json")
    changes = [*report.regressions, *report.fixes]
    if kind is None:
        assert changes == []
        return
    [change] = changes
    assert (change.kind, change.against, change.baseline_status, change.now) == (kind, against, then, now)


def test_the_nightly_fixtures_against_the_night_before(tmp_path):
    build_report([FIXTURES / "baseline"]).write(tmp_path / "baseline.json")
    report = build_report([FIXTURES / "nightly"], baseline=tmp_path / "baseline.json")
    regressions = {(c.transformers, c.cell_id): c for c in report.regressions}
    assert set(regressions) == {
        ("4.57.6", "qwen2_5_vl-smart-default-generate"),
        ("4.57.6", "qwen2_5_vl_3b_hub-smart-default-load"),
        ("5.0.0", "qwen2_5_vl-auto_causal_lm-default-load"),
        ("5.0.0", "qwen2-auto_causal_lm-default-forward@4.57.6"),
    }
    generate = regressions[("4.57.6", "qwen2_5_vl-smart-default-generate")]
    assert generate.against == ("expectation", "baseline")
    assert (generate.before, generate.now, generate.error_type) == ("pass", "fail", "IndexError")
    assert "out of bounds" in generate.message
    assert regressions[("4.57.6", "qwen2_5_vl_3b_hub-smart-default-load")].against == ("baseline",)
    fixes = {(c.transformers, c.cell_id): c.against for c in report.fixes}
    assert fixes == {
        ("4.57.6", "llama-smart-default-forward"): ("baseline",),
        ("5.0.0", "gemma3-auto_model-default-load"): ("expectation",),
        ("5.0.0", "gemma3-auto_model-default-forward"): ("expectation",),
    }
    assert report.baseline is not None
    assert report.baseline.missing_cells == ("4.57.6/llama-auto_model-default-load",)
    # what each was compared with, in words: no earlier run is not an earlier `pass`
    assert was(generate) == "pass in the baseline"
    assert was(regressions[("5.0.0", "qwen2_5_vl-auto_causal_lm-default-load")]) == "expected to pass (no expectation)"
    stale = next(c for c in report.fixes if c.cell_id == "gemma3-auto_model-default-load")
    assert was(stale) == "expected fail (matrix.yaml)"


@pytest.mark.parametrize(
    ("status", "flag", "code"),
    [("fail", True, 1), ("fail", False, 0), ("pass", True, 0)],
)
def test_fail_on_regression_sets_the_exit_code(tmp_path, monkeypatch, status, flag, code):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    argv = [str(results(tmp_path / "r.jsonl", {"status": status})), "--out", str(tmp_path / "out")]
    assert main(argv + (["--fail-on-regression"] if flag else [])) == code


def test_the_report_names_the_compat_matrix_that_built_it_and_reads_older_ones(tmp_path):
    from reports.report import Report
    from reports.version import VERSION

    report = build_report([results(tmp_path / "r.jsonl", {"status": "pass"})])
    assert report.generator == f"compat-matrix {VERSION}"
    report.write(tmp_path / "report.json")
    older = json.loads((tmp_path / "report.json").read_text())
    del older["generator"]
    (tmp_path / "older.json").write_text(json.dumps(older))
    assert Report.read(tmp_path / "older.json").generator == "", "a baseline from before `generator` still reads"
