"""The `surface` probe: the API paths training code touches, recorded as plain values without changing
the model; a path that a newer release drops is a regression of the upgrade view, with both values."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from compat_matrix.spec.schema import Settings, SurfaceSettings
from compat_matrix.spec.validate import MatrixError, load_matrix
from compat_tests.probes.surface import PROBE, describe, record
from reports.build import build_report
from reports.diff import compare_releases, format_upgrade, upgrade_exit_code
from reports.status import PROBE_ORDER
from tests.probe_fixtures import MATRIX, make_context, one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")

PATHS = ("get_input_embeddings()", "get_output_embeddings()", "get_decoder()", "get_decoder().layers", "model.layers.0",
         "model.language_model", "config.vocab_size", "config.rope_scaling", "gradient_checkpointing_enable()",
         "generation_config")
SETTINGS = Settings(surface=SurfaceSettings(paths=PATHS, required=("get_input_embeddings()", "get_output_embeddings()")))
RESULTS = Path(__file__).parent / "fixtures" / "results" / "nightly" / "tf457.jsonl"


def drop_everywhere(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> None:
    """Planted: `name` deleted from every class of `cls`'s MRO that defines it, as a release that drops it."""
    owners = [klass for klass in cls.__mro__ if name in vars(klass)]
    assert owners, f"{cls.__name__} has no {name}"
    for klass in owners:
        monkeypatch.delattr(klass, name)


def test_surface_runs_after_forward_on_the_model_as_loaded() -> None:
    assert PROBE_ORDER.index("forward") < PROBE_ORDER.index("surface") < PROBE_ORDER.index("generate")
    assert not PROBE.mutates_model


def test_paths_are_recorded_as_plain_values() -> None:
    outcome = PROBE.run(make_context("llama", settings=SETTINGS))
    assert outcome.status == "pass", outcome.message
    surface = outcome.details["surface"]
    assert list(surface) == list(PATHS)
    json.dumps(outcome.details, allow_nan=False)
    assert surface["get_input_embeddings()"] == {"exists": True, "value": "Embedding params=64000 weight=[1000, 64]"}
    assert surface["get_decoder()"]["value"].startswith("LlamaModel params=")
    assert surface["model.layers.0"]["value"].startswith("LlamaDecoderLayer params=")
    assert surface["config.vocab_size"] == {"exists": True, "value": 1000}
    assert surface["gradient_checkpointing_enable()"] == {"exists": True, "value": None}
    assert surface["generation_config"] == {"exists": True, "value": "GenerationConfig"}
    missing = surface["model.language_model"]
    assert missing["exists"] is False and missing["value"] is None
    assert "'LlamaModel' object has no attribute 'language_model'" in missing["error"]


def test_a_vision_tower_is_found_under_one_of_the_known_paths() -> None:
    paths = ("visual", "model.visual", "vision_tower", "model.vision_tower")
    surface = record(make_context("qwen2_vl").model, paths)
    assert any(entry["exists"] for entry in surface.values()), surface
    assert all(entry["value"].startswith("Qwen2VisionTransformerPretrainedModel") for entry in surface.values() if entry["exists"])


def test_calls_run_on_one_copy_and_the_model_is_left_as_loaded() -> None:
    ctx = make_context("llama", settings=SETTINGS)
    before = {name: tensor.clone() for name, tensor in ctx.model.state_dict().items()}
    copies: list[Any] = []

    def copier(model: Any) -> Any:
        copies.append(copy.deepcopy(model))
        return copies[-1]

    record(ctx.model, PATHS, copier)
    assert len(copies) == 1 and copies[0].is_gradient_checkpointing
    assert not ctx.model.is_gradient_checkpointing and not ctx.model.training
    after = ctx.model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    record(ctx.model, ("config.vocab_size", "model.layers"), copier)
    assert len(copies) == 1, "paths without a call must not copy the model"


def test_a_call_that_raises_exists_but_is_not_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_context("llama", settings=Settings(surface=SurfaceSettings(
        paths=("gradient_checkpointing_enable()",), required=("gradient_checkpointing_enable()",))))
    monkeypatch.setattr(type(ctx.model), "supports_gradient_checkpointing", False)
    outcome = PROBE.run(ctx)
    entry = outcome.details["surface"]["gradient_checkpointing_enable()"]
    assert entry["exists"] is True and entry["error"].startswith("ValueError:") and "does not support" in entry["error"]
    assert outcome.status == "fail" and "gradient_checkpointing_enable()" in outcome.message


def test_a_removed_required_path_fails_the_probe_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_context("llama", settings=SETTINGS)
    drop_everywhere(monkeypatch, type(ctx.model), "get_output_embeddings")
    outcome = PROBE.run(ctx)
    assert outcome.status == "fail" and outcome.error_type == "CheckFailed"
    assert outcome.details["surface"]["get_output_embeddings()"]["exists"] is False
    assert "get_output_embeddings()" in outcome.message and "has no attribute 'get_output_embeddings'" in outcome.message


@pytest.mark.parametrize(("value", "described"), [
    (torch.zeros(2, 3), "Tensor[2, 3] float32"),
    ({"rope_type": "default", "mrope_section": [2, 3, 3]}, {"rope_type": "default", "mrope_section": [2, 3, 3]}),
    (float("nan"), "nan"),
    ("x" * 300, "x" * 200 + "... (300 chars)"),
    (object(), "object"),
])
def test_values_are_plain_and_short(value: Any, described: Any) -> None:
    assert describe(value) == described


def test_long_containers_and_methods_are_cut_to_a_string() -> None:
    long = describe(list(range(500)))
    assert isinstance(long, str) and long.endswith(" chars)") and len(long) < 230
    model = make_context("llama").model
    assert describe(model.gradient_checkpointing_enable).startswith("method gradient_checkpointing_enable(")


@pytest.mark.parametrize(("surface", "says"), [
    ("{paths: [model.visual, 'get_decoder(1)']}", "not an attribute path: ['get_decoder(1)']"),
    ("{paths: [model.visual], required: [model.vision_tower]}", "required path(s) ['model.vision_tower'] are not in 'paths'"),
])
def test_bad_surface_settings_are_located(tmp_path: Path, surface: str, says: str) -> None:
    text = ("transformers: [4.57.6]\nsettings:\n  surface: " + surface + "\nmodels:\n  - {key: llama, hub_id: h, "
            "modality: text, recipe: {model_type: llama, architecture: LlamaForCausalLM}}\n")
    (tmp_path / "matrix.yaml").write_text(text)
    with pytest.raises(MatrixError) as caught:
        load_matrix(tmp_path / "matrix.yaml", check_model_types=False)
    [problem] = [str(p) for p in caught.value.problems]
    assert "settings.surface" in problem and says in problem, problem


def test_the_default_matrix_lists_what_training_code_touches() -> None:
    surface = MATRIX.settings.surface
    assert "surface" in MATRIX.probes
    assert {"get_input_embeddings()", "get_output_embeddings()", "get_decoder()", "model.language_model",
            "model.visual", "config.text_config.vocab_size", "config.rope_scaling", "gradient_checkpointing_enable()",
            "generation_config"} <= set(surface.paths)
    assert set(surface.required) <= set(surface.paths)


def _results_line(outcome: Any, release: str) -> dict[str, Any]:
    base = json.loads(RESULTS.read_text().splitlines()[0])
    return {**base, "transformers": release, "transformers_requested": release, "probe": "surface",
            "cell_id": "llama-auto_causal_lm-default-surface", "status": outcome.status, "message": outcome.message,
            "error_type": outcome.error_type, "details": outcome.details}


def test_a_path_gone_in_the_newer_release_is_an_upgrade_regression_with_both_values(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    older = PROBE.run(make_context("llama", settings=SETTINGS))
    ctx = make_context("llama", settings=SETTINGS)
    drop_everywhere(monkeypatch, type(ctx.model), "get_decoder")
    newer = PROBE.run(ctx)
    assert older.status == newer.status == "pass"  # get_decoder() is not required: only the upgrade view flags it
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(_results_line(o, r)) + "\n" for o, r in ((older, "4.57.6"), (newer, "5.0.0"))))
    view = compare_releases(build_report([path]), "4.57.6", "5.0.0")
    assert [loss.path for loss in view.surface_losses] == ["get_decoder()", "get_decoder().layers"]
    loss = view.surface_losses[0]
    assert loss.before["value"].startswith("LlamaModel params=") and loss.after["exists"] is False
    assert upgrade_exit_code(view) == 1 and view.breaks == ()
    text = format_upgrade(view)
    assert "2 API paths gone" in text and "API paths gone when upgrading (2):" in text
    assert "✗ llama-auto_causal_lm-default-surface  get_decoder()\n" in text
    assert "      4.57.6: LlamaModel params=" in text
    assert "      5.0.0:  missing (AttributeError: 'LlamaForCausalLM' object has no attribute 'get_decoder')" in text


def test_a_changed_value_is_a_silent_change_and_a_new_path_is_none(tmp_path: Path) -> None:
    def line(release: str, surface: dict[str, Any]) -> str:
        class Outcome:
            status, message, error_type, details = "pass", "", None, {"surface": surface}
        return json.dumps(_results_line(Outcome, release)) + "\n"

    old = {"config.rope_scaling": {"exists": True, "value": None}, "model.visual": {"exists": False, "value": None}}
    new = {"config.rope_scaling": {"exists": True, "value": {"rope_type": "default"}},
           "model.visual": {"exists": True, "value": "Vision params=1"}}
    path = tmp_path / "results.jsonl"
    path.write_text(line("4.57.6", old) + line("5.0.0", new))
    view = compare_releases(build_report([path]), "4.57.6", "5.0.0")
    assert view.surface_losses == () and upgrade_exit_code(view) == 0
    [change] = view.silent
    assert (change.field, change.path, change.before, change.after) == ("surface", "config.rope_scaling", None, {"rope_type": "default"})
    assert 'surface config.rope_scaling: null -> {"rope_type": "default"}' in format_upgrade(view)
