"""LoRA through peft: the adapter a load profile names, applied after the strategy's load.

As TRL's GRPOTrainer does with a `peft_config`: `get_peft_model(model, LoraConfig(...))` with the
profile's r, alpha and target_modules, task type CAUSAL_LM, no dropout (the step compares log-probs
of repeated forwards, which dropout would make differ). What the target list matched is recorded
(count, language / vision split, normalised paths) so a report can say when a release matches fewer
modules than another; a list that matches nothing, or a name in a list that matches no module while
the others do (TRL's q_proj ... down_proj on Phi-3's fused qkv_proj / gate_up_proj: peft adapts only
o_proj and down_proj, silently), fails the `target_matches` check.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from compat_matrix.spec import AdapterSpec
from compat_tests.outcomes import CheckFailed
from compat_tests.training import require
from loader import LoadResult
from loader.inspection import is_vision_name
from reports.module_paths import normalised

PEFT_PREFIX = "base_model.model."
"""What `get_peft_model` puts before every module path of the wrapped model."""

NAMES_SHOWN = 12
"""Distinct linear-layer name endings listed when a target list matches nothing."""

_INDEX = re.compile(r"\.\d+(?=\.|$)")


class TargetsUnmatched(CheckFailed):
    """The LoRA target list, or a name in it, matches no module of the loaded model (check `target_matches`)."""


@dataclass
class AdaptedLoad(LoadResult):
    """The strategy's load with a peft adapter around the model; `loaded_class` stays the strategy's class."""

    base_class: str = ""
    adapter: dict[str, Any] = field(default_factory=dict)
    """Plain summary of the adapter: type, r, alpha, target_modules, what they matched."""

    @property
    def loaded_class(self) -> str:
        return self.base_class


def module_pattern(path: str) -> str:
    """`model.language_model.layers.3.self_attn.q_proj` -> `layers.*.self_attn.q_proj`: wrapper levels
    (reports/drift.py) and layer indices dropped, so one module has one name in every release."""
    return _INDEX.sub(".*", normalised(path))


def matched_summary(paths: list[str]) -> dict[str, Any]:
    """Count, language / vision split and count per normalised path of the adapted modules."""
    vision = [p for p in paths if is_vision_name(p)]
    return {
        "matched": len(paths),
        "language": len(paths) - len(vision),
        "vision": len(vision),
        "modules": dict(sorted(Counter(module_pattern(p) for p in paths).items())),
    }


def adapted_paths(model: Any) -> list[str]:
    """Module paths (of the wrapped model) that carry a LoRA layer."""
    from peft.tuners.lora import LoraLayer

    return [name.removeprefix(PEFT_PREFIX) for name, module in model.named_modules() if isinstance(module, LoraLayer)]


def _linear_endings(model: Any) -> list[str]:
    import torch

    endings = Counter(name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear))
    return [name for name, _ in endings.most_common(NAMES_SHOWN)]


def _unmatched(spec: AdapterSpec, model: Any, said: str) -> TargetsUnmatched:
    example = next((n for n, m in model.named_modules() if n.endswith(("q_proj", "qkv"))), "")
    return TargetsUnmatched(
        f"target_matches: LoRA target_modules {spec.lora.target_modules!r} match no module of {type(model).__name__} "
        f"(peft: {said}); its linear layers end in {', '.join(_linear_endings(model))}"
        + (f"; a full path here: {example}" if example else ""))


def apply_adapter(loaded: LoadResult, spec: AdapterSpec) -> AdaptedLoad:
    """Wrap the loaded model with the profile's LoRA adapter (peft's own target matching), seeded so a
    reload gives the same adapter weights; TargetsUnmatched when the list matches nothing."""
    require("peft")
    import torch
    from peft import LoraConfig, get_peft_model

    lora = spec.lora
    targets = lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, target_modules=targets, lora_dropout=0.0, task_type="CAUSAL_LM")
    model = loaded.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            adapted = get_peft_model(model, config)
        except ValueError as exc:
            if "not found in the base model" in str(exc):
                raise _unmatched(spec, model, str(exc).splitlines()[0]) from exc
            raise
    paths = adapted_paths(adapted)
    if not paths:
        raise _unmatched(spec, model, "no LoRA layer was created")
    idle = [] if isinstance(targets, str) else [name for name in targets if not any(
        path == name or path.endswith("." + name) for path in paths)]  # peft's rule for a list of names
    if idle:
        raise TargetsUnmatched(
            f"target_matches: LoRA target_modules {idle!r} (of {targets!r}) match no module of {type(model).__name__}, "
            f"so only the other names' {len(paths)} modules train; its linear layers end in {', '.join(_linear_endings(model))}")
    summary = {"type": "lora", "r": lora.r, "alpha": lora.alpha, "target_modules": targets, **matched_summary(paths)}
    return AdaptedLoad(model=adapted, strategy=loaded.strategy, path=loaded.path, attempts=loaded.attempts,
                       missing_keys=loaded.missing_keys, unexpected_keys=loaded.unexpected_keys,
                       mismatched_keys=loaded.mismatched_keys, translations=loaded.translations,
                       base_class=loaded.loaded_class, adapter=summary)
