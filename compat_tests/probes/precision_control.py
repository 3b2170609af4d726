"""The float32 control of a mixture of experts' log-prob mismatch in a reduced precision.

Top-k routing is not continuous. Where a router scores two experts within bf16's rounding of each
other, the left-padded sampling batch and the one-row training forward can pick different experts,
and that position's log-probs then differ by far more than any tolerance (seen 2026-12-07: Qwen3-MoE's
trainer step in 5.24.0 on a CPU with AVX512-BF16, 0.22 against 0.051; float32 agreed to 0). A
tolerance cannot tell that from a regression; the same two computations in float32 can: a rope,
position, mask or cache regression does not depend on the dtype, rounding does.

So when an MoE's log-probs disagree in bf16 or fp16, the step repeats both sides in float32 on the
same weights and tokens, before any weight moves: sampling is replayed through `generate` with the
sampled tokens forced (the same cached decode path, raw logits as before), training as the same
train-mode micro-batches. The step is judged on those; both diffs are in the details.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from compat_tests.probes.grpo_batch import Rollout, collate, completion_logprobs
from compat_tests.probes.tolerance import logit_scale, tolerance

REDUCED = (torch.bfloat16, torch.float16)
"""The dtypes whose rounding can flip a router's top-k between two computations of one position."""


@dataclass(frozen=True)
class Control:
    """Both comparisons of the step, repeated in float32."""

    logprob_diff: float
    """Largest |training log-prob - generation log-prob| over completion tokens, in float32."""
    microbatch_diff: dict[int, float]
    """Per other micro-batch size, as `Step.microbatch_diff`, in float32."""
    tolerance: float
    """float32's tolerance at the float32 logits' scale."""

    def details(self) -> dict[str, Any]:
        return {"max_logprob_diff": self.logprob_diff, "logprob_tolerance": self.tolerance,
                "max_microbatch_diff": {str(size): diff for size, diff in self.microbatch_diff.items()}}


class _ForceTokens(LogitsProcessor):
    """Makes `generate` emit the given completion, step by step (only the scores change; the raw
    logits `output_logits` returns are the model's)."""

    def __init__(self, completion: torch.Tensor, prompt_length: int) -> None:
        self.completion, self.prompt_length = completion, prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        forced = self.completion[:, input_ids.shape[1] - self.prompt_length]
        only = torch.full_like(scores, float("-inf"))
        return only.scatter(1, forced[:, None].to(scores.device), 0.0)  # type: ignore[return-value]


@contextmanager
def in_float32(model: Any) -> Iterator[None]:
    """Every floating parameter and buffer of `model` in float32, then each back in its own dtype
    (bf16 -> float32 -> bf16 is exact, and modules kept in float32 stay so); gradients are not touched."""
    tensors = [t for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()]
    dtypes = [t.dtype for t in tensors]
    try:
        for t in tensors:
            t.data = t.data.float()
        yield
    finally:
        for t, dtype in zip(tensors, dtypes):
            t.data = t.data.to(dtype)


def _sampled_logprobs(model: Any, rollout: Rollout, use_cache: Any) -> tuple[torch.Tensor, float]:
    """[N, T] log-probs of the sampled tokens along the sampling path (eval mode, the generation batch,
    the config's `use_cache` as it was), and the logits' scale."""
    inputs = collate(rollout.rows, rollout.pad_token_id, rollout.width)
    length = rollout.completion.shape[1]
    was_training, before = model.training, getattr(model.config, "use_cache", None)
    model.eval()
    model.config.use_cache = use_cache
    try:
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=length, do_sample=False,
                                    return_dict_in_generate=True, output_logits=True, pad_token_id=rollout.pad_token_id,
                                    logits_processor=LogitsProcessorList([_ForceTokens(rollout.completion, rollout.width)]))
    finally:
        model.config.use_cache = before
        model.train(was_training)
    logits = torch.stack(output.logits, dim=1).float()[:, :length]
    logp = logits.log_softmax(dim=-1).gather(-1, rollout.completion[:, : logits.shape[1]][..., None]).squeeze(-1)
    return logp, logit_scale(logits)


def float32_control(model: Any, rollout: Rollout, trained_at: int, mixed: dict[int, list[int]], use_cache: Any) -> Control:
    """Both sides of `logprob_match` and `microbatch_match` again in float32, on the model as it is
    (train mode, weights not yet stepped): `mixed` holds each other size's micro-batch rows."""
    with in_float32(model), torch.no_grad():
        sampled, scale = _sampled_logprobs(model, rollout, use_cache)
        trained = torch.cat([completion_logprobs(model, rollout, rows) for rows in rollout.micro_batches(trained_at)])
        others = {size: completion_logprobs(model, rollout, rows) for size, rows in mixed.items()}
    mask = rollout.mask[:, : sampled.shape[1]]
    return Control(
        logprob_diff=float((trained[:, : sampled.shape[1]] - sampled)[mask].abs().max()),
        microbatch_diff={size: float((other - trained[rows])[rollout.mask[rows]].abs().max()) for (size, rows), other
                         in zip(mixed.items(), others.values())},
        tolerance=tolerance(torch.float32, scale),
    )
