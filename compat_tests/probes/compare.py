"""Logit comparison with a tolerance that depends on the compute dtype."""

from __future__ import annotations

from typing import Any

RELATIVE_TOLERANCE = {"float32": 1e-3, "float64": 1e-6, "bfloat16": 1e-1, "float16": 5e-2}
"""Max |a - ref| / max |ref|: bf16 keeps ~3 significant digits and tiny models' logits are ~0.1,
so a re-initialised head (relative difference ~1) stays far above every threshold."""


def dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def differences(actual: Any, reference: Any) -> tuple[float, float]:
    """(max |actual - reference|, that divided by max |reference|), in float32 on the CPU."""
    actual = actual.detach().float().cpu()
    reference = reference.detach().float().cpu()
    if actual.shape != reference.shape:
        raise ValueError(f"logits shape {tuple(actual.shape)} != reference shape {tuple(reference.shape)}")
    absolute = float((actual - reference).abs().max())
    return absolute, absolute / max(float(reference.abs().max()), 1e-12)


def within_tolerance(relative: float, dtype: Any) -> bool:
    return relative <= RELATIVE_TOLERANCE.get(dtype_name(dtype), 1e-1)
