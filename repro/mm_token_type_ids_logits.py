# /// script
# requires-python = ">=3.10"
# dependencies = ["transformers==5.24.0", "torch==2.13.0"]
# ///
"""Qwen/Qwen2.5-VL-3B-Instruct, transformers 5.24.0: AutoModelForImageTextToText.from_pretrained(folder), then a
forward

compat-matrix cell qwen2_5_vl-auto_image_text_to_text-default-forward, tiny random weights; passes in 4.57.6.
matrix.yaml expects fail: from 5.3.0 on (5.4.0 needs torchvision here, stepped over): without mm_token_type_ids the
forward silently gives other logits (42% relative on the …
Run: uv run mm_token_type_ids_logits.py   (exit 1: the failure reproduces; 0: right)
"""
import inspect, sys, tempfile
import torch, transformers

CONFIG = {"bos_token_id": 994, "eos_token_id": 996, "pad_token_id": 994, "initializer_range": 0.1, "vocab_size": 1000,
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_position_embeddings": 512, "vision_config": {"depth": 2, "hidden_size": 32,
    "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64, "in_channels": 3, "patch_size": 14,
    "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56, "fullatt_block_indexes": [1]},
    "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}, "image_token_id": 990, "video_token_id": 991,
    "vision_start_token_id": 992, "vision_end_token_id": 993}
INPUT_IDS = torch.tensor([[1, 5, 9, 14, 20, 27, 35]])  # a few ordinary tokens of the tiny vocabulary

def build(folder):
    """Save a tiny random Qwen2_5_VLForConditionalGeneration (bfloat16, as the hub's); return its float32 logits."""
    torch.manual_seed(0)
    model = transformers.Qwen2_5_VLForConditionalGeneration(transformers.AutoConfig.for_model("qwen2_5_vl", **CONFIG))
    for p in model.parameters():  # no all-zero matrix or shut scalar gate: trained checkpoints have none
        if p.is_floating_point() and not p.any() and (p.dim() >= 2 or p.numel() == 1):
            torch.nn.init.normal_(p, 0.0, 0.1) if p.dim() >= 2 else torch.nn.init.ones_(p)
    model.to(torch.bfloat16).eval().save_pretrained(folder)
    return model.float()(input_ids=INPUT_IDS).logits.detach()

def image_text_inputs(model):
    """What the processor gives for one image and a short prompt, built by hand: 4 image tokens."""
    ids = torch.tensor([[992] + [990] * 4 + [993, 5, 9, 14]])
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.randn(16, 1176),
              "image_grid_thw": torch.tensor([[1, 4, 4]])}
    if "mm_token_type_ids" in inspect.signature(model.forward).parameters:  # the processor returns it then
        inputs["mm_token_type_ids"] = (ids == 990).long()  # 1 at image tokens, as it does
    return inputs

def check(model):
    """Training code passes some of the processor's outputs by hand: the logits must not change."""
    full = image_text_inputs(model)
    manual = {k: v for k, v in full.items() if k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")}
    model(input_ids=INPUT_IDS)  # the text-only forward comes first
    every = model(**full).logits.detach()
    try:
        some = model(**manual).logits.detach()
    except Exception as exc:  # as the forward probe words it
        sys.exit(f"got: {type(exc).__name__}: forward with only {sorted(manual)} raised {type(exc).__name__}: {exc}")
    relative = float((every - some).abs().max() / every.abs().max())
    if relative > (1e-3 if model.dtype == torch.float32 else 0.1):
        sys.exit(f"got: CheckFailed: forward with only {sorted(manual)} gives different logits than with every "
                 f"processor output (relative max diff {relative:.3g})")

if __name__ == "__main__":
    print("transformers", transformers.__version__, "torch", torch.__version__)
    folder = tempfile.mkdtemp()
    build(folder)
    print("expected: the forward gives the same logits with the inputs training code passes by hand")
    check(transformers.AutoModelForImageTextToText.from_pretrained(folder).float())  # a check that fails exits 1 with "got: ..."; an exception, with its traceback
    print("ok: the behaviour is right")
