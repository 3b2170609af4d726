"""Merging: one cell per (release, cell id), releases in version order, duplicates reported."""

from __future__ import annotations

import json
from pathlib import Path

from reports.load import load_results
from reports.merge import merge

FIXTURES = Path(__file__).parent / "fixtures" / "results"
BASE = json.loads((FIXTURES / "nightly" / "tf457.jsonl").read_text().splitlines()[0])


def write(path: Path, *lines: dict) -> Path:
    path.write_text("".join(json.dumps({**BASE, **line}) + "\n" for line in lines))
    return path


def test_releases_sort_as_versions_not_strings(tmp_path):
    versions = ["5.0.0", "4.10.0", "10.0.0", "4.9.0", "5.1.0.dev0", "not-a-version"]
    write(tmp_path / "r.jsonl", *({"transformers": v} for v in versions))
    merged = merge(load_results([tmp_path]).cells)
    assert [r.transformers for r in merged.releases] == ["4.9.0", "4.10.0", "5.0.0", "5.1.0.dev0", "10.0.0", "not-a-version"]
    assert [c.transformers for c in merged.cells] == [r.transformers for r in merged.releases]


def test_duplicates_keep_the_later_timestamp_and_name_both_lines():
    merged = merge(load_results([FIXTURES / "nightly", FIXTURES / "rerun"]).cells)
    by_id = {c.cell_id: c for c in merged.cells if c.transformers == "4.57.6"}
    assert by_id["llama-auto_causal_lm-default-load"].env == "tf457-rerun"  # rerun finished later
    assert by_id["llama-auto_causal_lm-default-forward"].env == "tf457"  # rerun's line is older
    assert by_id["llama-auto_causal_lm-default-forward"].status == "pass"
    assert len(merged.cells) == 67
    first, second = merged.duplicates
    assert (first.kind, first.line) == ("duplicate", 1) and first.file.endswith("nightly/tf457.jsonl")
    assert "rerun/tf457-rerun.jsonl:1" in first.message
    assert second.file.endswith("rerun/tf457-rerun.jsonl") and second.line == 2
    assert "nightly/tf457.jsonl:2" in second.message


def test_equal_timestamps_keep_the_line_read_last(tmp_path):
    write(tmp_path / "a.jsonl", {"env": "first"})
    write(tmp_path / "b.jsonl", {"env": "second"})
    merged = merge(load_results([tmp_path]).cells)
    assert [c.env for c in merged.cells] == ["second"]
    assert len(merged.duplicates) == 1


def test_each_release_keeps_its_environment_fingerprint_and_requested_names(tmp_path):
    write(
        tmp_path / "r.jsonl",
        {"env": "tf500", "transformers": "5.0.0", "transformers_requested": "5.0.0", "probe": "load", "cell_id": "a"},
        {
            "env": "tflatest",
            "transformers": "5.0.0",
            "transformers_requested": "latest",
            "device": "cuda",
            "gpu_name": "NVIDIA H200",
            "probe": "forward",
            "cell_id": "b",
            "status": "fail",
        },
    )
    [release] = merge(load_results([tmp_path]).cells).releases
    assert release.requested == ("5.0.0", "latest")
    assert [(e.env, e.device, e.gpu_name, e.cells) for e in release.environments] == [
        ("tf500", "cpu", None, 1),
        ("tflatest", "cuda", "NVIDIA H200", 1),
    ]
    assert release.environments[0].git_commit == BASE["git_commit"]
    assert release.counts == {"pass": 1, "skipped": 0, "unsupported": 0, "fail": 1, "error": 0}
