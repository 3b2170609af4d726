"""Mixture-of-experts models: the expert layout in load details, the router in grpo_step, LoRA coverage
of the experts, and planted failures each of these must catch (a router cut from the gradient, an
auxiliary loss that is not returned, a converter that swaps the gate and up halves, a target list that
names half of a fused pair)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from compat_matrix.spec.schema import AdapterSpec, LoraSpec
from compat_tests import lora
from compat_tests.experts import layout_details, layout_of
from compat_tests.lora import HalfFusedPair, apply_adapter, coverage, half_fused_pairs
from compat_tests.probes.grpo_step import PROBE
from compat_tests.probes.precision_control import in_float32
from tests.probe_fixtures import make_context, one_thread, shift_decode_positions  # noqa: F401
from tests.test_planted_load import load_cell, planted_state

pytestmark = pytest.mark.usefixtures("one_thread")

FUSED_RELEASE = int(transformers.__version__.split(".")[0]) >= 5
"""5.x fuses the experts in memory; the unit env (4.57.6) keeps one module per expert."""


def adapter(targets: tuple[str, ...], parameters: tuple[str, ...] = ()) -> AdapterSpec:
    return AdapterSpec(lora=LoraSpec(r=4, alpha=8, target_modules=targets, target_parameters=parameters))


def test_layout_of_names_tells_per_expert_from_fused():
    assert layout_of(["model.layers.0.mlp.experts.3.gate_proj.weight", "model.layers.0.mlp.gate.weight"]) == "per-expert"
    assert layout_of(["model.layers.0.mlp.experts.gate_up_proj", "model.layers.0.mlp.experts.down_proj_bias"]) == "fused"
    assert layout_of(["model.layers.0.mlp.experts.gate_up_proj", "model.layers.1.mlp.experts.0.w1.weight"]) == "mixed"
    assert layout_of(["model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.shared_experts.up_proj.weight"]) == "none"


@pytest.mark.parametrize("key, layout", [("qwen3_moe", "fused" if FUSED_RELEASE else "per-expert"), ("gpt_oss", "fused")])
def test_load_details_record_the_layout_in_memory_and_saved(key: str, layout: str):
    model = make_context(key).model
    details = layout_details(model, None, saves=True)
    assert details is not None and details["experts"] == 4
    assert details["memory"] == layout
    assert details["saves"] == ("per-expert" if key == "qwen3_moe" else "fused")  # 5.x saves the 4.x layout back
    assert layout_details(make_context("llama").model, None, saves=False) is None


def test_grpo_step_on_an_moe_adds_the_router_aux_loss_and_trains_the_router():
    outcome = PROBE.run(make_context("qwen3_moe"))
    assert outcome.status == "pass", outcome.message
    details = outcome.details
    json.dumps(details, allow_nan=False)
    assert details["router_aux_coef"] == 0.001 and details["router_aux_loss"] > 0
    assert details["router_layers"] == 2 and details["grad_norm_router"] > 0


def test_a_dense_model_has_no_router_details():
    details = PROBE.run(make_context("llama")).details
    assert "router_aux_loss" not in details and "grad_norm_router" not in details


def _detach_routers(model: Any) -> None:
    for name, module in model.named_modules():
        if name.endswith(("mlp.gate", "block_sparse_moe.gate", "mlp.router")):
            module.register_forward_hook(lambda _m, _i, out: out.detach() if isinstance(out, torch.Tensor)
                                         else tuple(o.detach() if isinstance(o, torch.Tensor) else o for o in out))


def test_planted_a_router_cut_from_the_gradient_fails_grad_router():
    outcome = PROBE.run(make_context("qwen3_moe", _detach_routers))
    assert outcome.status == "fail"
    assert "grad_router: no gradient reached the router weights of 2 MoE layers" in outcome.message


def _drop_aux_loss(model: Any) -> None:
    forward = model.forward

    def without_aux(*args: Any, **kwargs: Any) -> Any:
        output = forward(*args, **kwargs)
        output.aux_loss = None
        return output

    model.forward = without_aux


def test_planted_a_forward_that_returns_no_aux_loss_fails_router_aux_loss():
    outcome = PROBE.run(make_context("mixtral", _drop_aux_loss))
    assert outcome.status == "fail"
    assert "router_aux_loss: the config has output_router_logits" in outcome.message


def _swap_gate_up(weights: dict[str, Any]) -> dict[str, Any]:
    """A converter that puts each expert's up projection where its gate goes and back."""
    swapped = dict(weights)
    for name in weights:
        if ".experts." in name and ".gate_proj." in name:
            up = name.replace(".gate_proj.", ".up_proj.")
            swapped[name], swapped[up] = weights[up], weights[name]
        elif name.endswith("experts.gate_up_proj"):  # gpt-oss: gate and up interleaved on the last axis
            gate_up = weights[name]
            swapped[name] = torch.stack([gate_up[..., 1::2], gate_up[..., ::2]], dim=-1).flatten(-2).contiguous()
    return swapped


@pytest.mark.parametrize("key", ["qwen3_moe", "gpt_oss"])
def test_planted_a_converter_that_swaps_gate_and_up_fails_load_on_the_logits(tmp_path: Path, key: str):
    clean = load_cell(planted_state(tmp_path / "clean", key, lambda w: w), key)
    assert clean["status"] == "pass", clean["message"]
    record = load_cell(planted_state(tmp_path / "swapped", key, _swap_gate_up), key)
    assert record["status"] == "fail" and "logits differ from the reference" in record["message"]
    assert record["details"]["rel_diff"] > 1e-2
    assert record["details"]["expert_layout"]["checkpoint"] == ("per-expert" if key == "qwen3_moe" else "fused")


def test_lora_on_per_expert_modules_records_coverage_expert_by_expert():
    adapted = apply_adapter(make_context("qwen3_moe").loaded, adapter(("q_proj", "gate_proj", "up_proj", "down_proj")))
    summary = adapted.adapter
    assert summary["coverage"]["experts.gate_proj"] == 8  # 2 layers x 4 experts, whatever the layout
    assert summary["coverage"]["self_attn.q_proj"] == 2
    assert summary["experts_covered"]["experts.down_proj"] == [0, 1, 2, 3]
    assert summary["trainable"] == sum(p.numel() for p in adapted.model.parameters() if p.requires_grad) > 0
    if not FUSED_RELEASE:  # r 4: q_proj 4 x (64 + 64) per layer, each expert projection 4 x (64 + 32)
        assert summary["trainable"] == 2 * (4 * 128 + 12 * 4 * 96)


def test_coverage_is_the_same_for_per_expert_modules_and_a_fused_parameter():
    per_expert = [f"model.layers.{layer}.mlp.experts.{e}.{proj}" for layer in range(2) for e in range(4)
                  for proj in ("w1", "w3")]
    fused = coverage(["model.layers.0.mlp.experts", "model.layers.0.mlp.experts.base_layer",
                      "model.layers.1.mlp.experts", "model.layers.1.mlp.experts.base_layer"],
                     {"model.layers.0.mlp.experts.gate_up_proj": 4, "model.layers.1.mlp.experts.gate_up_proj": 4},
                     {"gate_up_proj": ("w1", "w3")})
    assert coverage(per_expert, {}, {}) == fused
    assert fused["coverage"] == {"experts.w1": 8, "experts.w3": 8}


def test_half_of_a_fused_pair_is_named_with_what_is_missing():
    fused = {"gate_up_proj": ("gate_proj", "up_proj"), "down_proj": ("down_proj",)}
    assert half_fused_pairs(["q_proj", "gate_proj", "up_proj", "down_proj"], fused) == []
    assert half_fused_pairs(["q_proj", "down_proj"], fused) == []
    assert half_fused_pairs(["q_proj", "mlp.gate_proj"], fused) == [("gate_up_proj", ["gate_proj"], ["up_proj"])]


def test_planted_a_target_list_naming_half_of_a_fused_pair_fails_target_matches(monkeypatch: pytest.MonkeyPatch):
    """gpt-oss keeps gate_up_proj fused in every release; with the converter list a 5.x release has for
    the Qwen-MoE names, the list [q_proj, gate_proj] names half of it."""
    monkeypatch.setattr(lora, "fused_sources", lambda model: {"gate_up_proj": ("gate_proj", "up_proj")})
    with pytest.raises(HalfFusedPair) as raised:
        apply_adapter(make_context("gpt_oss").loaded, adapter(("q_proj", "gate_proj")))
    message = str(raised.value)
    assert message.startswith("target_matches: LoRA target_modules name half of a fused expert pair")
    assert "gate_proj without up_proj (fused into experts.gate_up_proj)" in message


def test_expert_parameters_are_adapted_through_target_parameters():
    peft = pytest.importorskip("peft")
    if not hasattr(peft.LoraConfig(), "target_parameters"):
        pytest.skip(f"peft {peft.__version__} has no target_parameters")
    summary = apply_adapter(make_context("gpt_oss").loaded,
                            adapter(("q_proj",), ("mlp.experts.gate_up_proj", "mlp.experts.down_proj"))).adapter
    assert summary["parameters"] == {"layers.*.mlp.experts.down_proj": 2, "layers.*.mlp.experts.gate_up_proj": 2}
    assert summary["coverage"]["experts.gate_up_proj"] == 8 and summary["coverage"]["experts.down_proj"] == 8
    assert summary["experts_covered"]["experts.gate_up_proj"] == [0, 1, 2, 3]


def test_target_parameters_that_match_nothing_fail_target_matches():
    """peft adapts only q_proj and says nothing when the expert parameters do not exist (4.x keeps one
    module per expert): measured with peft 0.21.2 on 4.57.6, 2,048 trainable parameters instead of the experts."""
    peft = pytest.importorskip("peft")
    if not hasattr(peft.LoraConfig(), "target_parameters"):
        pytest.skip(f"peft {peft.__version__} has no target_parameters")
    if FUSED_RELEASE:
        pytest.skip("5.x fuses Qwen3-MoE's experts: the parameters exist")
    with pytest.raises(lora.TargetsUnmatched) as raised:
        apply_adapter(make_context("qwen3_moe").loaded, adapter(("q_proj",), ("mlp.experts.gate_up_proj",)))
    assert "target_parameters ['mlp.experts.gate_up_proj'] match no parameter of Qwen3MoeForCausalLM" in str(raised.value)
    assert "one module per expert here" in str(raised.value)


def _route_otherwise_in_bf16_sampling(model: Any) -> None:
    """Planted: in eval mode (sampling) a bf16 router's logits move by 5% of their scale, so some tokens
    take other experts than the training forward gives them, as bf16 rounding does at a near-tie;
    float32 routes alike on both paths."""
    def nudge(module: Any, _inputs: Any, out: Any) -> Any:
        logits = out[0] if isinstance(out, tuple) else out
        if module.training or logits.dtype != torch.bfloat16:
            return out
        moved = logits + 0.05 * logits.abs().max() * torch.linspace(-1, 1, logits.shape[-1], dtype=logits.dtype)
        return (moved, *out[1:]) if isinstance(out, tuple) else moved

    for name, module in model.named_modules():
        if name.endswith(("mlp.gate", "block_sparse_moe.gate", "mlp.router")):
            module.register_forward_hook(nudge)


def test_an_moe_whose_bf16_routing_differs_only_by_precision_passes_on_its_float32_control():
    outcome = PROBE.run(make_context("qwen3_moe", _route_otherwise_in_bf16_sampling, dtype=torch.bfloat16))
    details = outcome.details
    assert details["max_logprob_diff"] > details["logprob_tolerance"]  # the bf16 log-probs disagree
    control = details["float32_control"]
    assert outcome.status == "pass", outcome.message
    assert control["max_logprob_diff"] <= control["logprob_tolerance"]


def test_an_moe_whose_decode_positions_are_wrong_still_fails_logprob_match_in_float32():
    outcome = PROBE.run(make_context("qwen3_moe", shift_decode_positions, dtype=torch.bfloat16))
    assert outcome.status == "fail" and outcome.details["failed_checks"] == ["logprob_match"]
    assert "in float32" in outcome.message and "not by a router's rounding" in outcome.message
    control = outcome.details["float32_control"]
    assert control["max_logprob_diff"] > 3 * control["logprob_tolerance"]


def test_a_dense_model_gets_no_float32_control():
    details = PROBE.run(make_context("llama", shift_decode_positions, dtype=torch.bfloat16)).details
    assert "float32_control" not in details


def test_the_float32_control_gives_every_weight_back_bit_for_bit_in_its_own_dtype_and_leaves_gradients():
    model = make_context("qwen3_moe", dtype=torch.bfloat16).loaded.model
    kept = next(b for b in model.buffers() if b.is_floating_point())
    kept.data = kept.data.float()  # a buffer a release keeps in float32 inside a bf16 model
    model.lm_head.weight.grad = torch.randn_like(model.lm_head.weight)
    before = {name: t.clone() for name, t in [*model.named_parameters(), *model.named_buffers()]}
    grad = model.lm_head.weight.grad.clone()
    with in_float32(model):
        assert all(p.dtype == torch.float32 for p in model.parameters())
    after = dict([*model.named_parameters(), *model.named_buffers()])
    assert all(after[name].dtype == t.dtype and torch.equal(after[name], t) for name, t in before.items())
    assert kept.dtype == torch.float32
    assert model.lm_head.weight.grad.dtype == torch.bfloat16 and torch.equal(model.lm_head.weight.grad, grad)
