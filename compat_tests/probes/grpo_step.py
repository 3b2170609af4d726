"""`grpo_step` probe: one small GRPO step, batched and set up the way TRL / VLM-R1 trainers take it.

Taking the step (`take_step`): sample G completions for each of P prompts in one left-padded
generation batch, in eval mode; switch the policy to train mode with gradient checkpointing where
the model supports it (and `config.use_cache` off, as trainers set it); compute the log-probs at
every other configured micro-batch size, without gradients, on one micro-batch of that size whose
rows come from the prompts in turn (a shuffling trainer's micro-batches mix prompts, and so
left-padding widths); train: the `grpo_loss` of each micro-batch of the first configured size,
back-propagated with gradient accumulation, against the reference's log-probs: before any weight
moves the policy is the reference, so the training forward's own log-probs, detached, are the
reference's (no second copy of the model; TRL's reference model has the same weights); take one
AdamW step
(an SGD step of lr x a tiny model's gradient is below bf16's resolution and would look like frozen
weights). Image-text models then run a text-only micro-batch in train mode, as trainers mix them.

Checking it (`check_step`): what a trainer silently depends on. A stage that raises stops the step
and fails the check named after it (`gradient_checkpointing`, `train_forward`, `microbatch_match`,
`text_only_microbatch`); the rest are measured: finite loss and gradients, gradients reaching the LM
head, the last decoder layer and the vision side, weights that move, log-probs that agree across
micro-batch sizes and with the logits seen while sampling (rope / position-id / KV-cache regressions,
and state a model keeps from `generate()` that a forward at another batch size trips over).
"""

from __future__ import annotations

import math
import re
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from compat_tests.probes import lora_step, precision_control, router
from compat_tests.probes.base import ProbeContext, ProbeOutcome
from compat_tests.probes.generate import Checks, generate, pad_token_id, placeholder_token_ids, plain, prompt_inputs
from compat_tests.probes.grpo_batch import Rollout, collate, completion_forward, completion_logprobs, completion_mask
from compat_tests.probes.grpo_loss import group_advantages, grpo_loss
from compat_tests.rewards import get_reward
from compat_tests.probes.tolerance import logit_scale, tolerance
from loader.inspection import is_vision_name

_LAYER = re.compile(r"^(.*\.layers)\.(\d+)\.")


class StepBroke(Exception):
    """A stage of the step raised: the check named `check` fails with this message."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check
        self.message = message


class NoLearningSignal(Exception):
    """Equal rewards inside every group: zero advantages, so no gradient to check (a harness problem)."""

    def __init__(self, message: str, rewards: list[list[float]]) -> None:
        super().__init__(message)
        self.rewards = rewards


@dataclass
class ParameterGroups:
    """The parameters whose gradients and updates the checks look at."""

    head: torch.nn.Parameter
    last_layer: str
    layer: list[torch.nn.Parameter]
    vision: list[torch.nn.Parameter]
    trainable: list[torch.nn.Parameter]
    router: list[torch.nn.Parameter] = field(default_factory=list)
    """Router weights of a mixture of experts (empty for a dense model)."""


@dataclass
class Step:
    """What one GRPO step measured; `check_step` judges it."""

    rewards: list[list[float]]
    micro_batch_sizes: tuple[int, ...]
    gradient_checkpointing: bool
    groups: ParameterGroups | None = None
    loss: float = math.nan
    kl: float = math.nan
    clip_fraction: float = math.nan
    completion_tokens: int = 0
    logprob_diff: float = math.nan
    """Largest |training log-prob - generation log-prob| over completion tokens."""
    microbatch_diff: dict[int, float] = field(default_factory=dict)
    """Per other micro-batch size: largest |log-prob - the training size's| over the completion tokens of
    its mixed micro-batch."""
    logprob_tolerance: float = 0.0
    grads_finite: bool = True
    norms: dict[str, float] = field(default_factory=dict)
    changed: float = 0.0
    broke: StepBroke | None = None
    times: dict[str, float] = field(default_factory=dict)
    adapter: lora_step.AdapterStep | None = None
    """For a LoRA-adapted model: what the step did to the adapter and the base (then those are checked)."""
    aux: router.AuxLoss = router.AuxLoss(False, 0.0)
    """Whether the loss includes the router's auxiliary loss (an MoE whose config has it), and its coefficient."""
    aux_loss: float | None = None
    """The auxiliary loss over the batch (token-weighted as the GRPO loss); None when not added or not returned."""
    control: precision_control.Control | None = None
    """For an MoE in bf16/fp16 whose log-probs disagreed: both comparisons again in float32 (judged on those)."""


def eos_ids(ctx: ProbeContext) -> list[int]:
    """Every id that ends a completion: the builder's EOS and the model's generation-config EOS (int or list)."""
    ids: set[int] = set()
    for value in (ctx.inputs.eos_token_id, getattr(ctx.model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif value is not None:
            ids.update(value)
    return sorted(ids)


def parameter_groups(model: Any) -> ParameterGroups:
    """The LM head weight, the last decoder layer's name and parameters, and the vision parameters.

    The decoder's layers are the `*.layers.N.` list outside the vision side with the most entries;
    names move between releases (`model.layers`, `model.language_model.layers`, ...), the shape doesn't.
    """
    head = model.get_output_embeddings()
    if head is None:
        raise StepBroke("grad_head", "the model has no output embeddings (no LM head)")
    named = list(model.named_parameters())
    depth: dict[str, int] = {}
    for name, _ in named:
        match = _LAYER.match(name)
        if match and not is_vision_name(name):
            depth[match.group(1)] = max(depth.get(match.group(1), 0), int(match.group(2)) + 1)
    if not depth:
        raise StepBroke("grad_last_layer", "no decoder layers (`*.layers.N.*` parameters) found")
    prefix = max(depth, key=depth.__getitem__)
    last_layer = f"{prefix}.{depth[prefix] - 1}"
    return ParameterGroups(
        head=head.weight,
        last_layer=last_layer,
        layer=[p for name, p in named if name.startswith(last_layer + ".")],
        vision=[p for name, p in named if is_vision_name(name)],
        trainable=[p for p in model.parameters() if p.requires_grad],
        router=router.router_parameters(model),
    )


def grad_norm(parameters: list[torch.nn.Parameter]) -> float:
    """L2 norm of the gradients that exist (0.0 when none reached these parameters)."""
    norms = [p.grad.detach().float().norm() for p in parameters if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


def max_change(before: list[torch.Tensor], after: list[torch.nn.Parameter]) -> float:
    """Largest absolute change of any element between the snapshot and now."""
    return max(float((p.detach() - old).abs().max()) for old, p in zip(before, after))


def _raised(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


def sample(ctx: ProbeContext) -> tuple[Rollout, list[list[float]]]:
    """G completions for each of P prompts, sampled in eval mode in one left-padded batch, and their rewards."""
    settings = ctx.settings.grpo
    reward = get_reward(settings.reward)
    pad = pad_token_id(ctx)
    rows = [prompt for prompt in prompt_inputs(ctx, settings.prompts) for _ in range(settings.group_size)]
    width = max(row["input_ids"].shape[1] for row in rows)
    ctx.model.eval()
    torch.manual_seed(settings.seed)
    # a random tiny model samples its own image placeholder now and then (vocab 1000, placeholders at
    # 990+): the training forward then finds more image tokens than images and raises; a trained
    # model never emits one, so sampling leaves them out (the raw logits compared are unchanged)
    sampled = generate(ctx.model, collate(rows, pad or 0, width), max_new_tokens=settings.max_new_tokens, sample=True,
                       pad_token_id=pad, suppress=placeholder_token_ids(ctx.model.config))
    mask = completion_mask(sampled.completion, eos_ids(ctx))
    logp = sampled.logits.log_softmax(dim=-1).gather(-1, sampled.completion[..., None]).squeeze(-1)
    rollout = Rollout(rows, pad or 0, width, sampled.completion, mask, logp, logit_scale(sampled.logits))
    flat = [reward(ids[keep].tolist()) for ids, keep in zip(sampled.completion, mask)]
    g = settings.group_size
    return rollout, [flat[i : i + g] for i in range(0, len(flat), g)]


def prepare_training(model: Any, enable_checkpointing: bool, use_reentrant: bool | None = None) -> bool:
    """Train mode, and gradient checkpointing where the model supports it (the release's default
    variant unless `use_reentrant` is given), with `config.use_cache` off as trainers set it (a KV
    cache is useless and incompatible with recomputation); True when on."""
    model.train()
    if not (enable_checkpointing and getattr(model, "supports_gradient_checkpointing", False)):
        return False
    try:
        if use_reentrant is None:
            model.gradient_checkpointing_enable()
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": use_reentrant})
    except Exception as exc:
        raise StepBroke("gradient_checkpointing", f"gradient_checkpointing_enable() raised {_raised(exc)}") from exc
    model.config.use_cache = False
    return True


def _backward_without_checkpointing(model: Any, rollout: Rollout, rows: list[int]) -> None:
    """One micro-batch's forward and backward with gradient checkpointing off (raises what they raise)."""
    model.gradient_checkpointing_disable()
    completion_logprobs(model, rollout, rows).sum().backward()


def training_forward(model: Any, rollout: Rollout, rows: list[int],
                     router_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[len(rows), T] log-probs from one train-mode forward of these rows, and the router's auxiliary loss
    when asked; StepBroke `train_forward` when it raises."""
    try:
        return completion_forward(model, rollout, rows, router_logits)
    except Exception as exc:
        raise StepBroke("train_forward", f"a train-mode forward on a micro-batch of {len(rows)} raised {_raised(exc)} "
                                         "(the same rows ran in eval mode while sampling)") from exc


def no_grad_logprobs(model: Any, rollout: Rollout, rows: list[int], trained_at: int) -> torch.Tensor:
    """[len(rows), T] train-mode log-probs of one micro-batch without gradients, before any weight moves.
    When they raise, `train_forward` fails if a micro-batch of the training size raises too (the model
    cannot train at all), else `microbatch_match` (only this size breaks)."""
    try:
        with warnings.catch_warnings(), torch.no_grad():  # checkpointed layers under no_grad: nothing to recompute, as meant
            warnings.filterwarnings("ignore", message="None of the inputs have requires_grad")
            return completion_logprobs(model, rollout, rows)
    except Exception as exc:
        training_forward(model, rollout, rollout.micro_batches(trained_at)[0])[0]
        check = "train_forward" if len(rows) == trained_at else "microbatch_match"
        raise StepBroke(check, f"a train-mode forward on micro-batches of {len(rows)} raised {_raised(exc)}") from exc


def train(ctx: ProbeContext, step: Step, rollout: Rollout, advantages: torch.Tensor) -> torch.Tensor:
    """The GRPO loss per micro-batch of the first size, back-propagated with gradient accumulation
    (each micro-batch weighted by its share of completion tokens, so the sum is the full batch's loss),
    against the reference's log-probs: the same forward's, detached (the policy before its update);
    returns the [N, T] training log-probs."""
    settings = ctx.settings.grpo
    size = step.micro_batch_sizes[0]
    total_tokens = max(int(rollout.mask.sum()), 1)
    logps, loss, kl, clipped, aux_total = [], 0.0, 0.0, 0.0, 0.0
    for rows in rollout.micro_batches(size):
        logp, aux = training_forward(ctx.model, rollout, rows, step.aux.enabled)
        result = grpo_loss(logp, logp.detach(), logp.detach(), advantages[rows], rollout.mask[rows], beta=settings.beta,
                           epsilon_low=settings.epsilon_low, epsilon_high=settings.epsilon_high)
        share = int(rollout.mask[rows].sum()) / total_tokens
        total = result.loss
        if step.aux.enabled:
            if aux is None:
                raise StepBroke("router_aux_loss", "the config has output_router_logits and router_aux_loss_coef "
                                                   f"{step.aux.coef}, but the forward asked for the router logits returned no aux_loss")
            total = total + step.aux.coef * aux
            aux_total += float(aux.detach()) * share
        try:
            if total.requires_grad:
                (total * share).backward()
        except Exception as exc:
            if not step.gradient_checkpointing:
                raise StepBroke("train_backward", f"backward raised {_raised(exc)}") from exc
            try:
                _backward_without_checkpointing(ctx.model, rollout, rows)
            except Exception:
                raise StepBroke("train_backward", f"backward raised {_raised(exc)}, with or without gradient checkpointing") from exc
            raise StepBroke("gradient_checkpointing", f"backward raised {_raised(exc)} with gradient checkpointing on; "
                                                      "without it the same micro-batch trains") from exc
        logps.append(logp.detach())
        loss += float(result.loss.detach()) * share
        kl += float(result.kl) * share
        clipped += float(result.clip_fraction) * share
    step.loss, step.kl, step.clip_fraction = loss, kl, clipped
    step.aux_loss = aux_total if step.aux.enabled else None
    return torch.cat(logps)


def text_only_micro_batch(ctx: ProbeContext) -> None:
    """A train-mode forward and backward on a text-only batch of an image-text model; raises StepBroke."""
    pad = pad_token_id(ctx) or 0
    inputs = collate([ctx.inputs.text(prompt) for prompt in ctx.inputs.prompts(2)], pad)
    inputs = {key: value.to(ctx.device) for key, value in inputs.items()}
    try:
        logits = ctx.model(**inputs, use_cache=False).logits
        loss = logits.float().logsumexp(dim=-1).mean()
        if loss.requires_grad:  # an adapter only on the vision side has nothing to train on text
            loss.backward()
    except Exception as exc:
        raise StepBroke("text_only_microbatch", f"a text-only micro-batch in train mode raised {_raised(exc)}") from exc
    finite = math.isfinite(float(loss.detach())) and all(bool(torch.isfinite(p.grad).all()) for p in ctx.model.parameters() if p.grad is not None)
    ctx.model.zero_grad(set_to_none=True)
    if not finite:
        raise StepBroke("text_only_microbatch", "a text-only micro-batch in train mode gave a non-finite loss or gradient")


def take_step(ctx: ProbeContext) -> Step:
    """One GRPO step on `ctx.model`; what it measured (a stage that raised is in `broke`)."""
    settings = ctx.settings.grpo
    start = time.perf_counter()
    rollout, rewards = sample(ctx)
    advantages = group_advantages(torch.tensor(rewards)).flatten().to(ctx.device)
    if not bool(advantages.any()):
        raise NoLearningSignal(f"reward {settings.reward!r} was equal inside every group {rewards}: zero advantages, no gradient to check", rewards)
    step = Step(rewards, settings.micro_batch_sizes, gradient_checkpointing=False, aux=router.aux_loss_setting(ctx.model))
    step.completion_tokens = int(rollout.mask.sum())
    step.times["sample_s"] = time.perf_counter() - start
    try:
        _train_and_compare(ctx, step, rollout, advantages)
    except StepBroke as broke:
        step.broke = broke
    ctx.model.zero_grad(set_to_none=True)
    step.times["time_s"] = time.perf_counter() - start
    return step


@contextmanager
def phase(step: Step, name: str) -> Iterator[None]:
    """Seconds spent in `name`, into `step.times` (the bench's per-phase breakdown)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        step.times[f"{name}_s"] = time.perf_counter() - start


def _train_and_compare(ctx: ProbeContext, step: Step, rollout: Rollout, advantages: torch.Tensor) -> None:
    model, mask, sizes = ctx.model, rollout.mask, step.micro_batch_sizes
    groups = step.groups = parameter_groups(model)
    settings = ctx.settings.grpo
    sampling_use_cache = getattr(model.config, "use_cache", None)
    step.gradient_checkpointing = prepare_training(model, settings.gradient_checkpointing, settings.use_reentrant)
    adapter = lora_step.watch(model, step.gradient_checkpointing)
    with phase(step, "other_sizes"):
        mixed = {size: rollout.mixed_micro_batch(size, ctx.settings.grpo.group_size) for size in sizes[1:]}
        other_sizes = {size: no_grad_logprobs(model, rollout, rows, sizes[0]) for size, rows in mixed.items()}
    watched = [groups.head, *groups.layer]
    before = [p.detach().clone() for p in watched]
    with phase(step, "train"):
        logp = train(ctx, step, rollout, advantages)
    with phase(step, "update"):
        step.microbatch_diff = {size: float((other - logp[mixed[size]])[mask[mixed[size]]].abs().max())
                                for size, other in other_sizes.items()}
        step.logprob_diff = float((logp - rollout.sampled_logp)[mask].abs().max())
        step.logprob_tolerance = tolerance(ctx.dtype, rollout.logit_scale)
        disagree = max([step.logprob_diff, *step.microbatch_diff.values()]) > step.logprob_tolerance
        if disagree and groups.router and ctx.dtype in precision_control.REDUCED:
            step.control = precision_control.float32_control(model, rollout, sizes[0], mixed, sampling_use_cache)
        step.grads_finite = all(bool(torch.isfinite(p.grad).all()) for p in groups.trainable if p.grad is not None)
        step.norms = {"head": grad_norm([groups.head]), "last_layer": grad_norm(groups.layer),
                      "vision": grad_norm(groups.vision), "router": grad_norm(groups.router),
                      "total": grad_norm(groups.trainable)}
        if groups.trainable:
            torch.optim.AdamW(groups.trainable, lr=ctx.settings.grpo.learning_rate, weight_decay=0.0).step()
        step.changed = max_change(before, watched)
        if adapter is not None:
            first = rollout.micro_batches(sizes[0])[0]
            step.adapter = adapter.finish(model, lambda: completion_logprobs(model, rollout, first))
        model.zero_grad(set_to_none=True)
    if ctx.modality == "image-text":
        with phase(step, "text_only"):
            text_only_micro_batch(ctx)


def check_step(ctx: ProbeContext, step: Step) -> ProbeOutcome:
    """Every check of the module docstring on what `take_step` measured, as one outcome."""
    checks = Checks()
    if step.broke is not None:
        checks.expect(step.broke.check, False, step.broke.message)
    groups = step.groups
    if groups is not None and not math.isnan(step.logprob_diff):
        _check_training(ctx, step, groups, checks)
    return checks.outcome(_details(ctx, step))


def _check_training(ctx: ProbeContext, step: Step, groups: ParameterGroups, checks: Checks) -> None:
    vision_trainable = any(p.requires_grad for p in groups.vision)
    checks.expect("finite_loss", math.isfinite(step.loss), f"loss is {step.loss}")
    checks.expect("finite_grads", step.grads_finite, "a gradient holds nan or inf")
    if step.adapter is None:
        checks.expect("grad_head", step.norms["head"] > 0, "no gradient reached the LM head")
        checks.expect("grad_last_layer", step.norms["last_layer"] > 0, f"no gradient reached the last decoder layer {groups.last_layer}")
        checks.expect("params_changed", step.changed > 0, f"LM head and {groups.last_layer} unchanged after the optimizer step "
                                                          f"({len(groups.trainable)} parameters require grad)")
    else:
        lora_step.check_adapter(step.adapter, checks.expect)
    if step.aux_loss is not None:
        checks.expect("router_aux_loss", math.isfinite(step.aux_loss), f"the router's auxiliary loss is {step.aux_loss}")
    if any(p.requires_grad for p in groups.router):
        checks.expect("grad_router", step.norms["router"] > 0,
                      f"no gradient reached the router weights of {len(groups.router)} MoE layers"
                      + (" (the loss includes their auxiliary loss)" if step.aux_loss is not None else ""))
    if ctx.modality == "image-text":
        checks.expect("grad_vision", bool(groups.vision), "no vision parameters found (by name) in an image-text model")
        checks.expect("grad_vision", not vision_trainable or step.adapter is not None or step.norms["vision"] > 0,
                      "no gradient reached the vision side: the forward did not use the image")  # adapters: grad_adapter
    allowed, dtype, control = step.logprob_tolerance, ctx.dtype, step.control
    if control is not None:  # an MoE in bf16/fp16: rounding can flip a router's top-k, so float32 judges
        _check_in_float32(step, control, dtype, checks)
        return
    checks.expect("logprob_match", step.logprob_diff <= allowed,
                  f"training log-probs of the sampled tokens differ from the generation logits by {step.logprob_diff:.3g} "
                  f"(tolerance {allowed:.3g} for {dtype}): positions, rope or the KV cache disagree")
    trained_at = step.micro_batch_sizes[0]
    for size, diff in step.microbatch_diff.items():
        checks.expect("microbatch_match", diff <= allowed,
                      f"log-probs on micro-batches of {size} differ from those on micro-batches of {trained_at} by {diff:.3g} "
                      f"(tolerance {allowed:.3g} for {dtype}): the forward depends on the batch it is in")


def _check_in_float32(step: Step, control: precision_control.Control, dtype: torch.dtype, checks: Checks) -> None:
    """The two log-prob checks on the float32 control of an MoE whose reduced-precision log-probs disagreed."""
    allowed = control.tolerance
    checks.expect("logprob_match", control.logprob_diff <= allowed,
                  f"training log-probs of the sampled tokens differ from the generation logits by {step.logprob_diff:.3g} in "
                  f"{dtype} and by {control.logprob_diff:.3g} in float32 (tolerance {allowed:.3g}), so not by a router's "
                  "rounding: positions, rope or the KV cache disagree")
    trained_at = step.micro_batch_sizes[0]
    for size, diff in control.microbatch_diff.items():
        checks.expect("microbatch_match", diff <= allowed,
                      f"log-probs on micro-batches of {size} differ from those on micro-batches of {trained_at} by "
                      f"{step.microbatch_diff[size]:.3g} in {dtype} and by {diff:.3g} in float32 (tolerance {allowed:.3g}), "
                      "so not by a router's rounding: the forward depends on the batch it is in")


def _details(ctx: ProbeContext, step: Step) -> dict[str, Any]:
    groups = step.groups
    vision_trainable = groups is not None and any(p.requires_grad for p in groups.vision)
    norms = step.norms
    return {
        "loss": plain(step.loss),
        "kl": plain(step.kl),
        "clip_fraction": plain(step.clip_fraction),
        "max_logprob_diff": plain(step.logprob_diff),
        "max_microbatch_diff": {str(size): plain(diff) for size, diff in step.microbatch_diff.items()},
        "logprob_tolerance": step.logprob_tolerance,
        **({"float32_control": step.control.details()} if step.control else {}),
        "micro_batch_sizes": list(step.micro_batch_sizes),
        "gradient_checkpointing": step.gradient_checkpointing,
        "use_reentrant": ctx.settings.grpo.use_reentrant,
        "group_rewards": step.rewards,
        "completion_tokens": step.completion_tokens,
        "grad_norm_head": plain(norms["head"]) if norms else None,
        "grad_norm_last_layer": plain(norms["last_layer"]) if norms else None,
        "grad_norm_vision": plain(norms["vision"]) if norms and vision_trainable else None,
        "grad_norm_total": plain(norms["total"]) if norms else None,
        **({"grad_norm_router": plain(norms["router"]) if norms else None, "router_layers": len(groups.router)}
           if groups is not None and groups.router else {}),
        **({"router_aux_coef": step.aux.coef,
            "router_aux_loss": None if step.aux_loss is None else plain(step.aux_loss)} if step.aux.enabled else {}),
        "last_layer": groups.last_layer if groups else None,
        "max_param_change": plain(step.changed),
        "reward": ctx.settings.grpo.reward,
        **step.times,
        **(lora_step.adapter_details(step.adapter) if step.adapter else {}),
    }


class GrpoStepProbe:
    """One GRPO step on the loaded model; see the module docstring for the checks."""

    name = "grpo_step"
    mutates_model = True

    def run(self, ctx: ProbeContext) -> ProbeOutcome:
        was_training = ctx.model.training
        try:
            step = take_step(ctx)
        except NoLearningSignal as exc:
            return ProbeOutcome(status="error", error_type="NoLearningSignal", message=str(exc), details={"group_rewards": exc.rewards})
        finally:
            ctx.model.train(was_training)
        return check_step(ctx, step)


PROBE = GrpoStepProbe()
"""The `grpo_step` probe, for the registry."""
