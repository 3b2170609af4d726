"""Reading results files: good lines always make it, every bad line is named by file and line."""

from __future__ import annotations

import json
from pathlib import Path

from reports.load import load_results

FIXTURES = Path(__file__).parent / "fixtures" / "results"


def test_folders_are_searched_recursively_for_jsonl():
    loaded = load_results([FIXTURES / "nightly"])
    assert loaded.problems == []
    assert {c.origin.file.rsplit("/", 1)[-1] for c in loaded.cells} == {"tf449.jsonl", "tf457.jsonl", "tflatest.jsonl"}
    assert len(loaded.cells) == 21 + 22 + 24


def test_truncated_last_line_keeps_the_good_lines():
    loaded = load_results([FIXTURES / "bad" / "truncated.jsonl"])
    assert [c.probe for c in loaded.cells] == ["load", "forward"]
    [problem] = loaded.problems
    assert (problem.kind, problem.line) == ("bad_json", 3)
    assert problem.file.endswith("truncated.jsonl")
    assert "cut short" in problem.message


def test_other_schema_version_is_named_and_blank_lines_are_not_problems():
    loaded = load_results([FIXTURES / "bad" / "other_schema.jsonl"])
    assert [c.cell_id for c in loaded.cells] == ["llama-smart-default-forward"]
    [problem] = loaded.problems
    assert (problem.kind, problem.line) == ("schema_version", 1)
    assert "schema_version 2" in problem.message and "reads 1" in problem.message


def test_lines_that_break_the_schema_name_the_field():
    problems = load_results([FIXTURES / "bad" / "invalid.jsonl"]).problems
    assert [(p.kind, p.line) for p in problems] == [("invalid", 1), ("bad_json", 2), ("invalid", 3)]
    assert "status" in problems[0].message and "qwen2-smart-default-load" in problems[0].message
    assert "JSON object" in problems[1].message
    assert "duration_s" in problems[2].message


def test_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "binary.jsonl"
    good = (FIXTURES / "nightly" / "tf457.jsonl").read_bytes().splitlines()[0]
    path.write_bytes(good + b"\n\xff\xfe garbage\n")
    loaded = load_results([path])
    assert len(loaded.cells) == 1
    assert [(p.kind, p.line) for p in loaded.problems] == [("unreadable", 2)]


def test_missing_paths_and_empty_folders_are_problems(tmp_path):
    problems = load_results([tmp_path / "nope.jsonl", tmp_path]).problems
    assert [p.kind for p in problems] == ["missing_path", "missing_path"]
    assert "no such file" in problems[0].message and "no *.jsonl" in problems[1].message


def test_fields_this_version_does_not_know_are_kept(tmp_path):
    line = json.loads((FIXTURES / "nightly" / "tf457.jsonl").read_text().splitlines()[0])
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({**line, "attn_implementation": "sdpa"}) + "\n")
    [cell] = load_results([path]).cells
    assert cell.model_dump()["attn_implementation"] == "sdpa"
