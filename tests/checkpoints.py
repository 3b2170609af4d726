"""Minimal saved models for loader tests: config + weights only (the matrix's tiny builder adds
tokenizers and processors; loader tests need neither and stay independent of it)."""

from __future__ import annotations

from pathlib import Path

TEXT = dict(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)


def save_llama(folder: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**TEXT, architectures=["LlamaForCausalLM"])).save_pretrained(folder)
    return folder


def save_qwen2_vl(folder: Path) -> Path:
    import torch
    import transformers
    from transformers import AutoConfig

    config = AutoConfig.for_model(
        "qwen2_vl", **TEXT, architectures=["Qwen2VLForConditionalGeneration"],
        vision_config=dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
        image_token_id=990, video_token_id=991, vision_start_token_id=992, vision_end_token_id=993)
    torch.manual_seed(0)
    transformers.Qwen2VLForConditionalGeneration(config).save_pretrained(folder)
    return folder
