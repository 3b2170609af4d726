"""Rule-based rewards for the `grpo_step` probe, chosen by name in `settings.grpo.reward`.

A reward sees the token ids of one completion (up to and including its EOS) and nothing else:
tiny checkpoints have made-up tokenizers, so rules on decoded text would score noise. What matters
for the probe is that completions of one group get *different* rewards; equal rewards give zero
advantages, and with the policy equal to the reference the whole loss then has no gradient.
"""

from __future__ import annotations

import statistics
from typing import Callable, Sequence

Reward = Callable[[Sequence[int]], float]


def token_diversity(ids: Sequence[int]) -> float:
    """Share of distinct tokens, plus the spread of the ids (in [0, 0.5)) to break ties.

    Random tiny models almost never repeat a token in a few steps, so the share alone would be 1.0
    for every completion of a group; the spread differs between any two completions that differ.
    """
    spread = statistics.pstdev(ids) / (1 + max(ids)) if len(ids) > 1 else 0.0
    return len(set(ids)) / len(ids) + spread


def mean_token_id(ids: Sequence[int]) -> float:
    """Mean token id: differs between almost any two completions, including one-token ones."""
    return statistics.fmean(ids)


def completion_length(ids: Sequence[int]) -> float:
    """Number of tokens: meaningful for real checkpoints that stop at EOS, flat for tiny random ones."""
    return float(len(ids))


REWARDS: dict[str, Reward] = {
    "token_diversity": token_diversity,
    "mean_token_id": mean_token_id,
    "completion_length": completion_length,
}
"""Every reward `settings.grpo.reward` may name."""


def get_reward(name: str) -> Reward:
    """The reward called `name`; KeyError naming the known ones otherwise."""
    try:
        return REWARDS[name]
    except KeyError:
        raise KeyError(f"no reward {name!r}; known: {', '.join(REWARDS)}") from None
