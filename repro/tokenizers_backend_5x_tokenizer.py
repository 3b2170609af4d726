# /// script
# requires-python = ">=3.10"
# dependencies = ["transformers==4.57.6", "torch==2.13.0"]
# ///
"""meta-llama/Llama-3.2-1B-Instruct, transformers 4.57.6 reading a checkpoint 5.24.0 saved:
LlamaForCausalLM.from_pretrained(folder)

compat-matrix cell llama-explicit_class-default-load@5.24.0, tiny random weights; passes in 5.24.0.
matrix.yaml expects fail: 5.x writes tokenizer_class TokenizersBackend into tokenizer_config.json, a class 4.x does
not have (ValueError): a 5.x fine-tune's tokenizer cannot …
Run the two steps, each with its release (exit 1: the failure reproduces; 0: right):
uv run --with transformers==5.24.0 tokenizers_backend_5x_tokenizer.py write ckpt
uv run tokenizers_backend_5x_tokenizer.py read ckpt
"""
import collections, json, sys
import torch, transformers

CONFIG = {"bos_token_id": 990, "eos_token_id": 994, "pad_token_id": 995, "initializer_range": 0.1, "vocab_size": 1000,
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_position_embeddings": 512}
INPUT_IDS = torch.tensor([[1, 5, 9, 14, 20, 27, 35]])  # a few ordinary tokens of the tiny vocabulary

def build(folder):
    """Save a tiny random LlamaForCausalLM (bfloat16, as the hub's); return its float32 logits."""
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.AutoConfig.for_model("llama", **CONFIG))
    for p in model.parameters():  # no all-zero matrix or shut scalar gate: trained checkpoints have none
        if p.is_floating_point() and not p.any() and (p.dim() >= 2 or p.numel() == 1):
            torch.nn.init.normal_(p, 0.0, 0.1) if p.dim() >= 2 else torch.nn.init.ones_(p)
    model.to(torch.bfloat16).eval().save_pretrained(folder)
    return model.float()(input_ids=INPUT_IDS).logits.detach()

PROMPT = "describe the picture"  # the load probe's reference prompt: as many words as the cell's had tokens

def tokenizer():
    """The family's tokenizer class, its special tokens and roles as the checkpoint has them, on a vocabulary of a few words."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    special = {"<|begin_of_text|>": 990, "<|end_of_text|>": 991, "<|start_header_id|>": 992, "<|end_header_id|>": 993,
        "<|eot_id|>": 994, "<|finetune_right_pad_id|>": 995}
    vocab = {w: i for i, w in enumerate(["<unk>", "describe", "the", "picture"])}
    vocab.update({f"<reserved_{i}>": i for i in range(len(vocab), 990)} | special)
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(list(special))  # in the tokenizer's own file, as the hub's tokenizer.json has them
    bos = "<|begin_of_text|>"  # the family's tokenizer prepends it
    backend.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                           special_tokens=[(bos, special[bos])])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>", model_input_names=["input_ids", "attention_mask"])

def load(folder):
    """The call under test, computing in float32 (the default dtype differs by release)."""
    config = transformers.AutoConfig.from_pretrained(folder)  # VLM-R1's model_cls: config.architectures[0]
    if not config.architectures:
        sys.exit(f"got: ArchitectureLost: {folder}: config.architectures is empty; there is no explicit class to load, though "
                 f"transformers {written_by(folder)} saved this checkpoint as LlamaForCausalLM: loaders that take "
                 "the class from config.architectures (VLM-R1's model_cls) cannot load it")
    model, info = getattr(transformers, config.architectures[0]).from_pretrained(folder, output_loading_info=True)
    return model.float(), info

def check_load(model, info, reference):
    """As compat-matrix's load probe: the whole model (LM head), every saved tensor used, the logits."""
    name = type(model).__name__
    problems = [f"{name} has no LM head (get_output_embeddings() is None)"] if model.get_output_embeddings() is None else []
    new = sorted(info["missing_keys"]) + sorted(k if isinstance(k, str) else k[0] for k in info.get("mismatched_keys", []))
    if new:
        problems.append(f"weights newly initialised (found in the checkpoint neither by name nor by content): {parts(new)}")
    if unused := sorted(info["unexpected_keys"]):
        problems.append(f"checkpoint tensors left unused (no model tensor holds them): {parts(unused)}")
    if problems:
        sys.exit("got: CheckFailed: " + "; ".join(problems))
    encoded = transformers.AutoTokenizer.from_pretrained(folder)(PROMPT)["input_ids"]
    with open(f"{folder}/reference_ids.json") as file:
        recorded = json.load(file)
    if encoded != recorded:  # the logits cannot be compared, and the difference is the finding
        sys.exit(f"got: CheckFailed: the checkpoint's tokenizer, read here, encodes the reference prompt as {encoded}; "
                 f"transformers {written_by(folder)} encoded it as {recorded}: the tokenizer reads back differently "
                 "(special tokens added or dropped)")
    try:
        logits = model(input_ids=INPUT_IDS).logits.detach().float()
    except Exception as exc:  # the weights are in, the model cannot run
        sys.exit(f"got: {type(exc).__name__}: {name} loaded, but a text forward raised {type(exc).__name__}: {exc}")
    absolute = float((logits - reference).abs().max())
    relative = absolute / float(reference.abs().max())
    if relative > (1e-3 if model.dtype == torch.float32 else 0.1):
        sys.exit(f"got: Drift: text-only logits differ from what transformers {written_by(folder)} computed on "
                 f"this checkpoint (max diff {absolute:.3g}, {relative:.3g} relative); it loads cleanly (every "
                 "tensor used, none re-initialised): the computation changed between the releases (drift, see "
                 "`compat-matrix drift`), not the reading of the checkpoint")

def parts(keys):
    """The parts of the model the tensors belong to, as the load probe names them."""
    found = collections.defaultdict(list)
    for k in keys:
        found["LM head" if "lm_head" in k else "embeddings" if "embed_tokens" in k or "wte" in k else "other weights"].append(k)
    return "; ".join(f"{p}: {len(ks)} tensor(s) ({', '.join(ks[:2])}" + (f", and {len(ks) - 2} more)" if len(ks) > 2 else ")")
                     for p, ks in found.items())

def written_by(folder):
    with open(f"{folder}/config.json") as file:
        return json.load(file)["transformers_version"]

def write(folder):
    """Step 1, run by the release that saves: the checkpoint and what it computes."""
    torch.save(build(folder), f"{folder}/reference_logits.pt")
    tokenizer().save_pretrained(folder)
    with open(f"{folder}/reference_ids.json", "w") as file:
        json.dump(tokenizer()(PROMPT)["input_ids"], file)
    print(f"transformers {transformers.__version__} saved the checkpoint in {folder}")

def read(folder):
    """Step 2, run by the release that loads: what a fine-tune's user does."""
    transformers.AutoConfig.from_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(folder)
    reference = torch.load(f"{folder}/reference_logits.pt")
    check_load(*load(folder), reference)
    print("ok: the behaviour is right")

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "read"):
        sys.exit(f"usage: {sys.argv[0]} write|read FOLDER (see the top of this file)")
    print("transformers", transformers.__version__, "torch", torch.__version__)
    folder = sys.argv[2]
    if sys.argv[1] == "read":
        print("expected: LlamaForCausalLM.from_pretrained(folder) loads the checkpoint cleanly, with its LM head and the saved weights' logits")
    (write if sys.argv[1] == "write" else read)(folder)  # an exception exits 1 with its traceback
