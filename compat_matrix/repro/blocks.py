"""The text of a reproduction script, in blocks put together top to bottom by `script.py`.

Markers `__NAME__` are filled in there; everything else is the script as a maintainer reads it.
Every block uses transformers, torch, tokenizers, safetensors and peft only: nothing of compat-matrix.
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
import __IMPORTS__
__PACKAGES__

'''

MODEL = '''\
__CONFIG__
INPUT_IDS = torch.tensor([[1, 5, 9, 14, 20, 27, 35]])  # a few ordinary tokens of the tiny vocabulary


def build(folder):
    """Save a tiny random __ARCHITECTURE__ (bfloat16, as the hub's); return its float32 logits."""
    torch.manual_seed(0)
    model = transformers.__ARCHITECTURE__(transformers.AutoConfig.for_model("__MODEL_TYPE__", **CONFIG))
    for p in model.parameters():  # no all-zero matrix or shut scalar gate: trained checkpoints have none
        if p.is_floating_point() and not p.any() and (p.dim() >= 2 or p.numel() == 1):
            torch.nn.init.normal_(p, 0.0, __INIT_STD__) if p.dim() >= 2 else torch.nn.init.ones_(p)
    model.to(torch.bfloat16).eval().save_pretrained(folder)
    return model.float()(input_ids=INPUT_IDS).logits.detach()
'''

MODEL_ONLY = MODEL.replace("; return its float32 logits", "").replace(".eval().save_pretrained", ".save_pretrained").replace(
    "\n    return model.float()(input_ids=INPUT_IDS).logits.detach()", "").replace(
    "INPUT_IDS = torch.tensor([[1, 5, 9, 14, 20, 27, 35]])  # a few ordinary tokens of the tiny vocabulary\n", "")
"""The build without the reference logits (a script that runs no text forward)."""

TOKENIZER = '''

PROMPT = "__PROMPT__"  # the load probe's reference prompt: as many words as the cell's had tokens


def tokenizer():
    """The family's tokenizer class, its special tokens and roles as the checkpoint has them, on a vocabulary of a few words."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    special = __SPECIAL_IDS__
    vocab = {w: i for i, w in enumerate(__WORDS__)}
    vocab.update({f"<reserved_{i}>": i for i in range(len(vocab), __SPECIAL_BASE__)} | special)
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(list(special))  # in the tokenizer's own file, as the hub's tokenizer.json has them
__BOS__    return __TOKENIZER_CLASS__(
        __TOKENIZER_KWARGS__)
'''

BOS = '''\
    bos = "__BOS_TOKEN__"  # the family's tokenizer prepends it
    backend.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                           special_tokens=[(bos, special[bos])])
'''

TOKENS_CHECK = '''\
    encoded = transformers.AutoTokenizer.from_pretrained(folder)(PROMPT)["input_ids"]
    with open(f"{folder}/reference_ids.json") as file:
        recorded = json.load(file)
    if encoded != recorded:  # the logits cannot be compared, and the difference is the finding
        sys.exit(f"got: CheckFailed: the checkpoint's tokenizer, read here, encodes the reference prompt as {encoded}; "
                 f"transformers {written_by(folder)} encoded it as {recorded}: the tokenizer reads back differently "
                 "(special tokens added or dropped)")
'''

QWEN_VL_IMAGE_PROCESSOR = '''

def image_processor():
    """A Qwen-VL image processor sized to the tiny vision tower: a __SIDE__x__SIDE__ image gives __TOKENS__ image tokens."""
    return transformers.Qwen2VLImageProcessor(patch_size=__PATCH__, merge_size=__MERGE__, temporal_patch_size=__TEMPORAL__,
                                              min_pixels=__SIDE__ * __SIDE__, max_pixels=__SIDE__ * __SIDE__)
'''

MLLAMA_IMAGE_PROCESSOR = '''

def image_processor():
    """Mllama's image processor sized to the tiny vision tower: a __SIDE__x__SIDE__ image is one tile (of __TILES__)."""
    return transformers.MllamaImageProcessor(size={"height": __SIDE__, "width": __SIDE__}, max_image_tiles=__TILES__)
'''

QWEN_VL_INPUTS = '''

def image_text_inputs(model):
    """What the processor gives for one image and a short prompt, built by hand: __TOKENS__ image tokens."""
    ids = torch.tensor([[__START__] + [__IMAGE__] * __TOKENS__ + [__END__, 5, 9, 14]])
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.randn(__PATCHES__, __PATCH_DIM__),
              "image_grid_thw": torch.tensor([[1, __GRID__, __GRID__]])}
    if "mm_token_type_ids" in inspect.signature(model.forward).parameters:  # the processor returns it then
        inputs["mm_token_type_ids"] = (ids == __IMAGE__).long()  # 1 at image tokens, as it does
    return inputs
'''

MLLAMA_INPUTS = '''

def image_text_inputs(model):
    """One __SIDE__x__SIDE__ image (one tile of __TILES__) and a short prompt, laid out as MllamaProcessor does, built by hand."""
    ids = torch.tensor([[__IMAGE__, 5, 9, 14, 20]])  # <|image|>, then the prompt
    tiles = torch.tensor([[[1] + [0] * (__TILES__ - 1)]])  # the tiles the image uses, of max_num_tiles
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.randn(1, 1, __TILES__, 3, __SIDE__, __SIDE__),
            "aspect_ratio_ids": torch.tensor([[1]]), "aspect_ratio_mask": tiles,
            "cross_attention_mask": tiles[:, None].expand(1, ids.shape[1], 1, __TILES__).clone()}  # every token sees the image
'''

IMAGE_INPUTS = '''

def image_text_inputs(model):
    """One image and a short prompt as the processor lays them out, built by hand: __TOKENS__ image tokens."""
    ids = torch.tensor([[5] + [__IMAGE__] * __TOKENS__ + [9, 14, 20]])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.randn(1, 3, __SIDE__, __SIDE__)__EXTRA__}
'''

LOAD = '''

def load(folder):
    """__LOAD_DOC__"""
    __LOAD_BODY__
    return __RETURN__
'''

BY_CONTENT = '''\
    held, saved = dict(model.named_parameters()), safetensors.torch.load_file(f"{folder}/model.safetensors")
    new, unused = [n for n in held if n in info["missing_keys"]], __UNUSED__
    for n in list(new):  # the load probe counts a tensor held under another name, by its values (a norm of ones), as found
        same = sorted((k for k, t in saved.items() if t.shape == held[n].shape and torch.equal(t.float(), held[n].float())),
                      key=lambda k: (k in unused, len(os.path.commonprefix([k.split(".")[::-1], n.split(".")[::-1]]))))
        new, unused = ([m for m in new if m != n], [k for k in unused if k != same[-1]]) if same else (new, unused)
'''
"""With a cell that lists weights newly initialised: they and the unused tensors as the load probe's weight account
counts them (loader/accounting.py), in the model's order."""

CHECK_LOAD = '''

def check_load(model, info, reference):
    """As compat-matrix's load probe: the whole model (LM head__VISION_DOC__), every saved tensor used, the logits."""
    name = type(model).__name__
    problems = [f"{name} has no LM head (get_output_embeddings() is None)"] if model.get_output_embeddings() is None else []
__VISION_CHECK__    new = sorted(info["missing_keys"]) + sorted(k if isinstance(k, str) else k[0] for k in info.get("mismatched_keys", []))
    if new:
        problems.append(f"weights newly initialised (found in the checkpoint neither by name nor by content): {parts(new)}")
    if unused := __UNUSED__:
        problems.append(f"checkpoint tensors left unused (no model tensor holds them): {parts(unused)}")
    if problems:
        sys.exit("got: CheckFailed: " + "; ".join(problems))
__TOKENS_CHECK__    try:
        logits = model(input_ids=INPUT_IDS).logits.detach().float()
    except Exception as exc:  # the weights are in, the model cannot run
        sys.exit(f"got: {type(exc).__name__}: {name} loaded, but a text forward raised {type(exc).__name__}: {exc}")
    absolute = float((logits - reference).abs().max())
    relative = absolute / float(reference.abs().max())
    if relative > (1e-3 if model.dtype == torch.float32 else 0.1):
        __MISMATCH__


def parts(keys):
    """The parts of the model the tensors belong to, as the load probe names them."""
    found = collections.defaultdict(list)
    for k in keys:
        found["LM head" if "lm_head" in k else__VISION_PART__ "embeddings" if "embed_tokens" in k or "wte" in k else "other weights"].append(k)
    return "; ".join(f"{p}: {len(ks)} tensor(s) ({', '.join(ks[:2])}" + (f", and {len(ks) - 2} more)" if len(ks) > 2 else ")")
                     for p, ks in found.items())
'''

SMART_CHAIN = '''

def load(folder):
    """compat-matrix's `smart` loader: the routes the cell tried (config.architectures, Auto classes); the first that loads."""
    failed = []
    for route in __ROUTES__:
        try:
            model, info = getattr(transformers, route.split(":")[1]).from_pretrained(folder, output_loading_info=True, **KWARGS)
            return __MODEL__, info
        except Exception as exc:  # smart notes the route's error (its first line, up to 300 characters) and goes on
            line = (str(exc).strip().splitlines() or [""])[0]
            failed.append(f"{route}: {type(exc).__name__}: {line if len(line) <= 300 else line[:300] + '...'}")
    sys.exit("got: LoadFailed: no route loaded a usable model:\\n  " + "\\n  ".join(failed))
'''

VISION = '''\
VISION = re.compile(r"__PATTERN__")  # the vision side's names
'''

VISION_CHECK = '''\
    if not any(VISION.search(n) for n, _ in model.named_parameters()):
        problems.append(f"{name} has no vision tower although the config has a vision_config")
'''

FORWARD_IMAGE = '''

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
'''

FORWARD_TEXT = '''

def check(model):
    """A text forward gives finite logits of the right shape."""
    output = model(input_ids=INPUT_IDS)
    logits = getattr(output, "logits", None)
    if logits is None:
        sys.exit(f"got: CheckFailed: text-only forward: {type(model).__name__} returns no logits ({type(output).__name__})")
    expected = (1, INPUT_IDS.shape[1], CONFIG.get("text_config", CONFIG)["vocab_size"])
    if tuple(logits.shape) != expected:
        sys.exit(f"got: CheckFailed: text-only forward: logits shape {tuple(logits.shape)}, expected {expected}")
    if not torch.isfinite(logits).all():
        sys.exit("got: CheckFailed: text-only forward: logits contain NaN or inf")
'''

GENERATE = '''

def check(model):
    """Greedy decoding twice on one model object; the second call must match a freshly loaded model's."""
    options = dict(__GEN_INPUTS__, max_new_tokens=__NEW_TOKENS__, do_sample=False,
                   pad_token_id=0, return_dict_in_generate=True, output_logits=True)
    first = model.eval().generate(**options)
    second = model.generate(**options)
    fresh = load(folder).eval().generate(**options)
    if not all(torch.isfinite(step).all() for step in first.logits + second.logits):
        sys.exit("got: CheckFailed: finite_logits: a call produced non-finite logits")
    if not torch.equal(second.sequences, fresh.sequences):
        new = options["input_ids"].shape[1]
        sys.exit(f"got: CheckFailed: repeatable: second call generated {second.sequences[:, new:].tolist()}, a fresh "
                 f"model {fresh.sequences[:, new:].tolist()} on the same inputs")
'''

LORA_TARGETS = '''

def adapt(model):
    """Every name in LoRA's target list must adapt some part of the model (peft leaves the others out without a word)."""
    base, targets = model, LORA["target_modules"]
    try:
        model = peft.get_peft_model(model, peft.LoraConfig(**LORA))
    except ValueError as exc:
        if "not found in the base model" not in str(exc):
            raise
        example = next((n for n, _ in base.named_modules() if n.endswith(("q_proj", "qkv"))), "")
        sys.exit(f"got: TargetsUnmatched: target_matches: LoRA target_modules {targets!r} match no module of "
                 f"{type(base).__name__} (peft: {str(exc).splitlines()[0]}); its linear layers end in {endings(base)}"
                 + (f"; a full path here: {example}" if example else ""))
    adapted = [n for n, m in model.named_modules() if hasattr(m, "lora_A")]
__BRANCHES__    return model


def endings(model):
    """The commonest last names of the model's linear layers."""
    names = collections.Counter(n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear))
    return ", ".join(name for name, _ in names.most_common(12))
'''

TARGET_PARAMETERS = '''\
    params = [f"{n.replace('.base_layer', '')}.{m.parameter_name}" for n, m in model.named_modules()
              if hasattr(m, "lora_A") and isinstance(getattr(m, "parameter_name", None), str)]
    idle = [t for t in LORA["target_parameters"] if not any(p.endswith("." + t) for p in params)]
    if idle:
        fused = sorted({n.rsplit(".", 1)[-1] for n, _ in base.named_parameters()
                        if ".experts." in n and n.rpartition(".experts.")[2].isidentifier()})  # all experts in one
        sys.exit(f"got: TargetsUnmatched: target_matches: LoRA target_parameters {idle!r} match no parameter of "
                 f"{type(base).__name__} (peft leaves them out without a word; {len(adapted)} modules train); "
                 + (f"its fused expert parameters: {', '.join(fused)}" if fused
                    else "it keeps one module per expert here: name the projections in target_modules"))
    adapted += params
'''

TARGET_NAMES = '''\
    idle = [t for t in targets if not any(a.endswith("." + t) for a in adapted)]
    if idle:
        sys.exit(f"got: TargetsUnmatched: target_matches: LoRA target_modules {idle!r} (of {targets!r}) match no module "
                 f"of {type(base).__name__}, so only the other names' {len(adapted)} modules train; its linear layers "
                 f"end in {endings(base)}")
'''

LORA_STEP = '''

def check(model):
    """One LoRA step as TRL's GRPOTrainer takes it (peft, gradient checkpointing): every adapter module learns."""
    inputs = __INPUTS__  # of the model itself, before peft wraps it
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
'''

GRPO_STEP = '''

def check(model):
    """A GRPO step as trainers take it: sample (eval, one left-padded batch), train on it (train mode, checkpointing)."""
__ROWS__    width = max(map(len, rows))
    ids = torch.tensor([[__PAD__] * (width - len(p)) + p for p in rows])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in rows])
__EXTRA__    torch.manual_seed(0)
    out = model.eval().generate(input_ids=ids, attention_mask=mask, max_new_tokens=__NEW_TOKENS__, do_sample=True, top_k=0,
                                pad_token_id=__PAD__, return_dict_in_generate=True, output_logits=True__GEN_EXTRA__)
    completion, logits = out.sequences[:, width:], torch.stack(out.logits, 1).float()
    sampled = logits.log_softmax(-1).gather(-1, completion[..., None])[..., 0]
    keep = torch.nn.functional.pad(torch.isin(completion, torch.tensor(__EOS__)).long().cumsum(1)[:, :-1], (1, 0)) == 0  # to EOS
__TRAIN_TYPES__    model.train().gradient_checkpointing_enable()
    model.config.use_cache = False  # as trainers set it under gradient checkpointing
    batch = dict(input_ids=torch.cat([ids, completion], 1), attention_mask=torch.cat([mask, keep.long()], 1)__TRAIN_EXTRA__)
    kept = {"logits_to_keep": completion.shape[1] + 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    try:  # micro-batches of __MICRO__ row(s), the LM head on the positions that predict the completion: as TRL's
        trained = torch.cat([model(**{k: v[i:i + __MICRO__] for k, v in batch.items()}, **kept).logits[:, -completion.shape[1] - 1:-1]
                             for i in range(0, len(rows), __MICRO__)])
    except Exception as exc:  # as the probe words it
        sys.exit(f"got: CheckFailed: train_forward: a train-mode forward on a micro-batch of __MICRO__ raised "
                 f"{type(exc).__name__}: {exc} (the same rows ran in eval mode while sampling)")
    logp = trained.float().log_softmax(-1).gather(-1, completion[..., None])[..., 0]
    (logp * keep).sum().backward()
    diff, scale = float((logp.detach() - sampled)[keep].abs().max()), float(logits.nan_to_num(0.0, 0.0, 0.0).abs().max())
    allowed = 1e-5 + 1e-5 * scale if model.dtype == torch.float32 else 1e-3 + 2**-6 * scale  # rounding only
    head = model.get_output_embeddings().weight.grad
    failed = [] if head is not None and head.any() else ["grad_head: no gradient reached the LM head"]
    if diff > allowed:
        failed.append(f"logprob_match: training log-probs of the sampled tokens differ from the generation logits by "
                      f"{diff:.3g} (tolerance {allowed:.3g} for {model.dtype}): positions, rope or the KV cache disagree")
    if failed:
        sys.exit("got: CheckFailed: " + "; ".join(failed))
'''

TEXT_ROWS = '''\
    rows = [p for p in ([5, 9, 14], [20, 27, 35, 41, 50]) for _ in range(__G__)]  # prompts of two lengths: left padding
'''

IMAGE_ROWS = '''\
    rows = [[5] + [__IMAGE__] * __TOKENS__ + [9, 14, 20] + p for p in ([], [27, 35]) for _ in range(__G__)]  # image prompts, 2 lengths
'''

IMAGE_EXTRA = '''\
    extra = {"pixel_values": torch.randn(len(rows), 3, __SIDE__, __SIDE__)__TOKEN_TYPES__}  # one __SIDE__x__SIDE__ image a row
'''

MLLAMA_ROWS = '''\
    rows = [[__IMAGE__, 5, 9, 14, 20] + p for p in ([], [27, 35]) for _ in range(__G__)]  # <|image|> first, prompts of 2 lengths
'''

MLLAMA_EXTRA = '''\
    tiles = torch.tensor([[__TILE_MASK__]] * len(rows))  # one __SIDE__x__SIDE__ image a row: one tile of __TILES__, which every token sees
    extra = {"pixel_values": torch.randn(len(rows), 1, __TILES__, 3, __SIDE__, __SIDE__), "aspect_ratio_ids": torch.ones(len(rows), 1).long(),
             "aspect_ratio_mask": tiles, "cross_attention_mask": tiles[:, None] * mask[..., None, None]}
'''

MLLAMA_TRAIN = '''\
    extra["cross_attention_mask"] = torch.cat([extra["cross_attention_mask"]] + [tiles[:, None]] * completion.shape[1], 1)
'''

ADAPTER_READ = '''

def save_adapter(model, folder):
    """As a fine-tune saves its LoRA (trainer.save_model): the profile's adapter, trained (lora_B not zero)."""
    model = peft.get_peft_model(model, peft.LoraConfig(**LORA))
    for name, p in model.named_parameters():
        if ".lora_B." in name:
            torch.nn.init.normal_(p, std=0.1)
    model.save_pretrained(f"{folder}/adapter")


def check(model):
    """The adapter read onto the same base as a fine-tune's user does: every saved tensor must be in the model."""
    from safetensors.torch import load_file

    try:
        model = peft.PeftModel.from_pretrained(model, f"{folder}/adapter")
    except Exception as exc:
        sys.exit(f"got: CheckFailed: adapter_load: PeftModel.from_pretrained raised {type(exc).__name__}: {exc}")
    held = [t for n, t in model.state_dict().items() if ".lora_" in n]
    saved = load_file(f"{folder}/adapter/adapter_model.safetensors")
    lost = [k for k, t in saved.items() if not any(h.shape == t.shape and torch.equal(h, t.to(h.dtype)) for h in held)]
    if lost:
        sys.exit(f"got: CheckFailed: adapter_keys: {len(lost)} of {len(saved)} adapter tensors transformers "
                 f"{written_by(folder)} saved are not in the loaded model: {', '.join(lost[:8])}"
                 + (f" and {len(lost) - 8} more" if len(lost) > 8 else ""))
'''

WRITTEN_BY = '''

def written_by(folder):
    with open(f"{folder}/config.json") as file:
        return json.load(file)["transformers_version"]
'''

MAIN_SAME = '''

if __name__ == "__main__":
    print("transformers", transformers.__version__, "torch", torch.__version__)
    folder = tempfile.mkdtemp()
    __BUILD__
    print("expected: __EXPECTED__")
    __CHECK__  # a check that fails exits 1 with "got: ..."; an exception, with its traceback
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
    reference = torch.load(f"{folder}/reference_logits.pt")
    __CHECK__
    print("ok: the behaviour is right")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "read"):
        sys.exit(f"usage: {sys.argv[0]} write|read FOLDER (see the top of this file)")
    print("transformers", transformers.__version__, "torch", torch.__version__)
    folder = sys.argv[2]
    if sys.argv[1] == "read":
        print("expected: __EXPECTED__")
    (write if sys.argv[1] == "write" else read)(folder)  # an exception exits 1 with its traceback
'''
