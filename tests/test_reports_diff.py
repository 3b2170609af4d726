"""The upgrade view that `compat-matrix check --from A --to B` prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reports.build import build_report
from reports.check_view import CauseLine, Section, format_by_cause
from reports.diff import compare_releases, format_upgrade, upgrade_exit_code

FIXTURES = Path(__file__).parent / "fixtures" / "results"
BASE = json.loads((FIXTURES / "nightly" / "tf457.jsonl").read_text().splitlines()[0])


@pytest.fixture(scope="module")
def nightly():
    return build_report([FIXTURES / "nightly"])


def test_breaks_fixes_and_silent_changes_between_two_releases(nightly):
    view = compare_releases(nightly, "4.57.6", "latest")  # latest is matched through transformers_requested
    assert (view.from_release, view.to_release) == ("4.57.6", "5.0.0")
    breaks = [(c.after.cell_id, c.before.status, c.after.status) for c in view.breaks]
    assert breaks[0] == ("qwen2_5_vl-auto_causal_lm-default-load", "pass", "fail")  # worst first
    assert {b[0] for b in breaks[1:]} == {
        "qwen2_5_vl-auto_vision2seq-default-load",
        "qwen2_5_vl-auto_vision2seq-default-forward",
        "qwen2_5_vl-auto_vision2seq-default-generate",
    }
    # skipped in 5.0.0 (not run): no verdict there, so neither a break nor a fix
    assert [(c.after.cell_id, c.after.status) for c in view.not_comparable] == [
        ("qwen2_5_vl-auto_causal_lm-default-forward", "skipped"),
        ("qwen2_5_vl-auto_causal_lm-default-generate", "skipped"),
    ]
    assert [c.after.cell_id for c in view.fixes] == [
        "gemma3-auto_model-default-load",
        "gemma3-auto_model-default-forward",
        "qwen2_5_vl-smart-default-generate",
    ]
    silent = [(s.cell.cell_id, s.field, s.before, s.after) for s in view.silent]
    assert silent == [
        ("qwen2_5_vl-smart-vlm_r1-load", "missing_keys", [], ["model.visual.merger.ln_q.bias"]),
        ("qwen2_5_vl-smart-vlm_r1-load", "dtype", "bfloat16", "float32"),
        ("qwen2_5_vl-smart-vlm_r1-forward", "dtype", "bfloat16", "float32"),
        ("qwen2_5_vl-smart-vlm_r1-generate", "dtype", "bfloat16", "float32"),
        ("llama-auto_causal_lm-default-forward", "max_abs_diff", 0.0, 0.003),
        ("llama-smart-default-forward", "max_abs_diff", 0.0, 0.003),
    ]
    assert view.only_in_from == ("qwen2-auto_causal_lm-default-load@4.57.6",)  # new cells are listed, not compared
    assert view.only_in_to == ()
    assert [c.cell_id for c in view.old_checkpoints] == [
        "qwen2-auto_causal_lm-default-load@4.57.6",
        "qwen2-auto_causal_lm-default-forward@4.57.6",
    ]
    assert [c.probe for c in view.old_checkpoint_failures] == ["forward"]
    assert upgrade_exit_code(view) == 1


def test_the_printed_view_reads_worst_first(nightly):
    text = format_upgrade(compare_releases(nightly, "4.57.6", "5.0.0"))
    assert text.index("Breaks when upgrading (4)") < text.index("Fixed by upgrading (3)") < text.index("Silent changes")
    assert "✗ qwen2_5_vl-auto_causal_lm-default-load  pass -> fail" in text
    assert "CheckFailed: load is not equivalent" in text
    assert "was IndexError: index 990" in text  # a fix shows the error it no longer has
    assert "missing_keys: +model.visual.merger.ln_q.bias" in text
    assert "max_abs_diff: 0.0 -> 0.003" in text
    assert "Checkpoints saved by 4.57.6 that 5.0.0 fails to use (1 of 2)" in text


def test_no_change_means_exit_zero(nightly):
    view = compare_releases(nightly, "4.57.6", "4.57.6")
    assert (view.breaks, view.fixes, view.silent) == ((), (), ())
    assert upgrade_exit_code(view) == 0
    assert "No differences." in format_upgrade(view)


def test_an_unknown_release_lists_the_known_ones(nightly):
    with pytest.raises(ValueError, match=r"no release '4\.40\.0'.*5\.0\.0 \(requested as latest\)"):
        compare_releases(nightly, "4.40.0", "5.0.0")


def _pair(tmp_path: Path, old: dict, new: dict):
    path = tmp_path / "r.jsonl"
    lines = [{**BASE, **old, "transformers": "4.57.6"}, {**BASE, **new, "transformers": "5.0.0"}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return compare_releases(build_report([path]), "4.57.6", "5.0.0")


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ({"loaded_class": "LlamaForCausalLM"}, {"loaded_class": "LlamaModel"}, "loaded_class"),
        ({"details": {"param_count": 10}}, {"details": {"param_count": 12}}, "param_count"),
        ({"details": {"unexpected_keys": ["a"]}}, {"details": {"unexpected_keys": ["a", "b"]}}, "unexpected_keys"),
        ({"details": {"max_abs_diff": 1e-3}}, {"details": {"max_abs_diff": 2e-3}}, "max_abs_diff"),
        ({"dtype": "bfloat16", "details": {"max_abs_diff": 0.01, "rel_diff": 0.0025}},
         {"dtype": "bfloat16", "details": {"max_abs_diff": 0.2, "rel_diff": 0.05}}, "max_abs_diff"),
    ],
)
def test_silent_changes_in_cells_that_pass_in_both(tmp_path, old, new, field):
    [change] = _pair(tmp_path, old, new).silent
    assert change.field == field


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"details": {"max_abs_diff": 1e-3}}, {"details": {"max_abs_diff": 1e-3 + 1e-8}}),  # float noise
        # one float32 step on logits of about 4 (seen between releases, bisect called it a change)
        ({"details": {"max_abs_diff": 0.0, "rel_diff": 0.0}}, {"details": {"max_abs_diff": 1.19e-6, "rel_diff": 3e-7}}),
        ({"dtype": "bfloat16", "details": {"max_abs_diff": 0.008, "rel_diff": 0.002}},
         {"dtype": "bfloat16", "details": {"max_abs_diff": 0.012, "rel_diff": 0.003}}),  # bf16 rounding
        ({"details": {"max_abs_diff": 2e-3}}, {"details": {"max_abs_diff": 1e-3}}),  # shrank
        ({"details": {"missing_keys": ["b", "a"]}}, {"details": {"missing_keys": ["a", "b"]}}),  # same set
        ({"details": {"missing_keys": []}}, {"details": {}}),
    ],
)
def test_no_silent_change(tmp_path, old, new):
    assert _pair(tmp_path, old, new).silent == ()


def test_silent_changes_are_only_looked_for_where_both_pass(tmp_path):
    view = _pair(tmp_path, {"status": "fail", "loaded_class": "A"}, {"status": "fail", "loaded_class": "B"})
    assert (view.breaks, view.fixes, view.silent) == ((), (), ())


def test_checkpoints_are_checked_in_both_directions(nightly):
    """Seen from 5.0.0, the checkpoints 4.57.6 saved are the *other* release's: the reverse view
    (an old stack reading what the upgraded release writes) reports them, and they fail the check."""
    view = compare_releases(nightly, "5.0.0", "4.57.6")
    assert view.old_checkpoints == ()
    assert [c.cell_id for c in view.new_checkpoint_failures] == ["qwen2-auto_causal_lm-default-forward@4.57.6"]
    assert "Checkpoints saved by 4.57.6 that 5.0.0 fails to use (1 of 2)" in format_upgrade(view)
    assert upgrade_exit_code(view) == 1


def test_a_checkpoint_read_cleanly_but_computed_differently_is_drift_not_unusable(tmp_path):
    """The same cross-release failure, once with the error_type the probes give when the load used
    every tensor: it moves from "fails to use" to its own drift heading."""
    lines = [json.loads(line) for line in (FIXTURES / "nightly" / "tflatest.jsonl").read_text().splitlines()]
    for line in lines:
        if line["cell_id"] == "qwen2-auto_causal_lm-default-forward@4.57.6":
            line["error_type"] = "Drift"
    (tmp_path / "tflatest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp_path / "tf457.jsonl").write_text((FIXTURES / "nightly" / "tf457.jsonl").read_text())
    view = compare_releases(build_report([tmp_path]), "4.57.6", "5.0.0")
    text = format_upgrade(view)
    assert "fails to use" not in text
    assert "Checkpoints saved by 4.57.6 that 5.0.0 reads cleanly but computes other numbers on (drift; 1 of 2)" in text
    by_cause = format_by_cause(view)
    assert "fails to use" not in by_cause
    assert "Checkpoints saved by 4.57.6 that 5.0.0 reads cleanly but computes other numbers on (drift): 1 causes" in by_cause


def test_check_prints_one_line_per_cause(nightly):
    from reports.check_view import format_by_cause

    text = format_by_cause(compare_releases(nightly, "4.57.6", "5.0.0"))
    lines = text.splitlines()
    assert lines[0].startswith("transformers 4.57.6 -> 5.0.0: 21 cells in both; something breaks; breaks: 2 causes (4 cells)")
    breaks = lines[lines.index("Breaks when upgrading 4.57.6 -> 5.0.0: 2 causes, 4 cells") + 1:][:2]
    # worst first; the three probes of a strategy gone in 5.0.0 are one cause, counted under the load
    assert breaks[0].startswith("  ✗    1  qwen2_5_vl x auto_causal_lm x load · load: CheckFailed: load is not equivalent")
    assert breaks[1].startswith("  ∅    3  qwen2_5_vl x auto_vision2seq x 3 probes · load: transformers ‹n› has no AutoModelForVision2Seq")
    assert "  ✓    3  qwen2_5_vl x smart x vlm_r1 x 3 probes · dtype: bfloat16 -> float32" in lines
    apart = lines.index("Not comparable (no verdict on one side: skipped there, or a failing strategy gone): 1 causes, 2 cells")
    assert lines[apart + 1].startswith("  ↷    2  qwen2_5_vl x auto_causal_lm x 2 probes · pass -> skipped")
    assert len(lines) < len(format_upgrade(compare_releases(nightly, "4.57.6", "5.0.0")).splitlines())


def test_check_fits_the_lines_it_is_given_breaks_first_the_rest_counted(nightly):
    from reports.check_view import by_cause, format_check, shown_causes

    view = compare_releases(nightly, "4.57.6", "5.0.0")
    everything = format_by_cause(view, everything=True).splitlines()
    least = format_by_cause(view, lines=0).splitlines()  # header, footer; per section its title and a count
    assert len(least) == 2 + 2 * len(by_cause(view)) + 1, least  # + "Only in 4.57.6" (a cell 5.0.0 lacks)
    floor = len(least)
    for lines in range(floor, len(everything) + 1):
        text = format_by_cause(view, lines=lines).splitlines()
        assert len(text) <= lines, text
        assert text[0] == everything[0] and text[-1] == everything[-1]
        assert [line for line in text if "causes, " in line] == [line for line in everything if "causes, " in line]
    assert format_by_cause(view, lines=len(everything)).splitlines() == everything, "what fits is all listed"
    drift = "Drift on the as-published checkpoints (4.57.6 -> 5.0.0):\n  llama ...\n  3 more models: ..."
    for lines in range(floor + 4, len(everything) + 5):
        text = format_check(view, drift, lines=lines).splitlines()
        assert len(text) <= lines and text[-4:] == ["", *drift.splitlines()], text
    breaks = [Section("breaks", "b", [CauseLine(f"b{i}", "fail", ()) for i in range(5)]),
              Section("fixes", "f", [CauseLine(f"f{i}", "pass", ()) for i in range(4)]),
              Section("silent", "s", [CauseLine("s", "pass", ())])]
    # 5 breaks; then a fix (and its "… 3 more" line), the silent change, a second fix: 9 lines
    assert shown_causes(breaks, 9) == [5, 2, 1]
    assert shown_causes(breaks, 3) == [0, 0, 1], "a cause that completes its section costs no line: its count goes"
    assert shown_causes(breaks, 100) == [5, 4, 1]


UNRECOGNIZED = "Unrecognized configuration class <class 'transformers.X'> for this kind of AutoModel: AutoModelForCausalLM."


def _llava(release: str, strategy: str, status: str, saved_by: str | None = None, message: str = "") -> dict:
    cell_id = f"llava-{strategy}-default-load" + (f"@{saved_by}" if saved_by else "")
    return {**BASE, "transformers": release, "env": f"tf{release}", "model": "llava", "hub_id": "org/llava",
            "modality": "image-text", "strategy": strategy, "probe": "load", "cell_id": cell_id, "saved_by": saved_by,
            "status": status, "error_type": "ValueError" if status == "fail" else None, "message": message}


def test_cross_release_sections_leave_out_what_the_readers_own_cells_already_fail(tmp_path):
    """auto_causal_lm cannot load an image-text model in either release: 5.0.0 failing on 4.57.6's
    checkpoint the same way is no news, and is counted, not listed; explicit_class failing only on the
    old checkpoint is what the upgrade changes."""
    lines = [_llava(r, "auto_causal_lm", "fail", message=UNRECOGNIZED) for r in ("4.57.6", "5.0.0")]
    lines += [_llava(r, "explicit_class", "pass") for r in ("4.57.6", "5.0.0")]
    lines += [_llava("5.0.0", "auto_causal_lm", "fail", "4.57.6", UNRECOGNIZED),
              _llava("5.0.0", "explicit_class", "fail", "4.57.6", "KeyError: 'rope_parameters'")]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    view = compare_releases(build_report([tmp_path / "r.jsonl"]), "4.57.6", "5.0.0")
    text = format_by_cause(view).splitlines()
    title = "Checkpoints saved by 4.57.6 that 5.0.0 fails to use"
    header = next(line for line in text if line.startswith(title))
    assert header == f"{title}: 1 causes, 1 cells; 1 more left out: 5.0.0's own cells fail the same way (--all lists them)"
    listed = text[text.index(header) + 1]
    assert "explicit_class" in listed and "rope_parameters" in listed
    assert not any("Unrecognized" in line for line in text)
    everything = format_by_cause(view, everything=True).splitlines()
    assert f"{title}: 2 causes, 2 cells" in everything
    assert any("auto_causal_lm" in line and "Unrecognized" in line for line in everything)


def test_check_describes_only_the_models_whose_numbers_move():
    from reports.drift import DriftComparison, OutputDiff, format_drift

    same = [DriftComparison(m, "4.57.6", "5.24.0", "same", (OutputDiff("text-only logits", True),)) for m in ("llama", "qwen2")]
    noted = DriftComparison("qwen2_vl", "4.57.6", "5.24.0", "same",
                            (OutputDiff("processor mm_token_type_ids", True, note="given only by 5.24.0"),))
    moved = DriftComparison("mllama", "4.57.6", "5.24.0", "drift", (OutputDiff("image+text logits", False, 0.8, 0.25),))
    absent = DriftComparison("smolvlm", "4.57.6", "5.24.0", "not compared", reason="no drift record for 5.24.0")
    comparisons = [*same, noted, moved, absent]
    text = format_drift(comparisons, "4.57.6", "5.24.0").splitlines()
    assert text[0] == "Drift on the as-published checkpoints (4.57.6 -> 5.24.0):"
    assert [line.split()[0] for line in text[1:]] == ["mllama", "4"]
    assert text[2] == ("  4 more models: 2 compute the same numbers (llama, qwen2); 1 compute the same numbers, their "
                       "processor giving other outputs (qwen2_vl); 1 have no record to compare (smolvlm) (--all describes them)")
    assert len(format_drift(comparisons, "4.57.6", "5.24.0", everything=True).splitlines()) == 1 + len(comparisons)


NEEDS_TORCHVISION = ("needs torchvision: SmolVLMProcessor requires a video processor; AutoVideoProcessor needs "
                     "torchvision: TypeError: SmolVLMProcessor.__init__() missing 1 required positional argument: "
                     "'video_processor'")


def _smolvlm(release: str, probe: str, status: str) -> dict:
    needs = {"message": NEEDS_TORCHVISION, "details": {"needs": "torchvision"}} if status == "skipped" else {}
    return {**BASE, "transformers": release, "env": f"tf{release}", "model": "smolvlm", "hub_id": "org/smolvlm",
            "strategy": "smart", "load_kwargs": "default", "probe": probe, "cell_id": f"smolvlm-smart-default-{probe}",
            "status": status, "error_type": None, "message": "", "details": {}, "expected": None, **needs}


def test_a_release_from_which_a_model_needs_a_missing_package_is_a_dependency_change_not_a_break(tmp_path):
    """transformers 5.25.0 and SmolVLM without torchvision: one dependency change in the report and in
    `check` (under new requirements), no break, no regression against a baseline where the cells passed."""
    probes = ("load", "forward", "generate")
    lines = [_smolvlm("5.24.0", p, "pass") for p in probes] + [_smolvlm("5.25.0", p, "skipped") for p in probes]
    path, passing = tmp_path / "r.jsonl", tmp_path / "passing.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    passing.write_text("".join(json.dumps(_smolvlm(line["transformers"], line["probe"], "pass")) + "\n" for line in lines))
    baseline = tmp_path / "baseline.json"
    baseline.write_text(build_report([passing]).model_dump_json())
    report = build_report([path], baseline=baseline)
    assert [(c.kind, c.title, len(c.cells)) for c in report.causes] == [
        ("dependency", "smolvlm needs torchvision from 5.25.0 (SmolVLMProcessor requires a video processor; "
                       "AutoVideoProcessor needs torchvision)", 3)]
    assert not report.regressions
    view = compare_releases(report, "5.24.0", "5.25.0")
    assert upgrade_exit_code(view) == 0 and not view.not_comparable and len(view.requirements) == 3
    text = format_by_cause(view)
    assert "nothing breaks; new requirements: 1 causes (3 cells)" in text, text
    assert "New requirements in 5.25.0: skipped for want of a package this environment lacks, not broken: 1 causes, " \
           "3 cells\n  ↷    3  smolvlm x smart x 3 probes · smolvlm needs torchvision from 5.25.0" in text, text


def test_a_package_is_no_longer_needed_only_where_the_newer_cell_passes(tmp_path):
    """A cell that needed torchvision in 4.57.6 and fails or is unsupported in 5.24.0 may have stopped before
    the step that needs it: no 'no longer needs' claim (the CI report made 8 such claims); a pass is evidence."""
    lines = [_smolvlm("4.57.6", p, "skipped") for p in ("load", "forward", "generate")]
    lines += [_smolvlm("5.24.0", "load", "pass"), _smolvlm("5.24.0", "forward", "fail"), _smolvlm("5.24.0", "generate", "unsupported")]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    dependency = [c for c in build_report([path]).causes if c.kind == "dependency"]
    assert [(c.title.split(" (")[0], sorted(c.cells)) for c in dependency] == [
        ("smolvlm no longer needs torchvision from 5.24.0", ["5.24.0/smolvlm-smart-default-load"])]
