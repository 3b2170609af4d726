"""Failing cells grouped by cause, on messages the matrix produced (4.57.6 and 5.24.0, tiny models, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from compat_matrix.spec.schema import Expectation
from reports.build import build_report
from reports.signature import signature

FIXTURES = Path(__file__).parent / "fixtures" / "results"
BASE = json.loads((FIXTURES / "nightly" / "tf457.jsonl").read_text().splitlines()[0])
NAMES = ("llama", "qwen2", "qwen2_vl", "qwen2_5_vl", "Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2-VL-2B-Instruct")

UNRECOGNIZED_457 = (
    "Unrecognized configuration class <class 'transformers.models.qwen2_5_vl.configuration_qwen2_5_vl.Qwen2_5_VLConfig'> "
    "for this kind of AutoModel: AutoModelForCausalLM.\nModel type should be one of ApertusConfig, ArceeConfig, "
    "AriaTextConfig, BambaConfig, BartConfig"
)
UNRECOGNIZED_524 = (
    "Unrecognized configuration class <class 'transformers.models.qwen2_vl.configuration_qwen2_vl.Qwen2VLConfig'> "
    "for this kind of AutoModel: AutoModelForCausalLM.\nModel type should be one of GPT2Config, AfmoeConfig, "
    "ApertusConfig, Apertus1p5TextConfig, ArceeConfig, AriaTextConfig, AXK1Config, AXK2Config"
)
UNRECOGNIZED_TEXT = (
    "Unrecognized configuration class <class 'transformers.models.llama.configuration_llama.LlamaConfig'> for this "
    "kind of AutoModel: AutoModelForImageTextToText.\nModel type should be one of AriaConfig, AyaVisionConfig"
)
NONE_SUBSCRIPT = "{cls} loaded, but a text forward raised TypeError: 'NoneType' object is not subscriptable"
NO_ATTRIBUTE = "'{cls}' object has no attribute '{name}'"
FEWER_INPUTS = (
    "forward with only ['attention_mask', 'image_grid_thw', 'input_ids', 'pixel_values'] gives different logits "
    "than with every processor output (relative max diff {diff})"
)


def sig(message: str, probe: str = "load", error_type: str = "ValueError", **kwargs):
    return signature(probe, error_type, message, model_names=NAMES, **kwargs)


def test_the_same_type_error_from_two_classes_is_one_cause():
    assert sig(NONE_SUBSCRIPT.format(cls="Qwen2VLForConditionalGeneration"), "forward", "TypeError") == sig(
        NONE_SUBSCRIPT.format(cls="Qwen2_5_VLForConditionalGeneration"), "forward", "TypeError"
    )
    assert sig(NO_ATTRIBUTE.format(cls="Qwen2_5_VLModel", name="generate"), "generate", "AttributeError") == sig(
        NO_ATTRIBUTE.format(cls="LlamaModel", name="generate"), "generate", "AttributeError"
    )


def test_another_attribute_or_auto_class_is_another_cause():
    generate = sig(NO_ATTRIBUTE.format(cls="LlamaModel", name="generate"), "grpo_step", "AttributeError")
    config = sig(NO_ATTRIBUTE.format(cls="LlamaModel", name="generation_config"), "grpo_step", "AttributeError")
    assert generate != config
    # the VLM-R1 break (AutoModelForCausalLM) is not a text model refused by AutoModelForImageTextToText
    assert sig(UNRECOGNIZED_457) != sig(UNRECOGNIZED_TEXT)
    # the same message in another stage or of another type is another cause
    assert sig(UNRECOGNIZED_457, "load") != sig(UNRECOGNIZED_457, "forward")
    assert sig(UNRECOGNIZED_457) != sig(UNRECOGNIZED_457, error_type="OSError")


def test_numbers_models_and_releases_do_not_split_causes():
    assert sig(FEWER_INPUTS.format(diff="0.427"), "forward", "CheckFailed") == sig(
        FEWER_INPUTS.format(diff="0.5"), "forward", "CheckFailed"
    )
    # 4.57.6 and 5.24.0 list other configs after the first line, and another model fails
    assert sig(UNRECOGNIZED_457) == sig(UNRECOGNIZED_524)
    assert sig("transformers 5.0.0 has no AutoModelForVision2Seq (AttributeError)", status="unsupported") == sig(
        "transformers 5.24.0 has no AutoModelForVision2Seq (AttributeError)", status="unsupported"
    )
    assert sig("cannot read /tmp/pytest-1/qwen2_5_vl-4.57.6/config.json") == sig("cannot read /home/x/llama/config.json")


def test_a_probe_that_did_not_run_counts_under_its_load():
    load = sig(UNRECOGNIZED_457, "load")
    for probe in ("forward", "surface", "generate", "grpo_step"):
        assert sig("not run, the load failed: " + UNRECOGNIZED_457, probe) == load
    assert load.stage == "load"
    assert sig(UNRECOGNIZED_457, "forward", cross_release=True).stage == "cross-release forward"
    assert sig("not run, the load failed: x", "forward", cross_release=True).stage == "cross-release read"


def line(model: str, strategy: str, probe: str, message: str, **fields) -> dict:
    record = {
        **BASE,
        "model": model,
        "hub_id": f"org/{model}",
        "strategy": strategy,
        "probe": probe,
        "cell_id": f"{model}-{strategy}-default-{probe}",
        "status": "fail",
        "error_type": "ValueError",
        "message": message,
        **fields,
    }
    return record


def write(path: Path, *lines: dict) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


PROBES = ("load", "forward", "surface", "generate", "grpo_step")


@pytest.fixture()
def vlm_r1(tmp_path):
    """The VLM-R1 break for two models in two releases (the load and four probes it kept from running),
    plus one passing strategy so the expectation must leave it out."""
    lines = []
    for release in ("4.57.6", "5.24.0"):
        for model, message in (("qwen2_5_vl", UNRECOGNIZED_457), ("qwen2_vl", UNRECOGNIZED_524)):
            for probe in PROBES:
                text = message if probe == "load" else "not run, the load failed: " + message
                lines.append(line(model, "auto_causal_lm", probe, text, transformers=release, env=f"tf{release}"))
                lines.append(line(model, "explicit_class", probe, "", transformers=release, env=f"tf{release}",
                                  status="pass", error_type=None))
    return build_report([write(tmp_path / "r.jsonl", *lines)])


def test_a_failed_load_is_one_break_per_route_and_release(vlm_r1):
    [cause] = vlm_r1.causes
    assert (cause.kind, cause.stage, cause.status) == ("regression", "load", "fail")
    assert len(cause.cells) == 20 and cause.breaks == 4  # 2 models x 2 releases; probes count under the load
    assert cause.scope == "qwen2_5_vl, qwen2_vl x auto_causal_lm x 5 probes"
    assert cause.release_ranges == "all 2 releases"
    assert "AutoModelForCausalLM" in cause.title and "Model type should be" not in cause.title
    assert cause.example.startswith("ValueError: Unrecognized configuration class") and "not run" not in cause.example


def test_the_expectation_yaml_records_exactly_the_failing_cells(vlm_r1):
    [cause] = vlm_r1.causes
    entries = yaml.safe_load(cause.expectation_yaml)
    assert entries == [
        {
            "status": "fail",
            "models": ["qwen2_5_vl", "qwen2_vl"],
            "strategies": ["auto_causal_lm"],
            "reason": entries[0]["reason"],
        }
    ]
    expectations = [Expectation.model_validate(e) for e in entries]
    for cell in vlm_r1.cells:
        covered = any(e.matches(cell.model, cell.transformers, cell.strategy, cell.probe, cell.load_kwargs) for e in expectations)
        assert covered == (cell.status == "fail"), cell.cell_id


def test_expectation_ranges_are_bounded_by_tested_releases(tmp_path):
    lines = [
        line("qwen2_5_vl", "smart", "forward", FEWER_INPUTS.format(diff=d), transformers=v, error_type="CheckFailed")
        for v, d in (("4.57.6", "0.1"), ("5.0.0", "0.2"))
    ]
    lines += [line("qwen2_5_vl", "smart", "forward", "", transformers=v, status="pass", error_type=None)
              for v in ("4.49.0", "5.24.0")]
    lines += [line("llama", "smart", "forward", FEWER_INPUTS.format(diff="0.3"), transformers="5.24.0", error_type="CheckFailed")]
    report = build_report([write(tmp_path / "r.jsonl", *lines)])
    [cause] = report.causes
    assert cause.release_ranges == "4.57.6-5.24.0" and cause.breaks == 3
    entries = yaml.safe_load(cause.expectation_yaml)
    assert sorted((e["models"], e.get("transformers")) for e in entries) == [
        (["llama"], ">=5.24.0"),
        (["qwen2_5_vl"], ">=4.57.6,<=5.0.0"),  # not 4.49.0 nor 5.24.0, where it passes
    ]


def test_kinds_come_in_order_and_expected_failures_keep_their_reason(tmp_path):
    expected = {"status": "fail", "transformers": "", "reason": "AutoModel has no LM head", "link": None}
    lines = [
        line("llama", "auto_model", "generate", NO_ATTRIBUTE.format(cls="LlamaModel", name="generate"),
             error_type="AttributeError", expected=expected),
        line("qwen2", "auto_model", "generate", NO_ATTRIBUTE.format(cls="Qwen2Model", name="generate"),
             error_type="AttributeError", expected=expected),
        line("llama", "smart", "forward", FEWER_INPUTS.format(diff="0.4"), error_type="CheckFailed"),
    ]
    report = build_report([write(tmp_path / "r.jsonl", *lines)])
    assert [(c.kind, len(c.cells)) for c in report.causes] == [("regression", 1), ("expected", 2)]
    assert report.causes[1].expectations == ("AutoModel has no LM head",)
    assert report.causes[1].expectation_yaml == ""


def test_silent_changes_between_consecutive_releases_are_one_cause(tmp_path):
    lines = [
        line(model, strategy, probe, "", transformers=v, status="pass", error_type=None, dtype=dtype)
        for model in ("llama", "qwen2") for strategy in ("smart", "auto_causal_lm") for probe in PROBES
        for v, dtype in (("4.57.6", "float32"), ("5.0.0", "bfloat16"))
    ]
    report = build_report([write(tmp_path / "r.jsonl", *lines)])
    [cause] = report.causes
    assert (cause.kind, cause.title, len(cause.cells)) == ("silent", "dtype: float32 -> bfloat16", 20)
    assert cause.release_ranges == "4.57.6 -> 5.0.0"


def test_a_bisected_first_bad_release_starts_the_range(vlm_r1):
    from reports.causes import find_causes

    releases = [r.transformers for r in vlm_r1.releases]
    bisected = {c.cell_id: "4.55.0" for c in vlm_r1.cells}
    [cause] = find_causes(vlm_r1.cells, vlm_r1.regressions, vlm_r1.fixes, releases, first_bad=bisected)
    assert cause.first_bad == "4.55.0"
    assert yaml.safe_load(cause.expectation_yaml)[0]["transformers"] == ">=4.55.0"


def test_causes_round_trip_through_report_json(vlm_r1, tmp_path):
    vlm_r1.write(tmp_path / "report.json")
    again = type(vlm_r1).read(tmp_path / "report.json")
    assert again.causes == vlm_r1.causes and again.cells == vlm_r1.cells


def test_a_smart_row_names_its_routes_without_repeating_their_errors(tmp_path):
    """A fallback chain's message as loader/errors.py writes it (two routes, as 4.57.6 read a Qwen3-VL 5.x saved)."""
    from reports.render_md import render_markdown
    from reports.text import brief

    message = ("no route loaded a usable model:\n  architectures:Qwen3VLForConditionalGeneration: AttributeError: "
               "'NoneType' object has no attribute 'get'\n  auto:AutoModelForImageTextToText: AttributeError: "
               "'NoneType' object has no attribute 'get'")
    assert brief(message) == ("no route loaded a usable model (tried architectures:Qwen3VLForConditionalGeneration, "
                              "auto:AutoModelForImageTextToText; each route's error is in the cell's details)")
    assert brief("'NoneType' object has no attribute 'get'") == "'NoneType' object has no attribute 'get'"
    report = build_report([write(tmp_path / "r.jsonl", line("qwen3_vl", "smart", "load", message, error_type="LoadFailed"))])
    md = render_markdown(report)
    every_cell = md.split("Regressions, every cell", 1)[1].split("</details>", 1)[0]
    assert "tried architectures:Qwen3VLForConditionalGeneration" in every_cell and "'get'" not in every_cell
    [cause] = report.causes  # the cause keeps the routes' errors: they are what differs between causes
    assert "‹class›: AttributeError" in cause.signature and cause.example.endswith("no attribute 'get'")


NO_VIDEO = "SmolVLMProcessor.__init__() missing 1 required positional argument: 'video_processor'"


def test_a_checkpoint_that_cannot_be_built_or_read_is_one_cause_that_stops_every_probe(tmp_path):
    """transformers 5.25.0 and SmolVLM without torchvision, as the harness recorded it before the
    missing package was recognised: building the tiny checkpoint failed (`error`, every probe of
    every strategy) and 4.57.6 could not read what 5.25.0 saved (`fail`): one root, one cause."""
    root = {"stage": "checkpoint", "error_type": "TypeError", "message": NO_VIDEO}
    lines = []
    for strategy in ("auto_model", "explicit_class", "smart"):
        for probe in PROBES:
            lines.append(line("smolvlm", strategy, probe, f"building the tiny checkpoint failed: TypeError: {NO_VIDEO}",
                              transformers="5.25.0", env="tf5_25_0", status="error", error_type="HarnessError",
                              details={"root": root}))
    for probe in ("load", "forward"):
        lines.append(line("smolvlm", "smart", probe, f"cannot read the config or processor that transformers 5.25.0 "
                          f"saved: TypeError: {NO_VIDEO}", cell_id=f"smolvlm-smart-default-{probe}@5.25.0",
                          saved_by="5.25.0", checkpoint="cross_release", error_type="CellFailed",
                          details={"root": root}))
    report = build_report([write(tmp_path / "r.jsonl", *lines)])
    [cause] = report.causes
    assert cause.stage == "checkpoint" and cause.status == "error" and len(cause.cells) == 17
    assert cause.title == ("checkpoint: TypeError: ‹class›.__init__() missing ‹n› required positional argument: "
                           "'video_processor' (stops 17 probes)")
    assert cause.breaks == 2  # the build in 5.25.0, and 4.57.6 reading what 5.25.0 saved


def test_writers_outside_the_reports_releases_are_listed_by_version(tmp_path):
    """As-published writers (4.49.0, 4.51.3, ...) are not among a check's releases: they were listed in set order,
    so two reports of the same cells (a check and the same check from the store) differed."""
    writers = ("4.55.0", "4.45.0", "4.52.4", "4.49.0", "4.51.3")
    lines = [line("qwen2", "smart", "load", "unexpected keys: lm_head.weight", cell_id=f"qwen2-smart-default-load@{w}",
                  saved_by=w, checkpoint="cross_release", transformers="4.57.6", env="tf4_57_6") for w in writers]
    [cause] = build_report([write(tmp_path / "r.jsonl", *lines)]).causes
    assert cause.saved_by == ("4.45.0", "4.49.0", "4.51.3", "4.52.4", "4.55.0")
