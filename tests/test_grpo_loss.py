"""The GRPO loss against values worked out by hand (DESIGN.md, "The GRPO step")."""

from __future__ import annotations

import math

import pytest
import torch

from compat_tests.probes.grpo_loss import group_advantages, grpo_loss

LN = math.log


def _loss(logp, old, ref, advantages, mask=None, *, beta=0.0, low=0.2, high=0.28):
    logp = torch.tensor(logp, dtype=torch.float64, requires_grad=True)
    mask = torch.ones_like(logp) if mask is None else torch.tensor(mask)
    result = grpo_loss(
        logp,
        torch.tensor(old, dtype=torch.float64),
        torch.tensor(ref, dtype=torch.float64),
        torch.tensor(advantages, dtype=torch.float64),
        mask,
        beta=beta,
        epsilon_low=low,
        epsilon_high=high,
    )
    result.loss.backward()
    return result, logp.grad


def test_equal_rewards_give_zero_advantages():
    advantages = group_advantages(torch.tensor([[3.0, 3.0, 3.0, 3.0], [0.5, 0.5, 0.5, 0.5]]))
    assert torch.equal(advantages, torch.zeros(2, 4))


def test_advantages_are_normalised_inside_each_group():
    # mean 2.5, unbiased std sqrt((2.25 + 0.25 + 0.25 + 2.25) / 3) = sqrt(5/3); second group shifted by 10
    advantages = group_advantages(torch.tensor([[1.0, 2.0, 3.0, 4.0], [11.0, 12.0, 13.0, 14.0]], dtype=torch.float64))
    expected = torch.tensor([-1.5, -0.5, 0.5, 1.5], dtype=torch.float64) / (math.sqrt(5 / 3) + 1e-4)
    torch.testing.assert_close(advantages, torch.stack([expected, expected]))


def test_clipping_on_both_sides():
    # One token per row, old log-prob 0, so ratio = exp(logp); eps_low 0.2, eps_high 0.28.
    #   ratio 1.5, A=+1: min(1.5, 1.28)   -> 1.28 clipped above, no gradient
    #   ratio 0.5, A=-1: min(-0.5, -0.8)  -> -0.8 clipped below, no gradient
    #   ratio 0.5, A=+1: min(0.5, 0.8)    -> 0.5  unclipped, d(-ratio*A)/dlogp = -0.5
    #   ratio 1.5, A=-1: min(-1.5, -1.28) -> -1.5 unclipped, d(-ratio*A)/dlogp = +1.5
    logp = [[LN(1.5)], [LN(0.5)], [LN(0.5)], [LN(1.5)]]
    zeros = [[0.0]] * 4
    result, grad = _loss(logp, zeros, logp, [1.0, -1.0, 1.0, -1.0])
    assert result.loss.item() == pytest.approx((-1.28 + 0.8 - 0.5 + 1.5) / 4)
    torch.testing.assert_close(grad, torch.tensor([[0.0], [0.0], [-0.5 / 4], [1.5 / 4]], dtype=torch.float64))
    assert result.clip_fraction.item() == 1.0


def test_ratio_inside_the_range_is_not_clipped():
    result, grad = _loss([[LN(1.1)]], [[0.0]], [[LN(1.1)]], [2.0])
    assert result.loss.item() == pytest.approx(-1.1 * 2.0)
    assert grad.item() == pytest.approx(-1.1 * 2.0)
    assert result.clip_fraction.item() == 0.0


def test_kl_is_zero_when_policy_equals_reference():
    logp = torch.log_softmax(torch.randn(3, 5, generator=torch.Generator().manual_seed(0)), dim=-1).tolist()
    result, grad = _loss(logp, logp, logp, [0.0, 0.0, 0.0], beta=1.0)
    assert result.kl.item() == 0.0
    assert result.loss.item() == 0.0
    assert torch.equal(grad, torch.zeros(3, 5, dtype=torch.float64))


def test_k3_kl_value():
    # ref - logp = ln 2: exp(ln 2) - ln 2 - 1 = 1 - ln 2; zero advantage leaves only beta * KL
    result, _ = _loss([[LN(0.25)]], [[LN(0.25)]], [[LN(0.5)]], [0.0], beta=0.5)
    assert result.kl.item() == pytest.approx(1 - LN(2))
    assert result.loss.item() == pytest.approx(0.5 * (1 - LN(2)))


def test_padding_is_masked_and_the_mean_is_over_tokens():
    # Row 0 has 3 tokens, row 1 has 1 token then 2 padding slots full of garbage.
    # ratio 1 everywhere, beta 0: each token contributes -A; the token mean is -(3*1 + 1*(-1)) / 4 = -0.5
    # (a mean of per-row means would give 0).
    garbage = [float("nan"), float("inf")]
    logp = [[-1.0, -2.0, -3.0], [-1.5, *garbage]]
    old = [[-1.0, -2.0, -3.0], [-1.5, 1e9, -float("inf")]]
    mask = [[1, 1, 1], [1, 0, 0]]
    result, grad = _loss(logp, old, old, [1.0, -1.0], mask, beta=0.04)
    assert result.loss.item() == pytest.approx(-0.5)
    assert torch.isfinite(grad).all()
    assert torch.equal(grad[1, 1:], torch.zeros(2, dtype=torch.float64))
