# /// script
# requires-python = ">=3.10"
# dependencies = ["transformers==4.57.6", "torch==2.13.0"]
# ///
"""Qwen/Qwen2.5-VL-3B-Instruct, transformers 4.57.6: AutoModelForCausalLM.from_pretrained(folder)

compat-matrix cell qwen2_5_vl-auto_causal_lm-default-load, tiny random weights.
matrix.yaml expects fail: the VLM-R1 break: AutoModelForCausalLM does not map this VLM config ("Unrecognized
configuration class ...
Run: uv run vlm_r1_auto_causal_lm.py   (exit 1: the failure reproduces; 0: right)
"""
import collections, re, sys, tempfile
import torch, transformers

CONFIG = {"bos_token_id": 994, "eos_token_id": 996, "pad_token_id": 994, "initializer_range": 0.1, "vocab_size": 1000,
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_position_embeddings": 512, "vision_config": {"depth": 2, "hidden_size": 32,
    "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64, "in_channels": 3, "patch_size": 14,
    "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56, "fullatt_block_indexes": [1]},
    "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}, "image_token_id": 990, "video_token_id": 991,
    "vision_start_token_id": 992, "vision_end_token_id": 993}
INPUT_IDS = torch.tensor([[1, 5, 9, 14, 20, 27, 35]])  # a few ordinary tokens of the tiny vocabulary
VISION = re.compile(r"(^|\.)(\w*vision\w*|visual\w*|multi_modal_projector|connector|mm_projector)(\.|$)")  # the vision side's names

def build(folder):
    """Save a tiny random Qwen2_5_VLForConditionalGeneration (bfloat16, as the hub's); return its float32 logits."""
    torch.manual_seed(0)
    model = transformers.Qwen2_5_VLForConditionalGeneration(transformers.AutoConfig.for_model("qwen2_5_vl", **CONFIG))
    for p in model.parameters():  # no all-zero matrix or shut scalar gate: trained checkpoints have none
        if p.is_floating_point() and not p.any() and (p.dim() >= 2 or p.numel() == 1):
            torch.nn.init.normal_(p, 0.0, 0.1) if p.dim() >= 2 else torch.nn.init.ones_(p)
    model.to(torch.bfloat16).eval().save_pretrained(folder)
    return model.float()(input_ids=INPUT_IDS).logits.detach()

def check_load(model, info, reference):
    """As compat-matrix's load probe: the whole model (LM head, a vision tower), every saved tensor used, the logits."""
    name = type(model).__name__
    problems = [f"{name} has no LM head (get_output_embeddings() is None)"] if model.get_output_embeddings() is None else []
    if not any(VISION.search(n) for n, _ in model.named_parameters()):
        problems.append(f"{name} has no vision tower although the config has a vision_config")
    new = sorted(info["missing_keys"]) + sorted(k if isinstance(k, str) else k[0] for k in info.get("mismatched_keys", []))
    if new:
        problems.append(f"weights newly initialised (found in the checkpoint neither by name nor by content): {parts(new)}")
    if unused := sorted(info["unexpected_keys"]):
        problems.append(f"checkpoint tensors left unused (no model tensor holds them): {parts(unused)}")
    if problems:
        sys.exit("got: CheckFailed: " + "; ".join(problems))
    try:
        logits = model(input_ids=INPUT_IDS).logits.detach().float()
    except Exception as exc:  # the weights are in, the model cannot run
        sys.exit(f"got: {type(exc).__name__}: {name} loaded, but a text forward raised {type(exc).__name__}: {exc}")
    absolute = float((logits - reference).abs().max())
    relative = absolute / float(reference.abs().max())
    if relative > (1e-3 if model.dtype == torch.float32 else 0.1):
        sys.exit(f"got: CheckFailed: text-only logits differ from the reference recorded at build time (max diff "
                 f"{absolute:.3g}, {relative:.3g} relative), over the {model.dtype} tolerance: weights loaded wrong")

def parts(keys):
    """The parts of the model the tensors belong to, as the load probe names them."""
    found = collections.defaultdict(list)
    for k in keys:
        found["LM head" if "lm_head" in k else
              "vision tower" if VISION.search(k) else "embeddings" if "embed_tokens" in k or "wte" in k else "other weights"].append(k)
    return "; ".join(f"{p}: {len(ks)} tensor(s) ({', '.join(ks[:2])}" + (f", and {len(ks) - 2} more)" if len(ks) > 2 else ")")
                     for p, ks in found.items())

if __name__ == "__main__":
    print("transformers", transformers.__version__, "torch", torch.__version__)
    folder = tempfile.mkdtemp()
    reference = build(folder)
    print("expected: AutoModelForCausalLM.from_pretrained(folder) loads the checkpoint cleanly, with its LM head and the saved weights' logits")
    model, info = transformers.AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    check_load(model.float(), info, reference)  # a check that fails exits 1 with "got: ..."; an exception, with its traceback
    print("ok: the behaviour is right")
