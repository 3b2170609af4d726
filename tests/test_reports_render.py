"""report.json, Markdown, HTML and JUnit rendered from it, and the `report` command around them."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from reports.build import build_report
from reports.cell_data import cell_files
from reports.cli import main, write_outputs
from reports.render_html import render_html
from reports.render_md import MAX_BYTES, render_markdown
from reports.report import Report

FIXTURES = Path(__file__).parent / "fixtures" / "results"
BASE = json.loads((FIXTURES / "nightly" / "tf457.jsonl").read_text().splitlines()[0])
SCRIPT = "<script>window.__xss=1</script>"


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture(scope="module")
def everything() -> Report:
    """The nightly plus every bad-input fixture: what a messy night looks like."""
    return build_report([FIXTURES / "nightly", FIXTURES / "bad", FIXTURES / "rerun"])


def test_report_json_is_data_first_and_reads_back(tmp_path, everything):
    everything.write(tmp_path / "report.json")
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["schema_version"] == 1 and data["results_schema_version"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["generated_at"])
    assert [r["transformers"] for r in data["releases"]] == ["4.49.0", "4.52.4", "4.57.6", "5.0.0"]
    env = data["releases"][3]["environments"][0]
    assert {k: env[k] for k in ("python", "torch", "transformers", "device", "gpu_name")} == {
        "python": "3.11.7",
        "torch": "2.13.0",
        "transformers": "5.0.0",
        "device": "cpu",
        "gpu_name": None,
    }
    assert env["git_commit"] == BASE["git_commit"]
    assert len(data["cells"]) == 70 and data["cells"][0]["origin"]["line"] >= 1
    assert {p["kind"] for p in data["problems"]} == {"invalid", "bad_json", "schema_version", "duplicate"}
    assert len(data["regressions"]) == 3 and len(data["fixes"]) == 2
    assert Report.read(tmp_path / "report.json") == everything


def test_a_report_of_another_schema_version_is_refused_by_name(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(ValueError, match=r"old\.json: report schema_version 99"):
        Report.read(path)


def test_markdown_summary_grid_and_folded_details(everything):
    md = render_markdown(everything)
    headline, summary = md.splitlines()[2], md.splitlines()[4]
    assert headline.startswith("**3 distinct breaks** (3 cells) 🔺 · 3 expected failures · 3 silent changes · 1 fix ·")
    assert summary.startswith("**70 cells** in 4 releases")
    assert "**4.57.6**: 18 ✅ pass, 1 ⏭️ skipped, 3 ❌ fail" in summary and "**3 regressions**" in summary
    assert (md.index("## Models") < md.index("## Breaks by cause (not in matrix.yaml): 3 causes, 3 cells")
            < md.index("Regressions, every cell (3)") < md.index("Fixes, every cell (2)")
            < md.index("## Could not read (7)") < md.index("## Grid"))
    # "was" says what the cell was compared with, not `pass` where nothing ran before
    assert "| 5.0.0 | qwen2\\_5\\_vl-auto\\_causal\\_lm-default-load | expected to pass (no expectation) |" in md
    assert "| model | strategy | 4.49.0 | 4.52.4 | 4.57.6 | 5.0.0 (latest) |" in md
    assert "| **qwen2\\_5\\_vl** | auto\\_causal\\_lm | ✅ | · | ✅ | 🔺❌ |" in md
    assert "| **gemma3** | auto\\_model | ❌\\* | · | ❌\\* | 🔧✅ |" in md
    assert "## Fine-tunes: round trip and cross-release" in md
    assert md.count("<details>") == md.count("</details>") >= 2
    assert "invalid.jsonl:3" in md


def test_markdown_shows_html_from_messages_as_text(everything):
    md = render_markdown(everything)
    assert SCRIPT not in md and "<img" not in md
    assert "&lt;script&gt;window.\\_\\_xss=1&lt;/script&gt;" in md


def _huge(tmp_path: Path) -> Path:
    """600 failing cells with 20,000-character messages: 12 MB of raw text."""
    path = tmp_path / "huge.jsonl"
    with path.open("w") as out:
        for i in range(600):
            line = {
                **BASE,
                "model": f"m{i % 40:02d}",
                "cell_id": f"m{i}-x",
                "strategy": f"s{i // 40}",
                "status": "fail",
                "error_type": "RuntimeError",
                "message": f"{i} " + "x" * 20_000,
            }
            out.write(json.dumps(line) + "\n")
    return path


def test_markdown_stays_under_the_step_summary_cap_and_says_what_it_cut(tmp_path):
    report = build_report([_huge(tmp_path)])
    md = render_markdown(report)
    assert len(md.encode()) <= MAX_BYTES
    assert re.search(r"… \\\[cut: 200\d\d chars; full text in report\.json\\\]", md)
    small = render_markdown(report, max_bytes=200_000)  # the head fits, the folded details do not
    assert len(small.encode()) <= 200_000
    assert re.search(r"\d+ detail sections left out to stay under 200000 bytes", small)
    tiny = render_markdown(report, max_bytes=50_000)  # not even the regressions table fits
    assert len(tiny.encode()) <= 50_000
    assert tiny.rstrip().endswith("Cut at 50000 bytes (size cap); see report.json or index.html for the rest.")


def test_html_is_self_contained_and_escapes_every_message(everything):
    page = render_html(everything)
    assert SCRIPT not in page and "<img src=x onerror" not in page
    assert page.count("<script>") == 1  # ours, inline
    assert not re.search(r"<(link|img|iframe)\b|<script\b[^>]*\bsrc=", page)  # nothing fetched from anywhere
    assert "<style>" in page and 'id="f-model"' in page and "Could not read (7)" in page


def test_a_message_on_the_first_screen_is_text(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({**BASE, "status": "fail", "error_type": "ValueError", "message": SCRIPT}) + "\n")
    page = render_html(build_report([path]))  # a regression: its message is in the causes and the regression table
    assert SCRIPT not in page and "&lt;script&gt;window.__xss=1&lt;/script&gt;" in page


def test_the_page_carries_the_first_screen_and_each_model_has_its_cell_file(tmp_path, everything):
    page = render_html(everything)
    files = cell_files(everything)
    models = sorted({c.model for c in everything.cells})
    assert sorted(files) == [f"cells/{m}.js" for m in models]
    for model in models:
        assert f'data-src="cells/{model}.js"' in page
    assert 'id="headline"' in page and 'id="causes"' in page and 'id="models"' in page
    assert 'class="open"' not in page, "no cell of the grid is in the page itself"
    text = files["cells/qwen2_5_vl.js"]
    assert text.startswith("compatMatrixCells({") and text.endswith("});\n")
    data = json.loads(text[len("compatMatrixCells("):-len(");\n")])
    messages = [p.get("message", "") for row in data["rows"] for cell in row["cells"].values() for p in cell["probes"]]
    assert any(SCRIPT in m for m in messages), "the message is kept as it was: the page shows it as text"
    cells = sum(len(cell["probes"]) for g in map(lambda f: json.loads(f[len("compatMatrixCells("):-len(");\n")]), files.values())
                for row in g["rows"] for cell in row["cells"].values())
    crossed = sum(len(cell["probes"]) for g in map(lambda f: json.loads(f[len("compatMatrixCells("):-len(");\n")]), files.values())
                  if g["cross"] for _, _, cell in g["cross"]["cells"])
    assert cells + crossed == len(everything.cells), "every cell is in exactly one model's file"


def test_a_model_gone_from_the_report_loses_its_cell_file(tmp_path, everything):
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "old_model.js").write_text("compatMatrixCells({});\n")
    written = write_outputs(everything, tmp_path)
    assert not (tmp_path / "cells" / "old_model.js").exists()
    assert sorted(p.name for p in (tmp_path / "cells").iterdir()) == sorted(p.name for p in written if p.parent.name == "cells")


def test_html_trend_strip_from_history(tmp_path, everything):
    history = tmp_path / "history"
    (history / "night1").mkdir(parents=True)
    everything.write(history / "night1" / "report.json")
    (history / "broken.json").write_text("{not json")
    report = build_report([FIXTURES / "nightly"], history=history)
    assert [p.cells for p in report.trend] == [70]
    assert [p.kind for p in report.problems] == ["bad_history"]
    page = render_html(report)
    assert page.count('class="bar') == 2  # the earlier report and this one
    assert 'id="trend"' not in render_html(everything)


def test_junit_one_valid_file_per_release(tmp_path, everything):
    everything.write(tmp_path / "report.json")
    assert main([str(FIXTURES / "nightly"), str(FIXTURES / "bad"), str(FIXTURES / "rerun"), "--out", str(tmp_path / "o")]) == 0
    files = sorted(p.name for p in (tmp_path / "o").glob("junit-*.xml"))
    assert files == ["junit-4.49.0.xml", "junit-4.52.4.xml", "junit-4.57.6.xml", "junit-5.0.0.xml"]
    root = ET.parse(tmp_path / "o" / "junit-4.49.0.xml").getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("21", "0", "0", "6")
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["gemma3-auto_model-default-load"].find("skipped").get("message").startswith("expected fail")
    assert SCRIPT in cases["qwen2_5_vl-smart-default-forward"].find("skipped").text  # XML escaping round-trips
    late = ET.parse(tmp_path / "o" / "junit-5.0.0.xml").getroot()
    failure = next(c for c in late.iter("testcase") if c.get("name") == "qwen2_5_vl-auto_causal_lm-default-load").find("failure")
    assert failure.get("type") == "CheckFailed" and "lm_head.weight" in failure.text


def test_junit_survives_control_characters(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({**BASE, "status": "error", "message": "\x1b[31mred\x1b[0m \x00 nul"}) + "\n")
    assert main([str(path), "--out", str(tmp_path / "o")]) == 0
    error = ET.parse(tmp_path / "o" / "junit-4.57.6.xml").getroot().find(".//error")
    assert "red" in error.text and "nul" in error.text


def test_report_command_writes_everything_and_the_step_summary(tmp_path, monkeypatch, capsys):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert main([str(FIXTURES / "nightly"), str(FIXTURES / "bad"), "--out", str(tmp_path / "o")]) == 0
    assert {p.name for p in (tmp_path / "o").iterdir()} >= {"report.json", "report.md", "index.html"}
    text = summary.read_text()
    assert text.startswith("earlier step\n# compat-matrix report")
    err = capsys.readouterr().err
    assert "bad/truncated.jsonl:3" in err and "bad/invalid.jsonl:2" in err


def test_report_command_refuses_an_unreadable_baseline_and_empty_input(tmp_path, capsys):
    (tmp_path / "baseline.json").write_text("[]")
    out = str(tmp_path / "o")
    assert main([str(FIXTURES / "nightly"), "--out", out, "--baseline", str(tmp_path / "baseline.json")]) == 2
    assert "baseline.json: report schema_version None" in capsys.readouterr().err
    assert main([str(FIXTURES / "bad" / "invalid.jsonl"), "--out", out]) == 2
    assert "no readable cell" in capsys.readouterr().err
    assert "Could not read (3)" in (tmp_path / "o" / "report.md").read_text()  # still written, saying why
