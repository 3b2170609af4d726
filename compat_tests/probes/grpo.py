"""`grpo_step` probe: one small GRPO step, the way a VLM-R1 / TRL trainer takes it.

Sample G completions per prompt and score them; compute per-token log-probs of the completions by
one full forward over prompt + completion, under a frozen reference from `ctx.reload()` and then
the policy; take the loss of `grpo_loss`, back-propagate, step AdamW once (an SGD step of
lr x a tiny model's gradient is below bf16's resolution and would look like frozen weights).
The checks are what a trainer silently depends on: finite loss and gradients, gradients reaching
the LM head, the last decoder layer and the vision side, weights that move, and a full forward
that agrees with the logits seen while sampling (catches rope / position-id / KV-cache regressions).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from compat_tests.outcomes import CheckFailed
from compat_tests.probes.base import ProbeContext, ProbeOutcome
from compat_tests.probes.generate import (
    Checks,
    Inputs,
    fresh_model,
    generate,
    logit_scale,
    pad_token_id,
    plain,
    prompt_inputs,
    release_memory,
    tolerance,
)
from compat_tests.probes.grpo_loss import group_advantages, grpo_loss
from compat_tests.probes.rewards import Reward, get_reward

_PER_TOKEN_KEYS = ("token_type_ids", "mm_token_type_ids", "moe_mm_token_type_ids", "cross_attention_mask")
"""Processor outputs with one entry per input token; `generate` extends them step by step
(token_type_ids and Mllama's cross_attention_mask by repeating the last position, mm_token_type_ids
with zeros, which is the same thing after a text prompt), so the full forward must too."""

_COMPLETION_TOKEN_TYPE = {"paligemma": 1}
"""token_type_ids of generated tokens where repeating the prompt's last one is wrong: PaliGemma is a
prefix-LM (0 = bidirectional prefix, 1 = causal suffix, as its processor marks a `suffix`); zeros
would let each completion token attend to the ones after it. (TRL pads zeros there.)"""

_VISION = re.compile(r"(^|\.)(visual|vision\w*|multi_modal_projector|connector|mm_projector)(\.|$)")
"""Parameter-name parts of the vision side: Qwen-VL `visual`, `vision_tower` / `vision_model`,
the projectors of Llava / Gemma3 / PaliGemma / Mllama, and Idefics3 / SmolVLM's `connector`."""

_LAYER = re.compile(r"^(.*\.layers)\.(\d+)\.")


@dataclass
class Rollout:
    """One prompt's group: the inputs repeated G times and the completions sampled from them."""

    inputs: Inputs
    completion: torch.Tensor
    """[G, T] sampled ids, padded after EOS."""
    mask: torch.Tensor
    """[G, T] bool: completion tokens up to and including the first EOS."""
    sampled_logp: torch.Tensor
    """[G, T] log-softmax of the raw generation logits at the sampled ids."""
    logit_scale: float
    """Largest finite |logit| seen while sampling (scales the log-prob tolerance)."""


def repeat_batch(inputs: Inputs, times: int) -> Inputs:
    """Each tensor repeated along dim 0: batch-first tensors become a batch of `times`, and Qwen-VL's
    flat `pixel_values` / `image_grid_thw` hold the one image's patches `times` over, as they should."""
    return {
        key: value.repeat(times, *([1] * (value.dim() - 1))) if isinstance(value, torch.Tensor) and value.dim() else value
        for key, value in inputs.items()
    }


def completion_mask(completion: torch.Tensor, eos_ids: list[int]) -> torch.Tensor:
    """True up to and including each row's first EOS; False on the padding `generate` put after it."""
    is_eos = torch.isin(completion, torch.tensor(eos_ids, dtype=completion.dtype, device=completion.device))
    seen_before = is_eos.long().cumsum(dim=1) - is_eos.long()
    return seen_before == 0


def eos_ids(ctx: ProbeContext) -> list[int]:
    """Every id that ends a completion: the builder's EOS and the model's generation-config EOS (int or list)."""
    ids: set[int] = set()
    for value in (ctx.inputs.eos_token_id, getattr(ctx.model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif value is not None:
            ids.update(value)
    return sorted(ids)


def full_inputs(rollout: Rollout, model_type: str | None = None) -> Inputs:
    """Prompt + completion as one forward's inputs; the model recomputes positions (and Qwen-VL's
    rope indices) itself, exactly as a trainer's forward would."""
    inputs = dict(rollout.inputs)
    prompt_ids = inputs["input_ids"]
    width = rollout.completion.shape[1]
    prompt_mask = inputs.get("attention_mask", torch.ones_like(prompt_ids))
    inputs["input_ids"] = torch.cat([prompt_ids, rollout.completion], dim=1)
    inputs["attention_mask"] = torch.cat([prompt_mask, rollout.mask.to(prompt_mask.dtype)], dim=1)
    for key in _PER_TOKEN_KEYS:
        value = inputs.get(key)
        if isinstance(value, torch.Tensor):
            tail = value[:, -1:].expand(-1, width, *value.shape[2:])
            if key == "token_type_ids" and model_type in _COMPLETION_TOKEN_TYPE:
                tail = torch.full_like(tail, _COMPLETION_TOKEN_TYPE[model_type])
            inputs[key] = torch.cat([value, tail], dim=1)
    return inputs


def completion_logprobs(model: Any, rollout: Rollout) -> torch.Tensor:
    """[G, T] log-probs of the completion tokens from one full forward over prompt + completion."""
    prompt_length = rollout.inputs["input_ids"].shape[1]
    logits = model(**full_inputs(rollout, model.config.model_type), use_cache=False).logits
    step_logits = logits[:, prompt_length - 1 : -1].float()
    return step_logits.log_softmax(dim=-1).gather(-1, rollout.completion[..., None]).squeeze(-1)


def pad_columns(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    """Rows of [G, T_i] tensors stacked into one [sum G, width] tensor, right-padded with 0."""
    return torch.cat([F.pad(row, (0, width - row.shape[1])) for row in rows])


def parameter_groups(model: Any) -> tuple[torch.nn.Parameter, str, list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """The LM head weight, the last decoder layer's name and parameters, and the vision parameters.

    The decoder's layers are the `*.layers.N.` list outside the vision side with the most entries;
    names move between releases (`model.layers`, `model.language_model.layers`, ...), the shape doesn't.
    """
    head = model.get_output_embeddings()
    if head is None:
        raise CheckFailed("grad_head: the model has no output embeddings (no LM head)")
    named = list(model.named_parameters())
    vision = [parameter for name, parameter in named if _VISION.search(name)]
    depth: dict[str, int] = {}
    for name, _ in named:
        match = _LAYER.match(name)
        if match and not _VISION.search(name):
            depth[match.group(1)] = max(depth.get(match.group(1), 0), int(match.group(2)) + 1)
    if not depth:
        raise CheckFailed("grad_last_layer: no decoder layers (`*.layers.N.*` parameters) found")
    prefix = max(depth, key=depth.__getitem__)
    last_layer = f"{prefix}.{depth[prefix] - 1}"
    layer_parameters = [parameter for name, parameter in named if name.startswith(last_layer + ".")]
    return head.weight, last_layer, layer_parameters, vision


def grad_norm(parameters: list[torch.nn.Parameter]) -> float:
    """L2 norm of the gradients that exist (0.0 when none reached these parameters)."""
    norms = [p.grad.detach().float().norm() for p in parameters if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


def max_change(before: list[torch.Tensor], after: list[torch.nn.Parameter]) -> float:
    """Largest absolute change of any element between the snapshot and now."""
    return max(float((p.detach() - old).abs().max()) for old, p in zip(before, after))


def sample_groups(ctx: ProbeContext, reward: Reward) -> tuple[list[Rollout], list[list[float]]]:
    """G sampled completions per prompt from the model in eval mode, and their rewards."""
    settings = ctx.settings.grpo
    stop_ids = eos_ids(ctx)
    ctx.model.eval()
    torch.manual_seed(settings.seed)
    rollouts, rewards = [], []
    for inputs in prompt_inputs(ctx, settings.prompts):
        batch = repeat_batch(inputs, settings.group_size)
        sampled = generate(ctx.model, batch, max_new_tokens=settings.max_new_tokens, sample=True, pad_token_id=pad_token_id(ctx))
        mask = completion_mask(sampled.completion, stop_ids)
        logp = sampled.logits.log_softmax(dim=-1).gather(-1, sampled.completion[..., None]).squeeze(-1)
        rollouts.append(Rollout(batch, sampled.completion, mask, logp, logit_scale(sampled.logits)))
        rewards.append([reward(ids[keep].tolist()) for ids, keep in zip(sampled.completion, mask)])
    return rollouts, rewards


def reference_logprobs(ctx: ProbeContext, rollouts: list[Rollout]) -> list[torch.Tensor]:
    """Completion log-probs under a frozen reference copy, dropped again before the policy's turn."""
    reference = fresh_model(ctx).requires_grad_(False)
    with torch.no_grad():
        logprobs = [completion_logprobs(reference, rollout) for rollout in rollouts]
    del reference
    release_memory(ctx.device)
    return logprobs


class GrpoStepProbe:
    """One GRPO step on the loaded model; see the module docstring for the checks."""

    name = "grpo_step"
    mutates_model = True

    def run(self, ctx: ProbeContext) -> ProbeOutcome:
        settings = ctx.settings.grpo
        model = ctx.model
        was_training = model.training
        reward = get_reward(settings.reward)
        start = time.perf_counter()

        rollouts, rewards = sample_groups(ctx, reward)
        advantages = group_advantages(torch.tensor(rewards)).flatten().to(ctx.device)
        if not bool(advantages.any()):
            return ProbeOutcome(
                status="error",
                error_type="NoLearningSignal",
                message=f"reward {settings.reward!r} was equal inside every group {rewards}: zero advantages, no gradient to check",
                details={"group_rewards": rewards},
            )
        sampled_at = time.perf_counter()
        reference_logp = reference_logprobs(ctx, rollouts)
        reference_at = time.perf_counter()

        head, last_layer, layer_parameters, vision = parameter_groups(model)
        trainable = [p for p in model.parameters() if p.requires_grad]
        watched = [head, *layer_parameters]
        before = [p.detach().clone() for p in watched]
        model.train()
        width = max(rollout.completion.shape[1] for rollout in rollouts)
        logp = pad_columns([completion_logprobs(model, rollout) for rollout in rollouts], width)
        mask = pad_columns([rollout.mask for rollout in rollouts], width)
        result = grpo_loss(
            logp,
            logp.detach(),
            pad_columns(reference_logp, width),
            advantages,
            mask,
            beta=settings.beta,
            epsilon_low=settings.epsilon_low,
            epsilon_high=settings.epsilon_high,
        )
        sampled_logp = pad_columns([rollout.sampled_logp for rollout in rollouts], width)
        logprob_diff = float((logp.detach() - sampled_logp)[mask].abs().max())
        allowed = tolerance(ctx.dtype, max(rollout.logit_scale for rollout in rollouts))

        loss = float(result.loss.detach())
        if result.loss.requires_grad:
            result.loss.backward()
        grads_finite = all(bool(torch.isfinite(p.grad).all()) for p in trainable if p.grad is not None)
        norms = {
            "head": grad_norm([head]),
            "last_layer": grad_norm(layer_parameters),
            "vision": grad_norm(vision),
            "total": grad_norm(trainable),
        }
        if trainable:
            torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.0).step()
        changed = max_change(before, watched)
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        step_at = time.perf_counter()

        vision_trainable = any(p.requires_grad for p in vision)
        checks = Checks()
        checks.expect("finite_loss", math.isfinite(loss), f"loss is {loss}")
        checks.expect("finite_grads", grads_finite, "a gradient holds nan or inf")
        checks.expect("grad_head", norms["head"] > 0, "no gradient reached the LM head")
        checks.expect("grad_last_layer", norms["last_layer"] > 0, f"no gradient reached the last decoder layer {last_layer}")
        if ctx.entry.modality == "image-text":
            checks.expect("grad_vision", bool(vision), "no vision parameters found (by name) in an image-text model")
            checks.expect(
                "grad_vision",
                not vision_trainable or norms["vision"] > 0,
                "no gradient reached the vision side: the forward did not use the image",
            )
        checks.expect(
            "params_changed",
            changed > 0,
            f"LM head and {last_layer} unchanged after the optimizer step ({len(trainable)} parameters require grad)",
        )
        checks.expect(
            "logprob_match",
            logprob_diff <= allowed,
            f"full-forward log-probs of the sampled tokens differ from the generation logits by {logprob_diff:.3g} "
            f"(tolerance {allowed:.3g} for {ctx.dtype}): positions, rope or the KV cache disagree",
        )
        return checks.outcome(
            {
                "loss": plain(loss),
                "kl": plain(float(result.kl)),
                "clip_fraction": float(result.clip_fraction),
                "max_logprob_diff": plain(logprob_diff),
                "logprob_tolerance": allowed,
                "group_rewards": rewards,
                "completion_tokens": int(mask.sum()),
                "grad_norm_head": plain(norms["head"]),
                "grad_norm_last_layer": plain(norms["last_layer"]),
                "grad_norm_vision": plain(norms["vision"]) if vision_trainable else None,
                "grad_norm_total": plain(norms["total"]),
                "last_layer": last_layer,
                "max_param_change": plain(changed),
                "reward": settings.reward,
                "time_s": step_at - start,
                "sample_s": sampled_at - start,
                "reference_s": reference_at - sampled_at,
                "step_s": step_at - reference_at,
            }
        )


PROBE = GrpoStepProbe()
"""The `grpo_step` probe, for the registry."""
