"""What a logits mismatch against a checkpoint's reference means: a wrong load, or drift when another
release recorded the reference (the tolerance itself is `compat_tests.probes.tolerance`)."""

from __future__ import annotations

from typing import Any, Sequence

DRIFT = "Drift"
"""error_type of a logits mismatch on a checkpoint another release wrote that loaded cleanly:
the release computes differently on the same weights (`compat-matrix drift` says where it starts),
which is not the same as a checkpoint this release cannot read."""


def other_writer(checkpoint: Any) -> str | None:
    """The release that wrote `checkpoint` and recorded its reference, when it is not this one."""
    import transformers

    writer = getattr(checkpoint, "transformers_version", None)
    return writer if writer and writer != transformers.__version__ else None


def mismatch(what: str, checkpoint: Any, absolute: float, relative: float,
             load_problems: Sequence[str] = ()) -> tuple[str, str]:
    """(message, error_type) for logits that differ from the checkpoint's reference: drift when
    another release recorded it and the load was clean (`load_problems`, from `load.load_problems`,
    is empty), else a wrong load, said with what the load did."""
    numbers = f"max diff {absolute:.3g}, {relative:.3g} relative"
    writer = other_writer(checkpoint)
    if load_problems:
        recorded = f"what transformers {writer} computed on this checkpoint" if writer else "the reference recorded at build time"
        return (f"{what} differ from {recorded} ({numbers}); the load was not clean: {'; '.join(load_problems)}: "
                "the reading of the checkpoint, not drift", "CheckFailed")
    if writer:
        return (f"{what} differ from what transformers {writer} computed on this checkpoint ({numbers}); it loads "
                "cleanly (every tensor used, none re-initialised): the computation changed between the releases "
                "(drift, see `compat-matrix drift`), not the reading of the checkpoint", DRIFT)
    return f"{what} differ from the reference recorded at build time ({numbers})", "CheckFailed"
