"""The one sentence per model at the top of the report: which routes pass in each release."""

from __future__ import annotations

import json
from pathlib import Path

from reports.build import build_report
from reports.overview import model_sentences

FIXTURES = Path(__file__).parent / "fixtures" / "results"
BASE = json.loads((FIXTURES / "nightly" / "tf457.jsonl").read_text().splitlines()[0])


def _sentence(tmp_path: Path, *cells: tuple[str, str, str]) -> str:
    """(strategy, probe, status) cells of one model in one release -> that model's sentence."""
    path = tmp_path / "r.jsonl"
    path.write_text("".join(
        json.dumps({**BASE, "model": "m", "strategy": s, "probe": p, "status": st, "cell_id": f"m-{s}-default-{p}"}) + "\n"
        for s, p, st in cells))
    [(_, sentence)] = model_sentences(build_report([path]))
    return sentence


def test_a_probe_skipped_here_does_not_stop_a_route_from_passing(tmp_path):
    """As trl_grpo on image-text models where torchvision is missing: the route passes what ran."""
    sentence = _sentence(tmp_path, ("smart", "load", "pass"), ("smart", "trl_grpo", "skipped"),
                         ("auto_model", "load", "fail"), ("auto_model", "trl_grpo", "skipped"))
    assert "smart passes every probe that ran (trl_grpo not run here)" in sentence
    assert "auto_model" not in sentence


def test_a_failing_probe_still_fails_the_route(tmp_path):
    sentence = _sentence(tmp_path, ("smart", "load", "pass"), ("smart", "forward", "fail"), ("smart", "trl_grpo", "skipped"))
    assert "no route passes every probe" in sentence


def test_only_skipped_cells_are_not_run_here(tmp_path):
    sentence = _sentence(tmp_path, ("smart", "load", "skipped"), ("smart", "forward", "skipped"))
    assert "not run here (skipped)" in sentence
