"""How far two computations of logits or log-probs may differ, in one scheme for every probe.

Allowed difference = atol + rtol x scale, where scale is the largest finite |logit| involved: rounding
errors grow with the logits' size. Two tables, because the probes compare two kinds of pairs:

- `SAME_MODEL`: one model computing the same numbers two ways in one dtype (cached decoding vs one full
  forward, micro-batch of 1 vs of P, a second `generate` vs a fresh model). Tight: only rounding differs.
- `REFERENCE`: a model against logits recorded when the checkpoint was built (fp32, another process,
  possibly another kernel path). Loose: a re-initialised head or tower moves logits by ~100% of their
  scale, so 10% in bf16 still catches it.
"""

from __future__ import annotations

from typing import Literal

import torch

Kind = Literal["same_model", "reference"]

SAME_MODEL: dict[torch.dtype, tuple[float, float]] = {
    torch.float32: (1e-5, 1e-5),
    torch.float64: (1e-9, 1e-9),
    torch.bfloat16: (1e-3, 2**-6),
    torch.float16: (1e-3, 2**-10),
}
"""(atol, rtol) per compute dtype. Measured on tiny Llama (init std 0.02 to 0.5, 8 decode steps):
cached decoding vs one full forward differs by <= 1.2e-5 in fp32 and <= 4.3e-3 x max|logit| in bf16,
while shifting the decode positions by one moves log-probs by >= 9e-4 (fp32, init 0.02) and
>= 0.1 x max|logit| (init >= 0.1). bf16 rounding depends on the CPU's kernels: on an AMD EPYC without
AVX512-BF16 (2026-12-07) the GRPO step's bf16 cells reached 9.4e-3 x max|logit| (Gemma2), 8.9e-3
(Qwen3, LLaVA), hence 2**-6 (1.6x that), still 6x under a one-position shift."""

REFERENCE: dict[torch.dtype, tuple[float, float]] = {
    torch.float32: (0.0, 1e-3),
    torch.float64: (0.0, 1e-6),
    torch.bfloat16: (0.0, 1e-1),
    torch.float16: (0.0, 5e-2),
}
"""(atol, rtol) against the build-time reference: bf16 keeps ~3 significant digits and tiny models'
logits are ~0.1, so a re-initialised head (relative difference ~1) stays far above every threshold."""

_TABLES: dict[Kind, dict[torch.dtype, tuple[float, float]]] = {"same_model": SAME_MODEL, "reference": REFERENCE}


def logit_scale(logits: torch.Tensor) -> float:
    """Largest finite |logit|: rounding errors grow with it (non-finite logits are their own check)."""
    return float(logits.detach().float().nan_to_num(0.0, 0.0, 0.0).abs().max())


def tolerance(dtype: torch.dtype, scale: float, kind: Kind = "same_model") -> float:
    """Allowed |difference| of logits or log-probs of magnitude `scale` computed in `dtype`
    (an unknown dtype gets bf16's, the loosest common one)."""
    table = _TABLES[kind]
    atol, rtol = table.get(dtype, table[torch.bfloat16])
    return atol + rtol * scale


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest |a - b|, where equal non-finite values count as equal (non-finite logits are their own check)."""
    same = (a == b) | (a.isnan() & b.isnan())
    return float(torch.where(same, 0.0, (a - b).abs()).max())


def differences(actual: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """(max |actual - reference|, that divided by max |reference|), in float32 on the CPU."""
    actual = actual.detach().float().cpu()
    reference = reference.detach().float().cpu()
    if actual.shape != reference.shape:
        raise ValueError(f"logits shape {tuple(actual.shape)} != reference shape {tuple(reference.shape)}")
    absolute = float((actual - reference).abs().max())
    return absolute, absolute / max(float(reference.abs().max()), 1e-12)


def within_reference_tolerance(relative: float, dtype: torch.dtype) -> bool:
    """A relative difference (`differences`' second value) is within `REFERENCE`'s tolerance."""
    return relative <= tolerance(dtype, 1.0, "reference")
