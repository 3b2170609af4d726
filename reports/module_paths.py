"""Module paths as releases name them: the vocabulary shared by the probes that record paths
(LoRA targets, inside release environments) and the reports that compare them (drift). It
imports nothing, so a probe can use it without the read side."""

WRAPPER_LEVELS = frozenset({"model", "language_model", "text_model", "vision_model", "base_model"})
"""Path levels that releases add or drop around the same computation (4.52 moved Qwen-VL's decoder
from `model.layers` to `model.language_model.layers`; 5.24 dropped SigLIP's `vision_model`):
removed before paths of two releases are matched."""


RENAMED_LEVELS = {"block_sparse_moe": "mlp"}
"""Path levels one release renamed: 5.x calls Mixtral's mixture-of-experts block `mlp` (its
conversion_mapping renames `.block_sparse_moe.` to `.mlp.`), so the block is matched across releases.
The experts inside it are not: 4.x runs one module per expert (`experts.3`), 5.x one fused `experts`."""


def normalised(path: str) -> str:
    """`model.language_model.layers.0.self_attn` -> `layers.0.self_attn`: the same in every release."""
    return ".".join(RENAMED_LEVELS.get(level, level) for level in path.split(".") if level not in WRAPPER_LEVELS)
