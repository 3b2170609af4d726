"""The text of a reproduction script, in blocks put together top to bottom by `script.py`.

Markers `__NAME__` are filled in there; everything else is the script as a maintainer reads it.
Every block uses transformers, torch, tokenizers and peft only: nothing of compat-matrix.
"""

from __future__ import annotations

HEADER = '''\
# /// script
# requires-python = ">=3.10"
# dependencies = [__DEPENDENCIES__]
# ///
"""__TITLE__

__ABOUT__
"""
import sys
import tempfile
import traceback

import torch
import transformers

'''

MODEL = '''\
CONFIG = __CONFIG__
ARCHITECTURE = "__ARCHITECTURE__"
INPUT_IDS = torch.tensor([[1, 5, 9, 14, 20, 27, 35]])  # a few ordinary tokens of the tiny vocabulary


def fail(message):
    print("got:", message)
    sys.exit(1)


def build(folder):
    """Save a tiny random __ARCHITECTURE__ (bfloat16, as the hub's); return its float32 logits."""
    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model("__MODEL_TYPE__", **CONFIG)
    config.architectures = [ARCHITECTURE]
    model = getattr(transformers, ARCHITECTURE)(config).to(torch.bfloat16).eval()
    model.save_pretrained(folder)
    with torch.no_grad():
        return model.float()(input_ids=INPUT_IDS).logits
'''

TOKENIZER = '''

def tokenizer():
    """The smallest tokenizer a checkpoint can ship: a word-level vocabulary up to the special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    special = __SPECIAL_IDS__
    vocab = {w: i for i, w in enumerate(["<unk>", "<|endoftext|>", "describe", "the", "picture"])}
    vocab.update({f"<reserved_{i}>": i for i in range(len(vocab), __SPECIAL_BASE__)} | special)
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(list(special))  # in the tokenizer's own file, as the hub's tokenizer.json has them
    return __TOKENIZER_CLASS__(tokenizer_object=backend, unk_token="<unk>", pad_token="<|endoftext|>")
'''

QWEN_VL_IMAGE_PROCESSOR = '''

def image_processor():
    """A Qwen-VL image processor sized to the tiny vision tower: a __SIDE__x__SIDE__ image gives __TOKENS__ image tokens."""
    return transformers.Qwen2VLImageProcessor(patch_size=__PATCH__, merge_size=__MERGE__, temporal_patch_size=__TEMPORAL__,
                                              min_pixels=__SIDE__ * __SIDE__, max_pixels=__SIDE__ * __SIDE__)
'''

QWEN_VL_INPUTS = '''

def image_text_inputs(model):
    """What the processor gives for one image and a short prompt, built by hand: __TOKENS__ image tokens."""
    import inspect

    torch.manual_seed(1)
    input_ids = torch.tensor([[__START__] + [__IMAGE__] * __TOKENS__ + [__END__, 5, 9, 14]])
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
              "pixel_values": torch.randn(__PATCHES__, __PATCH_DIM__), "image_grid_thw": torch.tensor([[1, __GRID__, __GRID__]])}
    if "mm_token_type_ids" in inspect.signature(model.forward).parameters:  # the processor returns it then
        inputs["mm_token_type_ids"] = (input_ids == __IMAGE__).long()  # 1 at image tokens, as it does
    return inputs
'''

LOAD = '''

def load(folder):
    """The call under test."""
    __LOAD_BODY__
    if not KWARGS.get("dtype", KWARGS.get("torch_dtype")):
        model = model.float()  # compute in float32 unless the call names a dtype (the default differs by release)
    return model, info
'''

CHECK_LOAD = '''

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
'''

FORWARD_IMAGE = '''

def check(model):
    """Training code passes some of the processor's outputs by hand: the logits must not change."""
    full = image_text_inputs(model)
    manual = {k: v for k, v in full.items() if k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")}
    print("the processor returns", sorted(full), "; training code passes", sorted(manual))
    with torch.no_grad():
        every = model(**full).logits
        try:
            some = model(**manual).logits
        except Exception as exc:  # as the forward probe words it
            fail(f"{type(exc).__name__}: forward with only {sorted(manual)} raised {type(exc).__name__}: {exc}")
    relative = float((every - some).abs().max() / every.abs().max())
    if relative > (1e-3 if model.dtype == torch.float32 else 0.1):
        fail(f"CheckFailed: forward with only {sorted(manual)} gives different logits than with every processor "
             f"output (relative max diff {relative:.3g})")
'''

FORWARD_TEXT = '''

def check(model):
    """A text forward gives finite logits of the right shape."""
    with torch.no_grad():
        logits = model(input_ids=INPUT_IDS).logits
    if not torch.isfinite(logits).all():
        fail("CheckFailed: text-only forward: logits contain NaN or inf")
'''

LORA_STEP = '''

def check(model):
    """One LoRA training step as TRL's GRPOTrainer takes it with peft and gradient checkpointing."""
    from peft import LoraConfig, get_peft_model

    inputs = __INPUTS__
    torch.manual_seed(0)
    targets = __TARGETS__
    model = get_peft_model(model, LoraConfig(r=__R__, lora_alpha=__ALPHA__, target_modules=targets, lora_dropout=0.0,
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
'''

MAIN_SAME = '''

if __name__ == "__main__":
    print("transformers", transformers.__version__, "torch", torch.__version__)
    folder = tempfile.mkdtemp()
    reference = build(folder)
    print("expected: __EXPECTED__")
    try:
        __CHECK__
    except Exception as exc:  # an exception is the failure
        traceback.print_exc()
        fail(f"{type(exc).__name__}: {exc}")
    print("ok: the behaviour is right")
'''

MAIN_CROSS = '''

def write(folder):
    """Step 1, run by the release that saves: the checkpoint and what it computes."""
    torch.save(build(folder), f"{folder}/reference_logits.pt")
    __SAVE_FILES__
    print(f"transformers {transformers.__version__} saved the checkpoint in {folder}")


def read(folder):
    """Step 2, run by the release that loads: what a fine-tune's user does."""
    transformers.AutoConfig.from_pretrained(folder)
    __READ_FILES__
    model = check_load(*load(folder), torch.load(f"{folder}/reference_logits.pt"))
    __CHECK__
    print("ok: the behaviour is right")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "read"):
        sys.exit(f"usage: {sys.argv[0]} write|read FOLDER (see the top of this file)")
    print("transformers", transformers.__version__, "torch", torch.__version__)
    if sys.argv[1] == "read":
        print("expected: __EXPECTED__")
    try:
        (write if sys.argv[1] == "write" else read)(sys.argv[2])
    except Exception as exc:  # an exception is the failure
        traceback.print_exc()
        fail(f"{type(exc).__name__}: {exc}")
'''
