# /// script
# requires-python = ">=3.10"
# dependencies = ["transformers==4.57.6", "torch==2.13.0", "peft"]
# ///
"""Qwen/Qwen2-VL-2B-Instruct, transformers 4.57.6: Qwen2VLForConditionalGeneration.from_pretrained(folder), then a LoRA
training step

compat-matrix cell qwen2_vl-smart-lora_vision-grpo_step, tiny random weights; passes in 5.24.0.
matrix.yaml expects fail: LoRA in the vision tower gets no gradient under reentrant gradient checkpointing
(grad_adapter; the loss uses those modules' output), the variant … Upstream:
https://github.com/huggingface/peft/issues/2880
Run: uv run vision_lora_reentrant_checkpointing.py   (exit 1: the failure reproduces; 0: right)
"""
import inspect, sys, tempfile
import peft, torch, transformers

LORA = dict(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",  # as TRL's peft_config
            target_modules=r'.*(?:vision|visual).*\.(?:self_attn|attn|mlp)\.(?:\w*proj|qkv|\w*fc\d)')
CONFIG = {"bos_token_id": 994, "eos_token_id": 996, "pad_token_id": 994, "initializer_range": 0.1, "vocab_size": 1000,
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_position_embeddings": 512, "vision_config": {"depth": 1, "embed_dim": 32,
    "hidden_size": 64, "num_heads": 2, "mlp_ratio": 2, "in_channels": 3, "patch_size": 14, "spatial_merge_size": 2,
    "temporal_patch_size": 2}, "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
    "image_token_id": 990, "video_token_id": 991, "vision_start_token_id": 992, "vision_end_token_id": 993}

def build(folder):
    """Save a tiny random Qwen2VLForConditionalGeneration (bfloat16, as the hub's)."""
    torch.manual_seed(0)
    model = transformers.Qwen2VLForConditionalGeneration(transformers.AutoConfig.for_model("qwen2_vl", **CONFIG))
    for p in model.parameters():  # no all-zero matrix or shut scalar gate: trained checkpoints have none
        if p.is_floating_point() and not p.any() and (p.dim() >= 2 or p.numel() == 1):
            torch.nn.init.normal_(p, 0.0, 0.1) if p.dim() >= 2 else torch.nn.init.ones_(p)
    model.to(torch.bfloat16).save_pretrained(folder)

def image_text_inputs(model):
    """What the processor gives for one image and a short prompt, built by hand: 4 image tokens."""
    ids = torch.tensor([[992] + [990] * 4 + [993, 5, 9, 14]])
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.randn(16, 1176),
              "image_grid_thw": torch.tensor([[1, 4, 4]])}
    if "mm_token_type_ids" in inspect.signature(model.forward).parameters:  # the processor returns it then
        inputs["mm_token_type_ids"] = (ids == 990).long()  # 1 at image tokens, as it does
    return inputs

def check(model):
    """One LoRA step as TRL's GRPOTrainer takes it (peft, gradient checkpointing): every adapter module learns."""
    inputs = image_text_inputs(model)  # of the model itself, before peft wraps it
    model = peft.get_peft_model(model, peft.LoraConfig(**LORA)).train()
    model.gradient_checkpointing_enable()  # the release's default variant, as the HF Trainer calls it
    model.enable_input_require_grads()  # what trainers call for peft under gradient checkpointing
    model(**inputs).logits.float().log_softmax(-1).mean().backward()  # a loss that uses every output
    lora_b = {n.split(".lora_B")[0].removeprefix("base_model.model."): p
              for n, p in model.named_parameters() if ".lora_B." in n}  # one per adapted module
    silent = [name for name, p in lora_b.items() if p.grad is None or not p.grad.any()]
    with torch.no_grad():  # silent and used (noise on its output moves the logits): the gradient was cut on the way
        plain, noise = model(**inputs).logits, lambda module, args, out: out + torch.randn_like(out)
        for name in list(silent):
            hook = model.get_submodule("base_model.model." + name).register_forward_hook(noise)
            if torch.equal(model(**inputs).logits, plain):
                silent.remove(name)  # not used by this forward (LLaVA's last vision layer, SigLIP's pooling head)
            hook.remove()
    before = {p: p.detach().clone() for n, p in model.named_parameters() if ".lora_" in n}
    torch.optim.SGD(list(before), lr=1e-3).step()
    failed = [f"grad_adapter: {len(silent)} of {len(lora_b)} adapter modules got no gradient although the loss uses their output "
              f"(the gradient is cut on the way): {', '.join(silent[:6])}" + f" and {len(silent) - 6} more" * (len(silent) > 6)] if silent else []
    if all(torch.equal(b, p) for p, b in before.items()):
        failed.append(f"adapter_changed: no adapter weight moved after the optimizer step ({len(lora_b)} modules)")
    if failed:
        sys.exit("got: CheckFailed: " + "; ".join(failed))

if __name__ == "__main__":
    print("transformers", transformers.__version__, "torch", torch.__version__)
    folder = tempfile.mkdtemp()
    build(folder)
    print("expected: every LoRA module whose output the loss uses gets a gradient")
    check(transformers.Qwen2VLForConditionalGeneration.from_pretrained(folder).float())  # a check that fails exits 1 with "got: ..."; an exception, with its traceback
    print("ok: the behaviour is right")
