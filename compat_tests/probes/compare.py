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


DRIFT = "Drift"
"""error_type of a logits mismatch on a checkpoint another release wrote that loaded cleanly:
the release computes differently on the same weights (`compat-matrix drift` says where it starts),
which is not the same as a checkpoint this release cannot read."""


def other_writer(checkpoint: Any) -> str | None:
    """The release that wrote `checkpoint` and recorded its reference, when it is not this one."""
    import transformers

    writer = getattr(checkpoint, "transformers_version", None)
    return writer if writer and writer != transformers.__version__ else None


def mismatch(what: str, checkpoint: Any, absolute: float, relative: float) -> tuple[str, str]:
    """(message, error_type) for logits that differ from the checkpoint's reference: drift when
    another release recorded it (the caller has seen the load use every tensor), else a wrong load."""
    numbers = f"max diff {absolute:.3g}, {relative:.3g} relative"
    writer = other_writer(checkpoint)
    if writer:
        return (f"{what} differ from what transformers {writer} computed on this checkpoint ({numbers}); it loads "
                "cleanly (every tensor used, none re-initialised): the computation changed between the releases "
                "(drift, see `compat-matrix drift`), not the reading of the checkpoint", DRIFT)
    return f"{what} differ from the reference recorded at build time ({numbers})", "CheckFailed"
