"""`forward`: logits are finite and shaped right, for text and (VLMs) image+text inputs; the image
changes them (a reference made by the same class, as for hub checkpoints, cannot show a dropped
vision tower); and the hand-passed subset of inputs that training code uses gives the same logits
as the full set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compat_tests.outcomes import CheckFailed
from compat_tests.probes.base import ProbeContext, ProbeOutcome
from compat_tests.probes.compare import mismatch
from compat_tests.probes.load import load_problems
from compat_tests.probes.tolerance import differences, within_reference_tolerance


def _vocab_size(config: Any) -> int | None:
    text = getattr(config, "text_config", None) or config
    return getattr(text, "vocab_size", None) or getattr(config, "vocab_size", None)


def _logits(ctx: ProbeContext, inputs: dict[str, Any], what: str) -> Any:
    import torch

    moved = {k: v.to(ctx.device) if hasattr(v, "to") else v for k, v in inputs.items()}
    with torch.no_grad():
        output = ctx.model(**moved)
    logits = getattr(output, "logits", None)
    if logits is None:
        raise CheckFailed(f"{what}: {type(ctx.model).__name__} returns no logits ({type(output).__name__})")
    expected = (1, moved["input_ids"].shape[-1], _vocab_size(ctx.checkpoint_config))
    if tuple(logits.shape) != expected:
        raise CheckFailed(f"{what}: logits shape {tuple(logits.shape)}, expected {expected}")
    if not torch.isfinite(logits).all():
        raise CheckFailed(f"{what}: logits contain NaN or inf")
    return logits


@dataclass(frozen=True)
class ForwardProbe:
    name: str = "forward"
    mutates_model: bool = False

    def run(self, ctx: ProbeContext) -> ProbeOutcome:
        details: dict[str, Any] = {}
        _logits(ctx, ctx.inputs.text(), "text-only forward")
        if ctx.modality != "image-text":
            return ProbeOutcome(details=details)
        full_inputs = ctx.inputs.image_text()
        full = _logits(ctx, full_inputs, "image+text forward")
        absolute, relative = differences(full, ctx.checkpoint.reference_logits("image"))
        details.update(image_max_abs_diff=absolute, image_rel_diff=relative, processor_keys=sorted(full_inputs))
        if not within_reference_tolerance(relative, ctx.dtype):
            return ProbeOutcome("fail", *mismatch("image+text logits", ctx.checkpoint, absolute, relative, load_problems(ctx)),
                                details)
        other = _logits(ctx, ctx.inputs.image_text(image=ctx.inputs.image(seed=1)), "image+text forward, another image")
        _, image_effect = differences(other, full)
        details["other_image_rel_diff"] = image_effect
        if within_reference_tolerance(image_effect, ctx.dtype):
            return ProbeOutcome("fail", f"another image gives the same logits (relative diff {image_effect:.3g}): the "
                                        "model does not use the image (vision tower dropped or disconnected)",
                                "CheckFailed", details)
        manual_inputs = ctx.inputs.manual(full_inputs)
        details["manual_keys"] = sorted(manual_inputs)
        try:
            manual = _logits(ctx, manual_inputs, "forward with the hand-passed inputs")
        except CheckFailed:
            raise
        except Exception as exc:
            return ProbeOutcome("fail", f"forward with only {sorted(manual_inputs)} raised {type(exc).__name__}: {exc}",
                                type(exc).__name__, details)
        absolute, relative = differences(manual, full)
        details["manual_rel_diff"] = relative
        if not within_reference_tolerance(relative, ctx.dtype):
            return ProbeOutcome("fail", f"forward with only {sorted(manual_inputs)} gives different logits than with every "
                                        f"processor output (relative max diff {relative:.3g})", "CheckFailed", details)
        return ProbeOutcome(details=details)


PROBE = ForwardProbe()
