"""The nightly bisects a regression of `latest` between yesterday's and today's `latest`, and names
the first bad release in the regression issue."""

from __future__ import annotations

from typing import Any

from compat_matrix.bisect.nightly import plan, summary
from reports.report import Report


def report(latest: str, regressions: list[dict[str, Any]]) -> Report:
    env = {"env": "tflatest", "python": "3.11", "torch": "2.13.0", "transformers": latest, "device": "cpu",
           "gpu_name": None, "git_commit": None, "cells": 1}
    return Report.model_validate({
        "results_schema_version": 1, "generated_at": "2026-01-01T00:00:00Z", "cells": [],
        "releases": [{"transformers": "4.57.6", "requested": ["4.57.6"], "environments": [env | {"env": "tf4_57_6"}],
                      "counts": {}, "cells": 1},
                     {"transformers": latest, "requested": ["latest"], "environments": [env], "counts": {}, "cells": 1}],
        "regressions": regressions,
    })


def change(release: str, cell_id: str) -> dict[str, Any]:
    model, strategy, profile, probe = cell_id.split("-")
    return {"kind": "regression", "against": ["baseline"], "transformers": release, "cell_id": cell_id, "model": model,
            "strategy": strategy, "load_kwargs": profile, "probe": probe, "saved_by": None, "before": "pass",
            "now": "fail", "expected": None, "baseline_status": "pass", "error_type": "ValueError", "message": "x"}


def test_a_regression_in_a_newer_latest_is_bisected_between_the_two_latests() -> None:
    today = report("5.25.0", [change("5.25.0", "llava-smart-default-forward"), change("4.57.6", "llama-smart-default-load")])
    found = plan(today, report("5.24.0", []))
    assert not isinstance(found, str)
    assert (found.good, found.bad, found.models, found.strategies, found.probes) == (
        "5.24.0", "5.25.0", ["llava"], ["smart"], ["forward"])


def test_nothing_to_bisect_says_why() -> None:
    assert plan(report("5.24.0", [change("5.24.0", "llava-smart-default-forward")]), report("5.24.0", [])) == \
        "`latest` did not move (5.24.0)"
    assert plan(report("5.25.0", []), report("5.24.0", [])) == "no regression in transformers 5.25.0"


def test_the_issue_text_names_the_first_bad_release_of_each_regressed_cell() -> None:
    found = {"good": "5.24.0", "bad": "5.26.0", "releases_run": ["5.24.0", "5.25.0", "5.26.0"], "cells": [
        {"cell_id": "llava-smart-default-forward", "verdict": "boundary", "last_good": "5.24.0", "first_bad": "5.25.0",
         "what_changed": "pass -> fail (ValueError: x)"},
        {"cell_id": "llava-smart-default-load", "verdict": "no change"}]}
    text = "\n".join(summary(found, {"llava-smart-default-forward"}))
    assert "`llava-smart-default-forward`: first bad **5.25.0** (last good 5.24.0)" in text
    assert "default-load" not in text
