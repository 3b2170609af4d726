"""`compat-matrix report ... --support-table`: models x releases for a README, with a footnote per cause."""

from __future__ import annotations

import json
from pathlib import Path

from reports.build import build_report
from reports.cli import main
from reports.support_table import support_table

FIXTURES = Path(__file__).parent / "fixtures" / "results"
BASE = json.loads((FIXTURES / "nightly" / "tf457.jsonl").read_text().splitlines()[0])
VLM_R1 = {"status": "fail", "transformers": "", "reason": "the VLM-R1 break: AutoModelForCausalLM does not map this config",
          "link": None}


def cells(tmp_path: Path) -> Path:
    """qwen2_5_vl: explicit_class passes in 4.57.6 and its forward fails in 5.24.0 (auto_vision2seq,
    gone in 5.x, is unsupported there: it must not stand for the model); auto_causal_lm fails as
    expected everywhere. qwen3 is unknown to 4.49.0."""
    lines = []

    def add(model, strategy, probe, release, status="pass", error_type=None, message="", expected=None):
        lines.append({**BASE, "transformers": release, "env": f"tf{release}", "model": model, "strategy": strategy,
                      "probe": probe, "cell_id": f"{model}-{strategy}-default-{probe}", "status": status,
                      "error_type": error_type, "message": message, "expected": expected})

    for release in ("4.49.0", "4.57.6", "5.24.0"):
        for probe in ("load", "forward"):
            broken = release == "5.24.0" and probe == "forward"
            add("qwen2_5_vl", "explicit_class", probe, release, *(("fail", "ValueError", "mm_token_type_ids is missing")
                                                                  if broken else ()))
            add("qwen2_5_vl", "auto_vision2seq", probe, release,
                *(("unsupported", None, "no AutoModelForVision2Seq") if release == "5.24.0" else ()))
            add("qwen2_5_vl", "auto_causal_lm", probe, release, "fail", "ValueError",
                ("" if probe == "load" else "not run, the load failed: ")
                + "Unrecognized configuration class for this kind of AutoModel: AutoModelForCausalLM.", VLM_R1)
            add("qwen3", "explicit_class", probe, release,
                *(("unsupported", None, "model_type qwen3 is unknown") if release == "4.49.0" else ()))
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_best_route_per_model_and_release_with_footnotes(tmp_path):
    table = support_table(build_report([cells(tmp_path)]))
    assert "| qwen2\\_5\\_vl | ✅ | ✅ | ❌[^1] |" in table  # not ➖: an absent strategy says nothing of the model
    assert "| qwen3 | ➖ | ✅ | ✅ |" in table
    [note] = [line for line in table.splitlines() if line.startswith("[^")]
    assert note.startswith("[^1]: forward: ValueError: mm\\_token\\_type\\_ids is missing")
    assert "(qwen2\\_5\\_vl x explicit\\_class x forward; 5.24.0)" in note


def test_one_strategy_and_the_expectation_reason_as_footnote(tmp_path):
    table = support_table(build_report([cells(tmp_path)]), strategy="auto_causal_lm")
    assert "| qwen2\\_5\\_vl | ❌[^1] | ❌[^1] | ❌[^1] |" in table  # one cause, one footnote
    assert "qwen3" not in table  # no cell of that strategy
    assert "[^1]: the VLM-R1 break: AutoModelForCausalLM does not map this config" in table


def test_the_command_writes_support_md_and_refuses_unknown_selections(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    results, out = cells(tmp_path), tmp_path / "out"
    assert main([str(results), "--out", str(out), "--support-table", "--strategy", "explicit_class"]) == 0
    printed = capsys.readouterr().out
    assert (out / "support.md").read_text() in printed and "strategy `explicit_class`" in printed
    assert main([str(results), "--out", str(out), "--support-table", "--profile", "trainer"]) == 2
    assert "--profile 'trainer': no cell of it in this report; it has default" in capsys.readouterr().err
    assert main([str(results), "--out", str(out), "--strategy", "smart"]) == 2
    assert "--strategy and --profile go with --support-table" in capsys.readouterr().err


def test_a_route_that_passes_every_probe_that_ran_is_a_pass_with_a_note(tmp_path):
    """trl_grpo is skipped on image-text models here (no torchvision): the model still passes what
    ran, and the footnote says what did not run and why, instead of a bare "not run here"."""
    path = cells(tmp_path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    skipped = [{**line, "probe": "trl_grpo", "cell_id": line["cell_id"].replace("-load", "-trl_grpo"),
                "status": "skipped", "message": "needs torchvision"}
               for line in lines if line["model"] == "qwen2_5_vl" and line["probe"] == "load"]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines + skipped))
    table = support_table(build_report([path]))
    assert "| qwen2\\_5\\_vl | ✅[^1] | ✅[^1] | ❌[^2] |" in table
    assert "[^1]: trl\\_grpo not run here: needs torchvision" in table


def test_causes_with_one_reason_share_one_footnote_that_says_where_each_holds(tmp_path):
    """Two models break with other messages (two causes) for the reason matrix.yaml gives both; a
    third break has its own reason: two footnotes, not three."""
    shared = {"status": "fail", "transformers": "", "reason": "vision LoRA gets no gradient (peft#2880)", "link": None}
    other = {"status": "fail", "transformers": "", "reason": "mm_token_type_ids is required from 5.24", "link": None}
    lines = []
    for model, release, message, expected in (("gemma3", "4.57.6", "no grad on vision_tower.q_proj", shared),
                                              ("llava", "4.57.6", "RuntimeError: element 0 of tensors does not require grad", shared),
                                              ("qwen2_vl", "5.24.0", "mm_token_type_ids is missing", other)):
        for release_ in ("4.57.6", "5.24.0"):
            failing = release_ == release
            lines.append({**BASE, "transformers": release_, "env": f"tf{release_}", "model": model, "strategy": "smart",
                          "probe": "grpo_step", "cell_id": f"{model}-smart-default-grpo_step",
                          "status": "fail" if failing else "pass", "error_type": "CheckFailed" if failing else None,
                          "message": message if failing else "", "expected": expected if failing else None})
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = build_report([path])
    assert len([c for c in report.causes if c.expectations]) == 3, "three causes"
    table = support_table(report)
    assert "| gemma3 | ❌[^1] | ✅ |" in table and "| llava | ❌[^1] | ✅ |" in table and "| qwen2\\_vl | ✅ | ❌[^2] |" in table
    notes = [line for line in table.splitlines() if line.startswith("[^")]
    assert len(notes) == 2
    assert notes[0].startswith("[^1]: vision LoRA gets no gradient (peft\\#2880) (")
    assert "gemma3 x smart x grpo\\_step; 4.57.6" in notes[0] and "llava x smart x grpo\\_step; 4.57.6" in notes[0]
