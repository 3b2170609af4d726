"""LoRA through peft: the adapter a load profile names, applied after the strategy's load.

As TRL's GRPOTrainer does with a `peft_config`: `get_peft_model(model, LoraConfig(...))` with the
profile's r, alpha and target_modules, task type CAUSAL_LM, no dropout (the step compares log-probs
of repeated forwards, which dropout would make differ). What the target list matched is recorded
(count, language / vision split, normalised paths) so a report can say when a release matches fewer
modules than another; a list that matches nothing, or a name in a list that matches no module while
the others do (TRL's q_proj ... down_proj on Phi-3's fused qkv_proj / gate_up_proj: peft adapts only
o_proj and down_proj, silently), fails the `target_matches` check. On a mixture of experts the adapted
parameters (peft's `target_parameters`, which peft 0.18+ also makes of expert names on 5.x's fused
experts), the trainable count and the coverage per projection (experts counted one by one) are recorded
too, and a list naming half of a pair the release fuses (gate_proj without up_proj) fails with both names.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from compat_matrix.spec.schema import AdapterSpec
from compat_tests.experts import FUSED, PER_EXPERT, fused_sources
from compat_tests.outcomes import CellUnsupported, CheckFailed
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


class HalfFusedPair(TargetsUnmatched):
    """The target list names one of the per-expert projections the release fuses into one parameter,
    not the other (check `target_matches`)."""


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


def adapted_parameters(model: Any) -> dict[str, int]:
    """Parameters adapted in place (peft's ParamWrapper: `target_parameters`), by their name in the base
    model, with their first dimension (the number of experts of a fused expert weight)."""
    from peft.tuners.lora import LoraLayer

    found: dict[str, int] = {}
    for name, module in model.named_modules():
        parameter = getattr(module, "parameter_name", None)
        if isinstance(module, LoraLayer) and isinstance(parameter, str):
            owner = re.sub(r"(?:\.base_layer)+$", "", name.removeprefix(PEFT_PREFIX))
            weight = module.get_base_layer()
            shape = getattr(getattr(weight, parameter, None), "shape", None)
            found[f"{owner}.{parameter}"] = int(shape[0]) if shape else 1
    return found


def _unit(path: str) -> str:
    """`model.layers.1.mlp.experts.3.gate_proj` -> `experts.gate_proj`: the projection, under the module
    that holds it, without layer or expert index (renames such as Mixtral's block_sparse_moe -> mlp drop out)."""
    parts = [p for p in path.split(".") if not p.isdigit() and p != "base_layer"]
    return ".".join(parts[-2:])


def coverage(paths: list[str], parameters: dict[str, int], fused: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """What the adapter covers, per projection (`experts.gate_proj`: 8 = 2 layers x 4 experts), whatever
    the layout: a fused parameter covers each per-expert name it is built from, for all its experts;
    and which expert indices are covered per projection."""
    counts: Counter[str] = Counter()
    experts: dict[str, set[int]] = {}
    for path in paths:
        if path.rsplit(".", 1)[-1] == "base_layer" or any(path == p.rsplit(".", 1)[0] for p in parameters):
            continue  # the wrappers peft nests around an adapted parameter
        counts[_unit(path)] += 1
        index = PER_EXPERT.search(path)
        if index:
            experts.setdefault(_unit(path), set()).add(int(index.group(0).strip(".").split(".")[-1]))
    for name, count in parameters.items():
        owner, leaf = name.rsplit(".", 1)
        for source in fused.get(leaf, (leaf,)):
            unit = _unit(f"{owner}.{source}")
            counts[unit] += count
            experts.setdefault(unit, set()).update(range(count))
    return {"coverage": dict(sorted(counts.items())),
            "experts_covered": {unit: sorted(indices) for unit, indices in sorted(experts.items())}}


def _named(name: str, targets: list[str]) -> bool:
    return any(t == name or t.endswith("." + name) for t in targets)


def half_fused_pairs(targets: list[str], fused: dict[str, tuple[str, ...]]) -> list[tuple[str, list[str], list[str]]]:
    """(fused parameter, names given, names missing) for each fused parameter the list names only part of."""
    halves = []
    for parameter, sources in fused.items():
        given = [s for s in sources if _named(s, targets)]
        if 0 < len(given) < len(sources):
            halves.append((parameter, given, [s for s in sources if s not in given]))
    return halves


def _half_failure(halves: list[tuple[str, list[str], list[str]]], model: Any, said: str = "") -> HalfFusedPair:
    import transformers

    pairs = "; ".join(f"{', '.join(given)} without {', '.join(missing)} (fused into experts.{parameter})"
                      for parameter, given, missing in halves)
    return HalfFusedPair(
        f"target_matches: LoRA target_modules name half of a fused expert pair: {pairs}; transformers "
        f"{transformers.__version__} keeps {type(model).__name__}'s experts fused, so one half cannot be adapted "
        f"alone" + (f" (peft: {said})" if said else ""))


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


def _lora_config(spec: AdapterSpec, targets: str | list[str]) -> Any:
    """peft's LoraConfig for the profile; CellUnsupported where the installed peft lacks target_parameters."""
    import dataclasses

    import peft
    from peft import LoraConfig

    lora = spec.lora
    extra: dict[str, Any] = {}
    if lora.target_parameters:
        if "target_parameters" not in {f.name for f in dataclasses.fields(LoraConfig)}:
            raise CellUnsupported(f"peft {peft.__version__} has no LoraConfig.target_parameters (peft 0.17.0 added it): "
                                  f"cannot adapt {list(lora.target_parameters)}")
        extra["target_parameters"] = list(lora.target_parameters)
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, target_modules=targets, lora_dropout=0.0, task_type="CAUSAL_LM",
                      **extra)


def apply_adapter(loaded: LoadResult, spec: AdapterSpec) -> AdaptedLoad:
    """Wrap the loaded model with the profile's LoRA adapter (peft's own target matching), seeded so a
    reload gives the same adapter weights; TargetsUnmatched when the list matches nothing."""
    require("peft")
    import torch
    from peft import get_peft_model

    lora = spec.lora
    targets = lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
    config = _lora_config(spec, targets)
    model = loaded.model
    fused = fused_sources(model)
    halves = [] if isinstance(targets, str) else half_fused_pairs(targets, fused)
    if halves:
        raise _half_failure(halves, model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            adapted = get_peft_model(model, config)
        except ValueError as exc:
            if "not found in the base model" in str(exc):
                raise _unmatched(spec, model, str(exc).splitlines()[0]) from exc
            raise
    paths = adapted_paths(adapted)
    parameters = adapted_parameters(adapted)
    if not paths:
        raise _unmatched(spec, model, "no LoRA layer was created")
    adapted_names = [*paths, *parameters, *(f"{p.rsplit('.', 1)[0]}.{s}" for p in parameters
                                            for s in fused.get(p.rsplit(".", 1)[1], ()))]
    idle = [] if isinstance(targets, str) else [name for name in targets if not any(
        path == name or path.endswith("." + name) for path in adapted_names)]  # peft's rule for a list of names
    idle_parameters = [name for name in lora.target_parameters
                       if not any(p == name or p.endswith("." + name) for p in parameters)]
    if idle_parameters:
        fused_here = sorted({n.rsplit(".", 1)[-1] for n, _ in model.named_parameters() if FUSED.search(n)})
        raise TargetsUnmatched(
            f"target_matches: LoRA target_parameters {idle_parameters!r} match no parameter of {type(model).__name__} "
            f"(peft leaves them out without a word; {len(paths)} modules train); "
            + (f"its fused expert parameters: {', '.join(fused_here)}" if fused_here
               else "it keeps one module per expert here: name the projections in target_modules"))
    if idle:
        raise TargetsUnmatched(
            f"target_matches: LoRA target_modules {idle!r} (of {targets!r}) match no module of {type(model).__name__}, "
            f"so only the other names' {len(paths)} modules train; its linear layers end in {', '.join(_linear_endings(model))}")
    summary = {"type": "lora", "r": lora.r, "alpha": lora.alpha, "target_modules": targets, **matched_summary(paths),
               "target_parameters": list(lora.target_parameters),
               "parameters": dict(sorted(Counter(module_pattern(p) for p in parameters).items())),
               "trainable": sum(p.numel() for p in adapted.parameters() if p.requires_grad),
               **coverage(paths, parameters, fused)}
    return AdaptedLoad(model=adapted, strategy=loaded.strategy, path=loaded.path, attempts=loaded.attempts,
                       missing_keys=loaded.missing_keys, unexpected_keys=loaded.unexpected_keys,
                       mismatched_keys=loaded.mismatched_keys, translations=loaded.translations,
                       base_class=loaded.loaded_class, adapter=summary)
