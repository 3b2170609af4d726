"""`generate` probe: greedy decoding runs, yields finite logits, and leaves no state behind.

Also the helpers `grpo_step` shares with it: one prompt's inputs per modality, one `generate`
call that means the same from transformers 4.49 to 5.x, a fresh model from `ctx.reload()`, and the
collection of named checks into one outcome.
"""

from __future__ import annotations

import gc
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from compat_tests.outcomes import CheckFailed
from compat_tests.probes.base import ProbeContext, ProbeOutcome
from compat_tests.probes.tolerance import logit_scale, max_abs_diff, tolerance
from loader.result import LoadResult

Inputs = dict[str, Any]

def to_device(inputs: Mapping[str, Any], device: str, dtype: torch.dtype) -> Inputs:
    """Tensors to `device`; floating ones (pixel values) also to the model's compute dtype."""
    moved: Inputs = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, dtype) if value.is_floating_point() else value.to(device)
        moved[key] = value
    return moved


_NOT_MODEL_INPUTS = ("labels",)
"""Processor outputs no trainer passes to `generate` or a log-prob forward: 5.x PaliGemma's processor
returns `labels`, which would make the forward compute a loss against the prompt-only length."""


def prompt_inputs(ctx: ProbeContext, count: int) -> list[Inputs]:
    """`count` batch-1 inputs, each from its own prompt (and own image for image-text models)."""
    builder = ctx.inputs
    batches = []
    for index, prompt in enumerate(builder.prompts(count)):
        if ctx.modality == "image-text":
            raw = builder.image_text(prompt, builder.image(index))
        else:
            raw = builder.text(prompt)
        kept = {key: value for key, value in raw.items() if key not in _NOT_MODEL_INPUTS}
        batches.append(to_device(kept, ctx.device, ctx.dtype))
    return batches


@dataclass
class Generation:
    """What one `generate` call produced."""

    sequences: torch.Tensor
    """[B, prompt + new] token ids; rows that stopped early are padded."""
    logits: torch.Tensor
    """[B, new, vocab] float32: the raw logits of each step, before any logits processor."""
    prompt_length: int

    @property
    def completion(self) -> torch.Tensor:
        return self.sequences[:, self.prompt_length :]


_PLACEHOLDER = re.compile(r"^(?:image|video|vision|audio|boi|eoi|boa|eoa)(?:_\w*)?_token_(?:id|index)$")
"""Config attributes naming the tokens a processor puts where an image (video, audio) goes:
`image_token_id`, LLaVA's `image_token_index`, Qwen-VL's `vision_start_token_id`, Gemma3's
`boi_token_index`."""


def placeholder_token_ids(config: Any) -> list[int]:
    """Ids of the multimodal placeholder tokens of `config` and its sub-configs (text_config...)."""
    found: set[int] = set()
    configs, seen = [config], set()
    while configs:
        current = configs.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        for name, value in vars(current).items():
            if isinstance(value, int) and not isinstance(value, bool) and _PLACEHOLDER.match(name):
                found.add(value)
            elif hasattr(value, "to_dict") and hasattr(value, "model_type"):
                configs.append(value)
    return sorted(found)


def generate(model: Any, inputs: Inputs, *, max_new_tokens: int, sample: bool, pad_token_id: int | None,
             suppress: list[int] | None = None) -> Generation:
    """One `model.generate`, greedy or sampled from the unmodified distribution (T=1, no top-k/p).

    Raw logits (`output_logits`, 4.38+) rather than scores: processors may legitimately put -inf
    in scores, and sampling probabilities are the softmax of the raw logits only when T=1.
    `suppress`: token ids never to emit (only the scores change; the raw logits stay as they are).
    """
    options: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "return_dict_in_generate": True,
        "output_logits": True,
    }
    if suppress:
        options["suppress_tokens"] = suppress
    if sample:
        options.update(do_sample=True, temperature=1.0, top_k=0, top_p=1.0)
    else:
        options.update(do_sample=False)
    if pad_token_id is not None:
        options["pad_token_id"] = pad_token_id
    with torch.no_grad():
        output = model.generate(**inputs, **options)
    return Generation(
        sequences=output.sequences,
        logits=torch.stack(output.logits, dim=1).float(),
        prompt_length=inputs["input_ids"].shape[1],
    )


def pad_token_id(ctx: ProbeContext) -> int | None:
    """The builder's pad token, else its EOS, so `generate` never guesses one."""
    pad = ctx.inputs.pad_token_id
    return ctx.inputs.eos_token_id if pad is None else pad


def fresh_model(ctx: ProbeContext) -> Any:
    """A model loaded again the same way, in eval mode (`ctx.reload` may give a LoadResult)."""
    loaded = ctx.reload()
    model = loaded.model if isinstance(loaded, LoadResult) else loaded
    return model.eval()


def release_memory(device: str) -> None:
    """Give a dropped model's GPU memory back before the next allocation; on CPU dropping it is enough
    (a full `gc.collect` there costs more than a tiny model's whole step)."""
    if device.startswith("cuda"):
        gc.collect()
        torch.cuda.empty_cache()


def plain(value: float) -> float | str:
    """A float for `details`; non-finite values as text, since JSON has no nan or inf."""
    return value if math.isfinite(value) else str(value)


class Checks:
    """Named checks of one probe; the outcome reports every one that failed, not just the first."""

    def __init__(self) -> None:
        self.failed: list[tuple[str, str]] = []

    def expect(self, name: str, ok: bool, message: str) -> None:
        if not ok:
            self.failed.append((name, message))

    def outcome(self, details: dict[str, Any]) -> ProbeOutcome:
        if not self.failed:
            return ProbeOutcome(details=details)
        return ProbeOutcome(
            status="fail",
            error_type=CheckFailed.__name__,
            message="; ".join(f"{name}: {message}" for name, message in self.failed),
            details={**details, "failed_checks": [name for name, _ in self.failed]},
        )


class GenerateProbe:
    """Greedy decoding twice on the same model object; the second call must match a fresh model."""

    name = "generate"
    mutates_model = False

    def run(self, ctx: ProbeContext) -> ProbeOutcome:
        start = time.perf_counter()
        first_inputs, second_inputs = prompt_inputs(ctx, 2)
        pad = pad_token_id(ctx)

        def greedy(model: Any, inputs: Inputs) -> Generation:
            return generate(model, inputs, max_new_tokens=ctx.settings.generate_max_new_tokens, sample=False, pad_token_id=pad)

        ctx.model.eval()
        first = greedy(ctx.model, first_inputs)
        second = greedy(ctx.model, second_inputs)
        reference_model = fresh_model(ctx)
        reference = greedy(reference_model, second_inputs)
        del reference_model
        release_memory(ctx.device)

        checks = Checks()
        for label, result in (("first", first), ("second", second)):
            checks.expect("finite_logits", bool(torch.isfinite(result.logits).all()), f"the {label} call produced non-finite logits")
        same_tokens = torch.equal(second.completion, reference.completion)
        logit_diff = max_abs_diff(second.logits, reference.logits) if same_tokens else math.inf
        allowed = tolerance(ctx.dtype, logit_scale(reference.logits))
        checks.expect(
            "repeatable",
            same_tokens,
            f"second call generated {second.completion.tolist()}, a fresh model {reference.completion.tolist()} on the same inputs",
        )
        checks.expect(
            "repeatable",
            not same_tokens or logit_diff <= allowed,
            f"second call's logits differ from a fresh model's by {logit_diff:.3g} (tolerance {allowed:.3g})",
        )
        return checks.outcome(
            {
                "tokens": first.completion.tolist(),
                "tokens_second": second.completion.tolist(),
                "tokens_fresh": reference.completion.tolist(),
                "max_logit_diff_fresh": plain(logit_diff),
                "logit_tolerance": allowed,
                "time_s": time.perf_counter() - start,
            }
        )


PROBE = GenerateProbe()
"""The `generate` probe, for the registry."""
