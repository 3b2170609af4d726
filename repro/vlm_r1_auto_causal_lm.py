# /// script
# requires-python = ">=3.10"
# dependencies = ["transformers==4.57.6", "torch==2.13.0"]
# ///
"""Qwen/Qwen2.5-VL-3B-Instruct (a tiny random copy), transformers 4.57.6:
AutoModelForCausalLM.from_pretrained(folder)

compat-matrix cell qwen2_5_vl-auto_causal_lm-default-load in transformers 4.57.6.
matrix.yaml expects fail: the VLM-R1 break: AutoModelForCausalLM does not map this VLM config ("Unrecognized
configuration class ...
Run: uv run vlm_r1_auto_causal_lm.py   (exit 1: the failure reproduces; 0: right)
"""
import sys
import tempfile
import traceback

import torch
import transformers

KWARGS = {}
CONFIG = {"initializer_range": 0.1, "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "max_position_embeddings": 512, "vision_config": {"depth": 2, "hidden_size": 32, "intermediate_size": 64,
    "num_heads": 2, "out_hidden_size": 64, "in_channels": 3, "patch_size": 14, "spatial_merge_size": 2,
    "temporal_patch_size": 2, "window_size": 56, "fullatt_block_indexes": [1]},
    "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}, "image_token_id": 990,
    "video_token_id": 991, "vision_start_token_id": 992, "vision_end_token_id": 993}
ARCHITECTURE = "Qwen2_5_VLForConditionalGeneration"
INPUT_IDS = torch.tensor([[1, 5, 9, 14, 20, 27, 35]])  # a few ordinary tokens of the tiny vocabulary


def fail(message):
    print("got:", message)
    sys.exit(1)


def build(folder):
    """Save a tiny random Qwen2_5_VLForConditionalGeneration (bfloat16, as the hub's); return its float32 logits."""
    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model("qwen2_5_vl", **CONFIG)
    config.architectures = [ARCHITECTURE]
    model = getattr(transformers, ARCHITECTURE)(config).to(torch.bfloat16).eval()
    model.save_pretrained(folder)
    with torch.no_grad():
        return model.float()(input_ids=INPUT_IDS).logits


def load(folder):
    """The call under test."""
    model, info = transformers.AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True, **KWARGS)
    if not KWARGS.get("dtype", KWARGS.get("torch_dtype")):
        model = model.float()  # compute in float32 unless the call names a dtype (the default differs by release)
    return model, info


def check_load(model, info, reference):
    """As compat-matrix's load probe: every tensor used, an LM head, the saved weights' logits."""
    unclean = {key: names for key, names in info.items() if names and key != "error_msgs"}
    if unclean:
        fail(f"CheckFailed: the load was not clean: {unclean}")
    if model.get_output_embeddings() is None:
        fail(f"CheckFailed: {type(model).__name__} has no LM head")
    try:
        with torch.no_grad():
            logits = model(input_ids=INPUT_IDS).logits.float()
    except Exception as exc:  # the weights are in, the model cannot run
        fail(f"{type(exc).__name__}: {type(model).__name__} loaded, but a text forward raised {type(exc).__name__}: {exc}")
    relative = float((logits - reference).abs().max() / reference.abs().max())
    if relative > (1e-3 if model.dtype == torch.float32 else 0.1):
        fail(f"CheckFailed: text-only logits differ from the reference recorded at build time ({relative:.3g} relative)")
    return model


if __name__ == "__main__":
    print("transformers", transformers.__version__, "torch", torch.__version__)
    folder = tempfile.mkdtemp()
    reference = build(folder)
    print("expected: AutoModelForCausalLM.from_pretrained(folder) loads the checkpoint cleanly, with its LM head and the saved weights' logits")
    try:
        check_load(*load(folder), reference)
    except Exception as exc:  # an exception is the failure
        traceback.print_exc()
        fail(f"{type(exc).__name__}: {exc}")
    print("ok: the behaviour is right")
