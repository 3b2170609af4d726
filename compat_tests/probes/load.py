"""`load`: the strategy returned a model; is it the real one (head, vision, weights, logits)?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from compat_tests.experts import layout_details
from compat_tests.probes.base import ProbeContext, ProbeOutcome
from compat_tests.probes.compare import DRIFT, mismatch, other_writer
from compat_tests.probes.tolerance import differences, within_reference_tolerance
from loader.inspection import is_vision_name, shortfall

SHOWN_KEYS = 20
"""Key lists in results are cut to this many names (the count is kept)."""


PARTS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("LM head", lambda key: "lm_head" in key),
    ("vision tower", is_vision_name),
    ("embeddings", lambda key: "embed_tokens" in key or "wte" in key),
)
"""Names people use for the parts of a model, by parameter name; the rest is 'other'."""


def _some(keys: list[str]) -> str:
    """`12 tensors of the vision tower (visual.blocks.0..., ...)`: which parts, how many, examples."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        part = next((name for name, belongs in PARTS if belongs(key)), "other weights")
        groups.setdefault(part, []).append(key)
    described = []
    for part, members in groups.items():
        more = f", and {len(members) - 2} more" if len(members) > 2 else ""
        described.append(f"{part}: {len(members)} tensor(s) ({', '.join(members[:2])}{more})")
    return "; ".join(described)


def load_problems(ctx: ProbeContext) -> list[str]:
    """What makes the load unclean: parts of the model missing, weights initialised or re-initialised,
    checkpoint tensors left unused; empty for a load that used every tensor (then a logits change is drift).

    Judged on the weight account (the tensors themselves); transformers' loading report only where
    the checkpoint has no weight file to account for. A text route expects no vision tower and
    leaves the vision side's tensors unused."""
    problems = [shortfall(ctx.model, None if ctx.text_route else ctx.checkpoint_config)]
    account = ctx.weights
    if account is not None:
        if account.reinitialised:
            problems.append(f"weights newly initialised (found in the checkpoint neither by name nor by content): "
                            f"{_some(account.reinitialised)}")
        unused, _ = account.unused_for(ctx.text_route)
        if unused:
            problems.append(f"checkpoint tensors left unused (no model tensor holds them): {_some(unused)}")
        return [p for p in problems if p]
    loaded = ctx.loaded
    if loaded.missing_keys:
        problems.append(f"weights newly initialised (absent from the checkpoint): {_some(loaded.missing_keys)}")
    if loaded.mismatched_keys:
        problems.append(f"weights re-initialised for a shape mismatch: {_some(loaded.mismatched_keys)}")
    if loaded.unexpected_keys:
        problems.append(f"checkpoint tensors left unused (dropped by this class): {_some(loaded.unexpected_keys)}")
    return [p for p in problems if p]


class Drifted(Exception):
    """The checkpoint loaded cleanly but another release computed other logits on it (message)."""


class ForwardRaised(Exception):
    """The loaded model's forward raised (the cause): a load that yields a model unable to run."""


@dataclass(frozen=True)
class LoadProbe:
    name: str = "load"
    mutates_model: bool = False

    def run(self, ctx: ProbeContext) -> ProbeOutcome:
        loaded = ctx.loaded
        details: dict[str, Any] = {
            "param_count": sum(p.numel() for p in ctx.model.parameters()),
            "missing_keys": loaded.missing_keys[:SHOWN_KEYS],
            "unexpected_keys": loaded.unexpected_keys[:SHOWN_KEYS],
            "mismatched_keys": loaded.mismatched_keys[:SHOWN_KEYS],
            "missing_count": len(loaded.missing_keys),
            "unexpected_count": len(loaded.unexpected_keys),
            "mismatched_count": len(loaded.mismatched_keys),
            "attempts": [a.as_dict() for a in loaded.attempts],
            "translations": loaded.translations,
            "weights": ctx.weights.as_dict(ctx.text_route) if ctx.weights is not None else ctx.weights_note,
            "modality": ctx.modality,
        }
        adapted = hasattr(ctx.model, "peft_config")  # a LoRA profile's summary says what the adapter covers
        experts = None if adapted else layout_details(ctx.model, getattr(ctx.checkpoint, "path", None), saves=True)
        if experts is not None:
            details["expert_layout"] = experts
        try:
            problem = self._problem(ctx, details)
        except Drifted as drifted:
            return ProbeOutcome("fail", str(drifted), DRIFT, details)
        except ForwardRaised as raised:
            error = raised.__cause__
            return ProbeOutcome("fail", f"{type(ctx.model).__name__} loaded, but a text forward raised "
                                        f"{type(error).__name__}: {error}", type(error).__name__, details)
        if problem:
            return ProbeOutcome("fail", problem, "CheckFailed", details)
        return ProbeOutcome(details=details)

    def _problem(self, ctx: ProbeContext, details: dict[str, Any]) -> str | None:
        import torch

        found = load_problems(ctx)
        if found:  # every problem at once: a headless class may also have re-initialised the rest
            return "; ".join(found)
        inputs = {k: v.to(ctx.device) for k, v in ctx.inputs.text().items()}
        # a tiny checkpoint records the writer's ids (a hub one computes its reference here, from the same ids)
        recorded = getattr(ctx.checkpoint, "reference", {}).get("input_ids", {}).get("text")
        encoded = inputs["input_ids"][0].tolist()
        if recorded is not None and encoded != recorded:  # the logits cannot be compared, and the difference is the finding
            writer = other_writer(ctx.checkpoint)
            return (f"the checkpoint's tokenizer, read here, encodes the reference prompt as {encoded}; "
                    f"{f'transformers {writer}' if writer else 'the build'} encoded it as {recorded}: "
                    "the tokenizer reads back differently (special tokens added or dropped)")
        try:
            with torch.no_grad():
                logits = ctx.model(**inputs).logits
        except Exception as exc:  # the weights are in, the model cannot run (e.g. a rope setting lost)
            raise ForwardRaised from exc
        absolute, relative = differences(logits, ctx.checkpoint.reference_logits("text"))
        details["max_abs_diff"], details["rel_diff"] = absolute, relative
        if not within_reference_tolerance(relative, ctx.dtype):
            message, error_type = mismatch("text-only logits", ctx.checkpoint, absolute, relative)
            if error_type == DRIFT:
                raise Drifted(message)
            return f"{message}, over the {ctx.dtype} tolerance: weights loaded wrong"
        return None


PROBE = LoadProbe()
