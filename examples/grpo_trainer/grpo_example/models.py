"""How GRPO trainers (VLM-R1, R1-V) load the policy: the class is picked from a substring of the model id."""

from __future__ import annotations

from typing import Any

import transformers


def policy_class(model_id: str) -> Any:
    """`Qwen2_5_VLForConditionalGeneration` for a "Qwen2.5-VL" id, `Qwen2VLForConditionalGeneration`
    for "Qwen2-VL", else `AutoModelForCausalLM` (what the trainers do)."""
    if "Qwen2.5-VL" in model_id:
        return transformers.Qwen2_5_VLForConditionalGeneration
    if "Qwen2-VL" in model_id:
        return transformers.Qwen2VLForConditionalGeneration
    return transformers.AutoModelForCausalLM


def load_policy(model_id: str, **kwargs: Any) -> Any:
    """The policy model, with the trainer's own keyword arguments (bf16 and no KV cache while training)."""
    return policy_class(model_id).from_pretrained(model_id, **kwargs)
