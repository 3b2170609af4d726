"""Mixture-of-experts weights: how a release keeps the experts (per-expert modules or fused 3-D
parameters), in memory and on disk, and which per-expert names it fuses into which parameter.

transformers 5 fuses `experts.N.gate_proj` / `up_proj` (Mixtral: `w1` / `w3`) into one
`experts.gate_up_proj` parameter and `down_proj` (`w2`) into `experts.down_proj` when a checkpoint
loads, and splits them back when it saves; 4.x keeps one module per expert. The release's own
converter list (`transformers.conversion_mapping`) says which names it fuses: no list kept here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

PER_EXPERT = re.compile(r"(?:^|\.)experts\.\d+\.")
"""A tensor of one expert: `mlp.experts.3.gate_proj.weight`."""

FUSED = re.compile(r"(?:^|\.)experts\.(?!\d+\.)[A-Za-z_]\w*$")
"""A tensor of every expert at once: `mlp.experts.gate_up_proj` (its first dimension is the expert)."""

EXPERT_COUNT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts")
"""Config attributes that hold the number of routed experts, by family."""


def layout_of(names: Iterable[str]) -> str:
    """`per-expert`, `fused`, `mixed` or `none` for a set of parameter or checkpoint tensor names."""
    kinds = {"per-expert" if PER_EXPERT.search(n) else "fused" for n in names if PER_EXPERT.search(n) or FUSED.search(n)}
    if not kinds:
        return "none"
    return kinds.pop() if len(kinds) == 1 else "mixed"


def expert_count(config: Any) -> int | None:
    """Routed experts per MoE layer, from the (text) config; None for a dense model."""
    for source in (config, getattr(config, "text_config", None)):
        for key in EXPERT_COUNT_KEYS:
            value = getattr(source, key, None)
            if isinstance(value, int) and value > 0:
                return value
    return None


def checkpoint_tensor_names(folder: Path) -> list[str]:
    """Names of every tensor in a checkpoint folder's safetensors files (headers only)."""
    from safetensors import safe_open

    names: list[str] = []
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as opened:
            names.extend(opened.keys())
    return names


def saved_tensor_names(model: Any) -> list[str]:
    """What `save_pretrained` writes for this model in the installed release (into a temporary folder)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder, safe_serialization=True)
        return checkpoint_tensor_names(Path(folder))


def layout_details(model: Any, checkpoint_folder: Path | None, saves: bool) -> dict[str, Any] | None:
    """`{"experts", "memory", "checkpoint", "saves", "fused"}` for a model with experts, else None:
    the layout of its parameters, of the checkpoint it was read from, and of what this release writes."""
    memory = layout_of(name for name, _ in model.named_parameters())
    if memory == "none":
        return None
    details: dict[str, Any] = {"experts": expert_count(model.config), "memory": memory,
                               "fused": {k: list(v) for k, v in fused_sources(model).items()}}
    if checkpoint_folder is not None:
        details["checkpoint"] = layout_of(checkpoint_tensor_names(checkpoint_folder))
    if saves:
        details["saves"] = layout_of(saved_tensor_names(model))
    return details


def _leaf(pattern: str) -> str:
    """`.experts.*.w1.weight` -> `w1`; `mlp.experts.gate_up_proj` -> `gate_up_proj`."""
    parts = [p for p in re.sub(r"\.weight\$?$|\$$", "", pattern).split(".") if p]
    return parts[-1] if parts else ""


def fused_sources(model: Any) -> dict[str, tuple[str, ...]]:
    """Fused expert parameter name -> the per-expert names the installed release's converter builds it
    from (`{"gate_up_proj": ("gate_proj", "up_proj"), "down_proj": ("down_proj",)}`), for the fused
    parameters this model has; empty in releases without a converter list (4.x)."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
    except ImportError:
        return {}
    try:
        conversions = get_model_conversion_mapping(model, add_legacy=False)
    except Exception:  # a converter list this release cannot build for the model: none to report
        return {}
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_parameters() if FUSED.search(name)}
    found: dict[str, tuple[str, ...]] = {}
    for conversion in conversions or ():
        sources = getattr(conversion, "_original_source_patterns", None) or getattr(conversion, "source_patterns", None)
        targets = getattr(conversion, "_original_target_patterns", None) or getattr(conversion, "target_patterns", None)
        if not sources or not targets:
            continue
        sources = [sources] if isinstance(sources, str) else list(sources)
        targets = [targets] if isinstance(targets, str) else list(targets)
        per_expert = [s for s in sources if "experts.*." in s]
        if len(targets) != 1 or not per_expert or "experts" not in targets[0]:
            continue
        fused = _leaf(targets[0])
        if fused in present:
            found[fused] = tuple(_leaf(s) for s in per_expert)
    return found
