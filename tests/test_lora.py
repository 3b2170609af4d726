"""LoRA through peft: the adapter a load profile names, and the grpo_step checks on an adapted model.

Each planted failure fails the check named after it and the clean model passes the same step."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from compat_matrix.spec.schema import AdapterSpec, GrpoSettings, LoraSpec, Settings
from compat_tests.lora import TargetsUnmatched, apply_adapter, matched_summary, module_pattern
from compat_tests.probes.base import ProbeContext
from compat_tests.probes.grpo_step import PROBE
from loader.result import LoadResult
from tests.probe_fixtures import Plant, make_context, one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")

LANGUAGE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def adapter(targets: str | tuple[str, ...]) -> AdapterSpec:
    return AdapterSpec(lora=LoraSpec(r=4, alpha=8, target_modules=targets))


def lora_context(key: str, targets: str | tuple[str, ...] = LANGUAGE, plant: Plant | None = None,
                 settings: Settings | None = None) -> ProbeContext:
    """make_context's model and reload, each wrapped with the adapter as the harness wraps a strategy's load."""
    ctx = make_context(key, plant, settings=settings)
    spec = adapter(targets)
    base_reload = ctx.reload
    ctx.loaded = apply_adapter(ctx.loaded, spec)
    ctx.reload = lambda: apply_adapter(LoadResult(model=base_reload(), strategy="explicit_class", path="test"), spec).model
    return ctx


def test_a_clean_adapted_step_trains_only_the_adapter_and_records_it():
    ctx = lora_context("llama")
    summary = ctx.loaded.adapter  # type: ignore[attr-defined]
    assert summary["matched"] == 14 and summary["language"] == 14 and summary["vision"] == 0
    assert summary["modules"]["layers.*.self_attn.q_proj"] == 2
    assert ctx.loaded.loaded_class == "LlamaForCausalLM"
    outcome = PROBE.run(ctx)
    assert outcome.status == "pass", outcome.message
    details = outcome.details
    json.dumps(details, allow_nan=False)
    assert details["adapter_modules"] == 14 and details["adapter_max_change"] > 0 and details["base_changed"] == 0
    assert details["adapter_no_gradient"] == [] and details["adapter_unused"] == []


def test_a_target_list_that_matches_nothing_fails_target_matches_and_says_what_is_there():
    ctx = make_context("llama")
    for targets in (("qkv",), r"model\.decoder\.layers\.\d+\.self_attn\.q_proj"):
        with pytest.raises(TargetsUnmatched) as raised:
            apply_adapter(ctx.loaded, adapter(targets))
        message = str(raised.value)
        assert message.startswith("target_matches: LoRA target_modules")
        assert repr(targets) in message and "q_proj" in message and "model.layers.0.self_attn.q_proj" in message


def test_names_of_a_target_list_that_match_nothing_fail_target_matches_though_others_match():
    """TRL's and peft's q_proj ... down_proj list on Phi-3, whose attention and MLP inputs are fused:
    peft adapts o_proj and down_proj only and says nothing."""
    with pytest.raises(TargetsUnmatched) as raised:
        lora_context("phi3")
    message = str(raised.value)
    assert "['q_proj', 'k_proj', 'v_proj', 'gate_proj', 'up_proj']" in message and "only the other names' 4 modules" in message
    assert "qkv_proj" in message and "gate_up_proj" in message
    fused = lora_context("phi3", ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"))
    assert fused.loaded.adapter["matched"] == 8  # type: ignore[attr-defined]
    outcome = PROBE.run(fused)
    assert outcome.status == "pass", outcome.message


def detach_first_attention(model: Any) -> None:
    """Planted: layer 0's attention output leaves the autograd graph (its value is still used)."""
    def detach(_module: Any, _inputs: Any, output: Any) -> Any:
        return (output[0].detach(), *output[1:]) if isinstance(output, tuple) else output.detach()

    model.model.layers[0].self_attn.register_forward_hook(detach)


def test_an_adapter_cut_off_from_the_gradient_fails_grad_adapter():
    outcome = PROBE.run(lora_context("llama", plant=detach_first_attention))
    assert outcome.status == "fail"
    assert outcome.details["failed_checks"] == ["grad_adapter"], outcome.message
    assert "4 of 14 adapter modules got no gradient although the loss uses their output" in outcome.message
    assert "model.layers.0.self_attn.q_proj" in outcome.message
    assert all(".layers.0.self_attn." in path for path in outcome.details["adapter_no_gradient"])


def nudge_head_when_training(model: Any) -> None:
    """Planted: the forward updates a base weight in place in train mode (like a running statistic)."""
    def nudge(module: Any, _args: Any) -> None:
        if module.training:
            with torch.no_grad():
                module.lm_head.weight[0, 0] += 1e-3

    model.register_forward_pre_hook(nudge)


def test_a_base_weight_that_changes_fails_base_frozen():
    outcome = PROBE.run(lora_context("llama", plant=nudge_head_when_training))
    assert outcome.status == "fail"
    assert outcome.details["failed_checks"] == ["base_frozen"], outcome.message
    assert "1 base weights changed in a LoRA step: lm_head.weight" in outcome.message


def test_a_base_weight_left_trainable_fails_base_frozen():
    ctx = lora_context("llama")
    ctx.model.get_output_embeddings().weight.requires_grad_(True)
    outcome = PROBE.run(ctx)
    assert "base_frozen" in outcome.details["failed_checks"]
    assert "base weights require grad beside the adapter: lm_head.weight" in outcome.message


def test_vision_side_adapter_trains_without_checkpointing_and_text_only_batches_do_not_break_it():
    """A regex over the vision tower only: a text-only micro-batch has nothing to train, which is fine."""
    settings = Settings(grpo=GrpoSettings(gradient_checkpointing=False))
    ctx = lora_context("qwen2_vl", r".*visual.*\.(?:attn|mlp)\.(?:qkv|proj|fc\d)", settings=settings)
    assert ctx.loaded.adapter["vision"] == 4 and ctx.loaded.adapter["language"] == 0  # type: ignore[attr-defined]
    outcome = PROBE.run(ctx)
    assert outcome.status == "pass", outcome.message
    assert outcome.details["grad_norm_vision"] > 0


def test_module_patterns_name_one_module_alike_in_every_release():
    assert module_pattern("model.language_model.layers.3.self_attn.q_proj") == "layers.*.self_attn.q_proj"
    assert module_pattern("model.layers.3.self_attn.q_proj") == "layers.*.self_attn.q_proj"
    assert module_pattern("visual.blocks.0.attn.qkv") == module_pattern("model.visual.blocks.0.attn.qkv")
    summary = matched_summary(["model.layers.0.mlp.up_proj", "model.layers.1.mlp.up_proj", "model.visual.blocks.0.attn.qkv"])
    assert summary == {"matched": 3, "language": 2, "vision": 1,
                       "modules": {"layers.*.mlp.up_proj": 2, "visual.blocks.*.attn.qkv": 1}}



def test_a_profile_runs_only_its_own_probes_and_strategies():
    from compat_matrix.spec.cells import select_cells
    from compat_matrix.spec.schema import Matrix

    lora = {"adapter": {"lora": {"target_modules": list(LANGUAGE)}}, "probes": ["load", "grpo_step"],
            "strategies": ["explicit_class", "smart"], "attn_implementation": "sdpa"}
    matrix = Matrix.model_validate({"transformers": ["4.57.6"], "models": [
        {"key": "llama", "hub_id": "x/llama", "modality": "text", "load_kwargs": {"default": {}, "lora": lora},
         "recipe": {"model_type": "llama", "architecture": "LlamaForCausalLM"}}]})
    cells = select_cells(matrix)
    assert {(c.strategy, c.probe) for c in cells if c.profile == "lora"} == {
        (s, p) for s in ("explicit_class", "smart") for p in ("load", "grpo_step")}
    assert {c.strategy for c in cells if c.profile == "default"} == set(matrix.strategy_names)
    assert matrix.count_cells() == len(cells) == 6 * 6 + 4
    assert matrix.model("llama").load_kwargs["lora"].kwargs == {"attn_implementation": "sdpa"}


def test_without_peft_an_adapter_cell_is_unsupported_with_the_installer_reason(monkeypatch):
    import importlib.metadata

    from compat_tests import training
    from compat_tests.outcomes import CellUnsupported

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: real(name) if name != "peft" else
                        (_ for _ in ()).throw(importlib.metadata.PackageNotFoundError(name)))
    monkeypatch.setattr(training, "install_error", lambda package: "planted: no peft release accepts this transformers")
    with pytest.raises(CellUnsupported, match="peft is not available beside this transformers release: planted"):
        apply_adapter(make_context("llama").loaded, adapter(LANGUAGE))


def compute_and_discard(model: Any) -> None:
    """Planted: a linear layer that runs in every forward but whose output nothing uses (as LLaVA's last
    vision layer under vision_feature_layer -2, or SigLIP's pooling head in Gemma3)."""
    model.model.spare_proj = torch.nn.Linear(64, 64)

    def run_and_drop(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], _output: Any) -> None:
        model.model.spare_proj(args[0] if args else kwargs["hidden_states"])

    model.model.layers[0].register_forward_hook(run_and_drop, with_kwargs=True)


def test_an_adapter_on_a_module_the_loss_does_not_use_is_listed_not_failed():
    outcome = PROBE.run(lora_context("llama", ("q_proj", "spare_proj"), plant=compute_and_discard))
    assert outcome.status == "pass", outcome.message
    assert outcome.details["adapter_unused"] == ["model.spare_proj"] and outcome.details["adapter_no_gradient"] == []
