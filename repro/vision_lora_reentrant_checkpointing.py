# /// script
# requires-python = ">=3.10"
# dependencies = ["transformers==4.57.6", "torch==2.13.0", "peft"]
# ///
"""Qwen/Qwen2-VL-2B-Instruct (a tiny random copy), transformers 4.57.6:
Qwen2VLForConditionalGeneration.from_pretrained(folder), then a LoRA training step

compat-matrix cell qwen2_vl-smart-lora_vision-grpo_step in transformers 4.57.6; passes in 5.24.0.
matrix.yaml expects fail: LoRA in the vision tower gets no gradient under reentrant gradient checkpointing
(grad_adapter; the loss uses those modules' output), the variant gradient_checkpointing_enable(), the HF
Trainer and TRL before 0.27 use …
Upstream: https://github.com/huggingface/peft/issues/2880
(compat-matrix's `smart` loader takes the class config.architectures names, as this script does.)
Run: uv run vision_lora_reentrant_checkpointing.py   (exit 1: the failure reproduces; 0: right)
"""
import sys
import tempfile
import traceback

import torch
import transformers

KWARGS = {}
CONFIG = {"initializer_range": 0.1, "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "max_position_embeddings": 512, "vision_config": {"depth": 1, "embed_dim": 32, "hidden_size": 64,
    "num_heads": 2, "mlp_ratio": 2, "in_channels": 3, "patch_size": 14, "spatial_merge_size": 2,
    "temporal_patch_size": 2}, "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
    "image_token_id": 990, "video_token_id": 991, "vision_start_token_id": 992, "vision_end_token_id": 993}
ARCHITECTURE = "Qwen2VLForConditionalGeneration"
INPUT_IDS = torch.tensor([[1, 5, 9, 14, 20, 27, 35]])  # a few ordinary tokens of the tiny vocabulary


def fail(message):
    print("got:", message)
    sys.exit(1)


def build(folder):
    """Save a tiny random Qwen2VLForConditionalGeneration (bfloat16, as the hub's); return its float32 logits."""
    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model("qwen2_vl", **CONFIG)
    config.architectures = [ARCHITECTURE]
    model = getattr(transformers, ARCHITECTURE)(config).to(torch.bfloat16).eval()
    model.save_pretrained(folder)
    with torch.no_grad():
        return model.float()(input_ids=INPUT_IDS).logits


def image_text_inputs(model):
    """What the processor gives for one image and a short prompt, built by hand: 4 image tokens."""
    import inspect

    torch.manual_seed(1)
    input_ids = torch.tensor([[992] + [990] * 4 + [993, 5, 9, 14]])
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
              "pixel_values": torch.randn(16, 1176), "image_grid_thw": torch.tensor([[1, 4, 4]])}
    if "mm_token_type_ids" in inspect.signature(model.forward).parameters:  # the processor returns it then
        inputs["mm_token_type_ids"] = (input_ids == 990).long()  # 1 at image tokens, as it does
    return inputs


def check(model):
    """One LoRA training step as TRL's GRPOTrainer takes it with peft and gradient checkpointing."""
    from peft import LoraConfig, get_peft_model

    inputs = image_text_inputs(model)
    torch.manual_seed(0)
    targets = r'.*(?:vision|visual).*\.(?:self_attn|attn|mlp)\.(?:\w*proj|qkv|\w*fc\d)'
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=targets, lora_dropout=0.0,
                                             task_type="CAUSAL_LM"))
    model.gradient_checkpointing_enable()  # the release's default variant, as the HF Trainer calls it
    model.enable_input_require_grads()  # what trainers call for peft under gradient checkpointing
    model.train()
    model(**inputs).logits.float().log_softmax(-1).mean().backward()  # a loss that uses every output
    adapters = {}  # module -> its lora_A and lora_B weights; lora_B's gradient is non-zero when the output is used
    for name, p in model.named_parameters():
        if ".lora_" in name:
            adapters.setdefault(name.split(".lora_")[0].removeprefix("base_model.model."), []).append(p)
    silent = [m for m, ps in adapters.items() if any(p.grad is None for p in ps) or not any(p.grad.any() for p in ps)]
    failed = []
    if silent:
        names = ", ".join(silent[:6]) + (f" and {len(silent) - 6} more" if len(silent) > 6 else "")
        failed.append(f"grad_adapter: {len(silent)} of {len(adapters)} adapter modules got no gradient although the loss "
                      f"uses their output (the gradient is cut on the way): {names}")
    weights = [p for ps in adapters.values() for p in ps]
    before = [p.detach().clone() for p in weights]
    torch.optim.SGD(weights, lr=1e-3).step()
    if all(torch.equal(b, p) for b, p in zip(before, weights)):
        failed.append(f"adapter_changed: no adapter weight moved after the optimizer step ({len(adapters)} modules)")
    if failed:
        fail("CheckFailed: " + "; ".join(failed))


def load(folder):
    """The call under test."""
    model, info = getattr(transformers, ARCHITECTURE).from_pretrained(folder, output_loading_info=True, **KWARGS)
    if not KWARGS.get("dtype", KWARGS.get("torch_dtype")):
        model = model.float()  # compute in float32 unless the call names a dtype (the default differs by release)
    return model, info


if __name__ == "__main__":
    print("transformers", transformers.__version__, "torch", torch.__version__)
    folder = tempfile.mkdtemp()
    reference = build(folder)
    print("expected: every LoRA module whose output the loss uses gets a gradient")
    try:
        check(load(folder)[0])
    except Exception as exc:  # an exception is the failure
        traceback.print_exc()
        fail(f"{type(exc).__name__}: {exc}")
    print("ok: the behaviour is right")
