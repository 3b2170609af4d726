"""Batches of a GRPO step the way trainers build them: one left-padded generation batch of every
prompt's G copies, then training micro-batches that slice rows out of it with their completions.

A row is one sequence: a batch-1 prompt (with its image) and, after sampling, its completion.
Token-aligned tensors are left-padded to one width, as TRL's processor call with padding_side="left"
does; every other tensor (pixel values, Qwen-VL's flat patches and grids) is concatenated along
dim 0, so Qwen-VL's flat `pixel_values` hold exactly the patches of the rows in the batch.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch

Inputs = dict[str, Any]

PER_TOKEN_KEYS = ("token_type_ids", "mm_token_type_ids", "moe_mm_token_type_ids", "cross_attention_mask")
"""Processor outputs with one entry per input token besides input_ids and attention_mask; `generate`
extends them step by step (token_type_ids and Mllama's cross_attention_mask by repeating the last
position, mm_token_type_ids with zeros, which is the same thing after a text prompt), so the
training forward must too."""

_COMPLETION_TOKEN_TYPE = {"paligemma": 1}
"""token_type_ids of generated tokens where repeating the prompt's last one is wrong: PaliGemma is a
prefix-LM (0 = bidirectional prefix, 1 = causal suffix, as its processor marks a `suffix`); zeros
would let each completion token attend to the ones after it. (TRL pads zeros there.)"""


def _token_aligned(key: str) -> bool:
    return key in ("input_ids", "attention_mask", *PER_TOKEN_KEYS)


def collate(rows: list[Inputs], pad_token_id: int, width: int | None = None) -> Inputs:
    """Batch-1 prompts as one batch: token-aligned tensors left-padded to `width` (default: the
    longest row) with the pad id (input_ids) or zeros; other tensors concatenated along dim 0."""
    width = width or max(row["input_ids"].shape[1] for row in rows)
    batch: Inputs = {}
    for key, first in rows[0].items():
        if not isinstance(first, torch.Tensor) or not first.dim():
            batch[key] = first
        elif _token_aligned(key):
            fill = pad_token_id if key == "input_ids" else 0
            padded = []
            for row in rows:
                value = row[key]
                left = width - value.shape[1]
                padding = value.new_full((value.shape[0], left, *value.shape[2:]), fill)
                padded.append(torch.cat([padding, value], dim=1))
            batch[key] = torch.cat(padded)
        else:
            batch[key] = torch.cat([row[key] for row in rows])
    return batch


def completion_mask(completion: torch.Tensor, eos_ids: list[int]) -> torch.Tensor:
    """True up to and including each row's first EOS; False on the padding `generate` put after it."""
    is_eos = torch.isin(completion, torch.tensor(eos_ids, dtype=completion.dtype, device=completion.device))
    seen_before = is_eos.long().cumsum(dim=1) - is_eos.long()
    return seen_before == 0


@dataclass
class Rollout:
    """Every sequence of one GRPO step: P prompts x G completions, in one generation batch."""

    rows: list[Inputs]
    """[N] batch-1 prompt inputs, each prompt repeated G times in a row."""
    pad_token_id: int
    width: int
    """Prompt width of the generation batch (the longest prompt); micro-batches keep it."""
    completion: torch.Tensor
    """[N, T] sampled ids, padded after EOS."""
    mask: torch.Tensor
    """[N, T] bool: completion tokens up to and including the first EOS."""
    sampled_logp: torch.Tensor
    """[N, T] log-softmax of the raw generation logits at the sampled ids."""
    logit_scale: float
    """Largest finite |logit| seen while sampling (scales the log-prob tolerance)."""

    def micro_batches(self, size: int) -> list[list[int]]:
        """Row indices of consecutive micro-batches of `size` rows (the last may be smaller)."""
        rows = list(range(len(self.rows)))
        return [rows[start : start + size] for start in range(0, len(rows), size)]

    def mixed_micro_batch(self, size: int, group_size: int) -> list[int]:
        """Row indices of one micro-batch of `size` rows taken from the prompts in turn (the first
        completion of each prompt, then the second, ...), as a trainer that shuffles the generation
        batch before splitting it (TRL does) mixes prompts, and so left-padding widths, in one
        micro-batch; consecutive rows would hold one prompt's copies only."""
        groups = -(-len(self.rows) // group_size)
        order = [g * group_size + j for j in range(group_size) for g in range(groups) if g * group_size + j < len(self.rows)]
        return sorted(order[:size])

    def training_inputs(self, indices: list[int], model_type: str | None = None) -> Inputs:
        """Prompt + completion of these rows as one training forward's inputs; the model computes
        positions (and Qwen-VL's rope indices) itself, as a trainer's forward lets it."""
        inputs = collate([self.rows[i] for i in indices], self.pad_token_id, self.width)
        completion, mask = self.completion[indices], self.mask[indices]
        prompt_mask = inputs.get("attention_mask", torch.ones_like(inputs["input_ids"]))
        inputs["input_ids"] = torch.cat([inputs["input_ids"], completion], dim=1)
        inputs["attention_mask"] = torch.cat([prompt_mask, mask.to(prompt_mask.dtype)], dim=1)
        for key in PER_TOKEN_KEYS:
            value = inputs.get(key)
            if isinstance(value, torch.Tensor):
                tail = value[:, -1:].expand(-1, completion.shape[1], *value.shape[2:])
                if key == "token_type_ids" and model_type in _COMPLETION_TOKEN_TYPE:
                    tail = torch.full_like(tail, _COMPLETION_TOKEN_TYPE[model_type])
                inputs[key] = torch.cat([value, tail], dim=1)
        return inputs


def takes_logits_to_keep(model: Any) -> bool:
    """Whether the forward (the base model's, under a peft wrapper) takes `logits_to_keep`, as TRL checks
    before passing it."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def completion_logprobs(model: Any, rollout: Rollout, indices: list[int]) -> torch.Tensor:
    """[len(indices), T] log-probs of these rows' completion tokens from one training-style forward."""
    return completion_forward(model, rollout, indices)[0]


def completion_forward(model: Any, rollout: Rollout, indices: list[int],
                       router_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The completion log-probs of `completion_logprobs`, and the router's auxiliary loss when
    `router_logits` asks the forward for it (`output_router_logits=True`, as TRL does for an MoE).

    As TRL's forward: `logits_to_keep` = T + 1 where the model takes it, so the LM head runs only on
    the positions that predict the completion (a model that keeps the wrong ones fails logprob_match)."""
    length = rollout.completion.shape[1]
    keep: dict[str, Any] = {"logits_to_keep": length + 1} if takes_logits_to_keep(model) else {}
    if router_logits:
        keep["output_router_logits"] = True
    output = model(**rollout.training_inputs(indices, model.config.model_type), use_cache=False, **keep)
    step_logits = output.logits[:, -(length + 1) : -1].float()
    logp = step_logits.log_softmax(dim=-1).gather(-1, rollout.completion[indices][..., None]).squeeze(-1)
    return logp, getattr(output, "aux_loss", None) if router_logits else None
