"""Module paths as releases name them: the vocabulary shared by the probes that record paths
(LoRA targets, inside release environments) and the reports that compare them (drift). It
imports nothing, so a probe can use it without the read side."""

WRAPPER_LEVELS = frozenset({"model", "language_model", "text_model", "vision_model", "base_model"})
"""Path levels that releases add or drop around the same computation (4.52 moved Qwen-VL's decoder
from `model.layers` to `model.language_model.layers`; 5.24 dropped SigLIP's `vision_model`):
removed before paths of two releases are matched."""


def normalised(path: str) -> str:
    """`model.language_model.layers.0.self_attn` -> `layers.0.self_attn`: the same in every release."""
    return ".".join(level for level in path.split(".") if level not in WRAPPER_LEVELS)
