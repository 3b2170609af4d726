"""Is a loaded model the real thing? Checks shared by the smart loader and the load probe."""

from __future__ import annotations

import re
from typing import Any

_VISION_PART = re.compile(r"(^|\.)(\w*vision\w*|visual\w*|multi_modal_projector|connector|mm_projector)(\.|$)")
"""Name parts of the vision side across families: Qwen-VL `visual`, `vision_tower` / `vision_model`,
the projectors of Llava / Gemma3 / PaliGemma / Mllama, and Idefics3 / SmolVLM's `connector`. The one
definition the loader and every probe use (a parameter, a module or a checkpoint key alike)."""


def is_vision_name(name: str) -> bool:
    """True when a parameter, module or checkpoint-key name belongs to the vision side."""
    return _VISION_PART.search(name) is not None


def expects_vision(config: Any) -> bool:
    """True when the checkpoint's config describes a vision tower."""
    return getattr(config, "vision_config", None) is not None


def has_lm_head(model: Any) -> bool:
    """True when the model produces vocabulary logits (a head a trainer can sample from)."""
    getter = getattr(model, "get_output_embeddings", None)
    return getter is not None and getter() is not None


def vision_parameter_count(model: Any) -> int:
    """Parameters that belong to the vision side, by name."""
    return sum(p.numel() for name, p in model.named_parameters() if is_vision_name(name))


def shortfall(model: Any, config: Any) -> str | None:
    """Why this model cannot stand in for the checkpoint (no LM head, no vision tower), or None."""
    problems = []
    if not has_lm_head(model):
        problems.append(f"{type(model).__name__} has no LM head (get_output_embeddings() is None)")
    if expects_vision(config) and vision_parameter_count(model) == 0:
        problems.append(f"{type(model).__name__} has no vision tower although the config has a vision_config")
    return "; ".join(problems) or None
