"""The GRPO loss of DESIGN.md ("The GRPO step") as pure tensor functions, so it can be checked by hand.

Kept apart from the probe: the probe tests a model, these functions are the arithmetic it relies on,
and a wrong sign or a leaking padding token here would make every cell of the matrix lie.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GrpoLoss:
    """The loss to back-propagate and two plain diagnostics of it."""

    loss: torch.Tensor
    """Scalar: -mean over completion tokens of the clipped surrogate, plus beta times the mean k3 KL."""
    kl: torch.Tensor
    """Scalar, detached: mean k3 KL to the reference over completion tokens."""
    clip_fraction: torch.Tensor
    """Scalar, detached: share of completion tokens whose ratio fell outside the clip range."""


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """(r - mean) / (std + eps) inside each group, one group per row of a [prompts, G] tensor.

    The std is the unbiased one, as TRL's GRPOTrainer uses; equal rewards give exactly zero.
    """
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)
    return (rewards - mean) / (std + eps)


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float,
    epsilon_low: float,
    epsilon_high: float,
) -> GrpoLoss:
    """Clipped-surrogate GRPO loss with the k3 KL, averaged over the tokens where `mask` is set.

    `logp`, `old_logp`, `ref_logp` and `mask` are [N, T] (one row per completion, padding where
    `mask` is 0); `advantages` is [N]. Padding may hold any value, even inf or nan: it is replaced
    before any arithmetic, so it reaches neither the loss nor the gradient.
    """
    keep = mask.bool()
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    logp = torch.where(keep, logp, zero)
    old_logp = torch.where(keep, old_logp, zero)
    ref_logp = torch.where(keep, ref_logp, zero)

    ratio = torch.exp(logp - old_logp)
    advantage = advantages[:, None].to(logp.dtype)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    surrogate = torch.minimum(ratio * advantage, clipped * advantage)
    log_ref_ratio = ref_logp - logp
    kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1

    tokens = keep.sum().clamp(min=1)
    per_token = torch.where(keep, -surrogate + beta * kl, zero)
    outside = (ratio < 1 - epsilon_low) | (ratio > 1 + epsilon_high)
    return GrpoLoss(
        loss=per_token.sum() / tokens,
        kl=(torch.where(keep, kl, zero).sum() / tokens).detach(),
        clip_fraction=((outside & keep).sum() / tokens).detach(),
    )
