"""One self-contained Python script for one cell of the matrix: what an upstream issue needs.

The script builds the cell's tiny model from its recipe (inline, seeded), does the calls of the
cell's probe that matter with transformers, peft and torch only, prints what it expected and what
it got (`got: <ErrorType>: <message>`, the line `verify.py` reads) and exits 1 on the failure,
0 where the behaviour is right. A cross-release cell's script has two steps, `write` and `read`,
run by the two releases.
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
from dataclasses import dataclass
from typing import Any, Callable

from compat_matrix.repro import blocks
from compat_matrix.repro.harness_data import special_ids, tokenizer_class, tokenizer_setup, tokenizer_style, vision_pattern
from compat_matrix.spec.cells import Cell
from loader.kwargs import LOADING_KEYWORDS
from compat_matrix.spec.records import expected_of
from compat_matrix.spec.schema import LoraSpec, Matrix, ModelEntry

INIT_STD = 0.1
"""The tiny recipes' `initializer_range` where they set none (compat_tests/tiny/checkpoint.py's
INIT_STD, which imports transformers; tests/test_repro.py keeps the two equal)."""

ROUTES: dict[str, str] = {
    "auto_causal_lm": "AutoModelForCausalLM",
    "auto_model": "AutoModel",
    "auto_image_text_to_text": "AutoModelForImageTextToText",
    "auto_vision2seq": "AutoModelForVision2Seq",
}
"""Strategies that are one transformers Auto class (`loader.strategies.auto`, which imports transformers)."""

CLASS_ROUTES = ("explicit_class", "smart")
"""Strategies whose script loads the class config.architectures names: `smart` (compat-matrix's own
loader) takes that route first for every tiny model."""

QWEN_VL_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe")
"""Image-text families whose inputs a script builds by hand (Qwen2VLImageProcessor's layout)."""

QWEN_VL_TOKENS = {"<|image_pad|>": "image_token_id", "<|video_pad|>": "video_token_id",
                  "<|vision_start|>": "vision_start_token_id", "<|vision_end|>": "vision_end_token_id"}
"""Qwen-VL's special tokens and the config keys holding their ids."""


class NoTemplate(ValueError):
    """No script can be written for this cell (the message says why and what would be needed)."""


@dataclass(frozen=True)
class Target:
    """The cell a script is for, in its release, with the release that should pass."""

    matrix: Matrix
    cell: Cell
    release: str
    good: str | None = None
    name: str = "repro.py"
    """The script's file name, as its run instructions say it."""
    prompt_tokens: int | None = None
    """How many tokens the writer's tokenizer made of the load probe's reference prompt, where the cell says so (its
    message quotes both encodings): the script's prompt has as many, so the masked messages compare."""
    by_content: bool = False
    """The cell lists weights newly initialised: the script counts them as the load probe does, a tensor held under
    another name by its values counting as found (else by name, as transformers' loading info says)."""
    smart_routes: tuple[str, ...] = ()
    """The routes of `smart`'s chain where the cell's load failed on every one (LoadFailed's lines, e.g.
    `architectures:GptOssForCausalLM`): the script tries them in turn too."""

    @property
    def entry(self) -> ModelEntry:
        return self.matrix.model(self.cell.model)

    @property
    def cross_release(self) -> bool:
        """The checkpoint comes from another release (a fine-tune, or the hub's as published)."""
        return self.cell.saved_by is not None and self.cell.saved_by != self.release


@dataclass(frozen=True)
class Script:
    """A written script and how to run it."""

    text: str
    steps: tuple[tuple[str, ...], ...]
    """Argument lists, each run by its release: `((),)` for one run; `(("write",), ("read",))`."""
    needs: tuple[str, ...]
    """Packages beyond transformers and torch (`peft`; `pillow`, which image processors need), as pip names them."""

    @property
    def lines(self) -> int:
        return len(self.text.splitlines())


def _fill(text: str, **values: str) -> str:
    for name, value in values.items():
        text = text.replace(f"__{name}__", value)
    left = re.findall(r"__[A-Z_]+__", text)
    if left:
        raise AssertionError(f"unfilled markers {left}")
    return text


def resolved_config(entry: ModelEntry) -> dict[str, Any]:
    """The recipe's config as a build uses it: `initializer_range` and the tokenizer's bos/eos/pad ids where
    the recipe sets none (compat_tests/tiny/checkpoint.py's `_config_kwargs`)."""
    assert entry.recipe is not None
    special = special_ids(entry.recipe.model_type)
    config = {**special, "initializer_range": INIT_STD, **entry.recipe.config}
    if isinstance(config.get("text_config"), dict):
        config["text_config"] = {**special, "initializer_range": INIT_STD, **config["text_config"]}
    return config


def config_source(entry: ModelEntry) -> str:
    """`CONFIG = {...}` as resolved_config gives it; where the recipe has a text_config, what the build adds to
    both levels is written once (`BUILD`), ahead of the recipe's own keys (which win, as in the build)."""
    assert entry.recipe is not None
    config = entry.recipe.config
    if not isinstance(config.get("text_config"), dict):
        return "CONFIG = " + _literal(resolved_config(entry))
    added = {**special_ids(entry.recipe.model_type), "initializer_range": INIT_STD}
    marked = _literal({"__BUILD__": 0, **config, "text_config": {"__BUILD__": 0, **config["text_config"]}})
    return (f"BUILD = {_literal(added)}  # the tiny build adds its tokenizer's ids, its init std\n"
            "CONFIG = " + marked.replace('"__BUILD__": 0', "**BUILD"))


def _literal(value: Any) -> str:
    """A Python literal of JSON-like data, wrapped before 116 characters."""
    text = json.dumps(value).replace("true", "True").replace("false", "False").replace("null", "None")
    lines = [""]
    for part in re.split(r"(?<=,) (?=\")", text):
        if lines[-1].strip() and len(lines[-1]) + len(part) > 114:
            lines.append("    ")
        lines[-1] += part if not lines[-1].strip() else " " + part
    return "\n".join(lines)


def write_script(target: Target) -> Script:
    """The script for `target`, or NoTemplate saying why none can be written."""
    entry, cell = target.entry, target.cell
    if entry.recipe is not None and entry.recipe.remote_code is not None:
        raise NoTemplate(f"{entry.key} runs the checkpoint's own modeling code (auto_map, trust_remote_code: the files of "
                         f"compat_tests/remote_code/{entry.recipe.remote_code.sources}, hundreds of lines): a script of its "
                         "own would have to carry them, far over what an issue can paste; the failure is that code's "
                         "against this release, for the hub repository that ships it")
    if entry.source != "tiny" or entry.recipe is None:
        raise NoTemplate(f"{entry.key} is not a tiny model built from a transformers class (source {entry.source}): "
                         "a script would need the real checkpoint")
    if cell.strategy not in ROUTES and cell.strategy not in CLASS_ROUTES:
        raise NoTemplate(f"strategy {cell.strategy!r} is the user's own loader: a script cannot call it")
    adapter = entry.load_kwargs[cell.profile].adapter
    image_text = entry.modality == "image-text"
    qwen_vl = entry.recipe.model_type in QWEN_VL_FAMILIES
    family_inputs = _family_inputs(entry) if image_text and not qwen_vl and cell.probe in ("grpo_step", "generate") else None
    if image_text and not qwen_vl and family_inputs is None and cell.probe in ("forward", "grpo_step", "generate"):
        raise NoTemplate(f"no script template builds {entry.recipe.model_type} image inputs for {cell.probe} (Qwen-VL's "
                         f"layout is built by hand, and {', '.join(IMAGE_TOKEN_COUNT)} and mllama's for generation and a "
                         "training step; another family's, and a forward's comparison of the processor's outputs, need "
                         "its processor)")
    inputs = family_inputs or (blocks.QWEN_VL_INPUTS if image_text else "")
    probe = cell.probe
    if probe == "trl_grpo":
        raise NoTemplate("trl_grpo runs TRL's GRPOTrainer, at the TRL release the environment chose for this transformers "
                         "(its config options differ between TRL releases), on a dataset and the family's tokenizer: far "
                         "over what an issue can paste; the same cell's grpo_step script takes the step's model calls "
                         "(sampling a left-padded batch, a train-mode forward) with transformers alone")
    if probe == "load":
        parts = _target_checks(adapter.lora) if adapter is not None else ""
    elif probe == "forward":
        parts = inputs + blocks.FORWARD_IMAGE if image_text else blocks.FORWARD_TEXT
    elif probe == "generate" and adapter is None:
        parts = inputs + _fill(blocks.GENERATE, NEW_TOKENS=str(target.matrix.settings.generate_max_new_tokens),
                               GEN_INPUTS="**image_text_inputs(model)" if image_text else
                               "input_ids=INPUT_IDS, attention_mask=torch.ones_like(INPUT_IDS)")
    elif (probe == "grpo_step" and adapter is None and not target.cross_release
          and (not image_text or _image_layout(entry) is not None or entry.recipe.model_type == "mllama")):
        parts = _grpo_step(target, image_text)
    elif probe == "grpo_step" and adapter is not None and not target.cross_release:
        parts = inputs + _fill(blocks.LORA_STEP, INPUTS="image_text_inputs(model)" if image_text
                                      else '{"input_ids": INPUT_IDS}')
    elif probe == "adapter_roundtrip" and adapter is not None and target.cross_release:
        parts = blocks.ADAPTER_READ
    else:
        kind = " ".join([probe, *(["with a LoRA profile"] if adapter else []),
                         *(["on another release's checkpoint"] if target.cross_release else [])])
        raise NoTemplate(f"no script template for {kind} (templates: load, forward, generate without an adapter, grpo_step of a "
                         f"text model or of {', '.join(IMAGE_TOKEN_COUNT)}, grpo_step "
                         "with a LoRA adapter, adapter_roundtrip across releases); a cell whose load fails is reproduced "
                         "by its load cell")
    if target.cross_release:
        processor = (blocks.QWEN_VL_IMAGE_PROCESSOR if image_text and qwen_vl else _mllama_image_processor(entry)
                     if entry.recipe.model_type == "mllama" else "")
        parts = blocks.TOKENIZER + processor + parts
    needs = tuple(package for package, used in (("peft", "peft."), ("pillow", "image_processor()")) if used in parts)
    return Script(_text(target, parts, needs), (("write",), ("read",)) if target.cross_release else ((),), needs)


IMAGE_TOKEN_COUNT: dict[str, Callable[[dict[str, Any], int, int], int]] = {
    "llava": lambda config, side, patch: (side // patch) ** 2,  # one per patch, CLS dropped (`default`)
    "paligemma": lambda config, side, patch: (side // patch) ** 2,
    "gemma3": lambda config, side, patch: int(config["mm_tokens_per_image"]),
    "internvl": lambda config, side, patch: int((side // patch) ** 2 * float(config["downsample_ratio"]) ** 2),
}
"""Image-text families whose image input for a LoRA step is one square image at the vision tower's size and
this many image tokens (compat_tests/tiny/processors.py sizes their processors so)."""

TOKEN_TYPES = {"gemma3": "(ids == __IMAGE__).long()", "paligemma": "torch.zeros_like(ids)"}
COMPLETION_TOKEN_TYPE = {"paligemma": 1}
"""`token_type_ids` over a completion, as the grpo_step probe extends them (compat_tests/probes/grpo_batch.py: PaliGemma's
causal suffix; the others repeat a text token's 0)."""
"""`token_type_ids` as these families' processors return them (image tokens; PaliGemma's prefix)."""


def _mllama_image_processor(entry: ModelEntry) -> str:
    """Mllama's checkpoint carries MllamaProcessor, which its readers load whole (AutoProcessor): the tokenizer class
    it names (5.x's TokenizersBackend) is not looked up, as AutoTokenizer looks it up in 4.x."""
    assert entry.recipe is not None
    vision = entry.recipe.config.get("vision_config") or {}
    return _fill(blocks.MLLAMA_IMAGE_PROCESSOR, SIDE=str(vision["image_size"]), TILES=str(vision["max_num_tiles"]))


def _image_layout(entry: ModelEntry) -> tuple[int, int, int] | None:
    """(image token id, image tokens, image side) of one square image for `entry`'s family; None where its sizes
    are not in the recipe."""
    assert entry.recipe is not None
    config, family = entry.recipe.config, entry.recipe.model_type
    vision = config.get("vision_config") or {}
    image = config.get("image_token_index", config.get("image_token_id"))
    if family not in IMAGE_TOKEN_COUNT or image is None or "image_size" not in vision or "patch_size" not in vision:
        return None
    side, patch = (v if isinstance(v, int) else v[0] for v in (vision["image_size"], vision["patch_size"]))
    try:
        return int(image), IMAGE_TOKEN_COUNT[family](config, side, patch), side
    except KeyError:
        return None


def _family_inputs(entry: ModelEntry) -> str | None:
    """IMAGE_INPUTS (MLLAMA_INPUTS) filled for `entry`'s family, or None where its sizes are not in the recipe."""
    assert entry.recipe is not None
    if entry.recipe.model_type == "mllama":
        vision = entry.recipe.config.get("vision_config") or {}
        image = entry.recipe.config.get("image_token_index")
        if image is None or not all(k in vision for k in ("image_size", "max_num_tiles")):
            return None
        return _fill(blocks.MLLAMA_INPUTS, IMAGE=str(image), SIDE=str(vision["image_size"]), TILES=str(vision["max_num_tiles"]))
    layout = _image_layout(entry)
    if layout is None:
        return None
    image, tokens, side = layout
    family = entry.recipe.model_type
    extra = (f',\n            "token_type_ids": {TOKEN_TYPES[family]}'.replace("__IMAGE__", str(image))
             if family in TOKEN_TYPES else "")
    return _fill(blocks.IMAGE_INPUTS, IMAGE=str(image), TOKENS=str(tokens), SIDE=str(side), EXTRA=extra)


def _grpo_step(target: Target, image_text: bool) -> str:
    """GRPO_STEP with the matrix's GRPO settings and the build's pad and EOS ids (the probe pads with the
    tokenizer's pad id, else its EOS; ends completions at the EOS ids of the tokenizer and generation config)."""
    config = resolved_config(target.entry)
    text = config.get("text_config", config)
    eos = text.get("eos_token_id", config.get("eos_token_id", 0))
    eos_ids = sorted(set(eos if isinstance(eos, list) else [eos]))
    pad = text.get("pad_token_id", config.get("pad_token_id", eos_ids[0]))
    grpo = target.matrix.settings.grpo
    extra = {"ROWS": blocks.TEXT_ROWS, "EXTRA": "", "GEN_EXTRA": "", "TRAIN_EXTRA": "", "TRAIN_TYPES": ""}
    layout = _image_layout(target.entry) if image_text else None
    assert target.entry.recipe is not None
    if image_text and target.entry.recipe.model_type == "mllama":
        vision, token = target.entry.recipe.config["vision_config"], str(target.entry.recipe.config["image_token_index"])
        tiles = int(vision["max_num_tiles"])
        sizes = {"SIDE": str(vision["image_size"]), "TILES": str(tiles), "TILE_MASK": str([1] + [0] * (tiles - 1))}
        extra = {"ROWS": _fill(blocks.MLLAMA_ROWS, IMAGE=token, G=str(grpo.group_size)),
                 "EXTRA": _fill(blocks.MLLAMA_EXTRA, **sizes), "GEN_EXTRA": f", suppress_tokens=[{token}], **extra",
                 "TRAIN_EXTRA": ", **extra", "TRAIN_TYPES": blocks.MLLAMA_TRAIN}
    elif layout is not None:
        assert target.entry.recipe is not None
        family, (image, tokens, side) = target.entry.recipe.model_type, layout
        types = f', "token_type_ids": {TOKEN_TYPES[family]}'.replace("__IMAGE__", str(image)) if family in TOKEN_TYPES else ""
        tail = COMPLETION_TOKEN_TYPE.get(family, 0)
        extra = {"ROWS": _fill(blocks.IMAGE_ROWS, IMAGE=str(image), TOKENS=str(tokens), G=str(grpo.group_size)),
                 "EXTRA": _fill(blocks.IMAGE_EXTRA, TOKEN_TYPES=types, SIDE=str(side)),
                 "GEN_EXTRA": f", suppress_tokens=[{image}], **extra",
                 "TRAIN_EXTRA": ", **extra",
                 "TRAIN_TYPES": "" if not types else (
                     f'    extra["token_type_ids"] = torch.cat([extra["token_type_ids"], torch.full_like(completion, {tail})], 1)'
                     + ("  # a causal suffix\n" if tail else "\n"))}
    return _fill(blocks.GRPO_STEP.replace("__ROWS__", extra.pop("ROWS")), G=str(grpo.group_size),
                 NEW_TOKENS=str(grpo.max_new_tokens), PAD=str(pad), EOS=repr(eos_ids), MICRO=str(grpo.micro_batch_sizes[0]),
                 **extra)


def _target_checks(lora: LoraSpec) -> str:
    """`adapt()`: the profile's adapter applied, with the target_matches checks its target list can fail."""
    branches = (blocks.TARGET_PARAMETERS if lora.target_parameters else "") + (
        "" if isinstance(lora.target_modules, str) else blocks.TARGET_NAMES)  # a regex fails only by matching nothing
    return _fill(blocks.LORA_TARGETS, BRANCHES=branches)


def _lora(lora: LoraSpec) -> str:
    """The profile's LoRA as the keyword arguments of peft's LoraConfig (TRL's peft_config), one line."""
    extra = f", target_parameters={list(lora.target_parameters)!r}" if lora.target_parameters else ""
    return (f'LORA = dict(r={lora.r}, lora_alpha={lora.alpha}, lora_dropout=0.0, task_type="CAUSAL_LM",  # as TRL\'s '
            f"peft_config\n            target_modules={_targets(lora.target_modules)}{extra})\n")


def _targets(targets: str | tuple[str, ...]) -> str:
    """peft's target_modules as a literal: a regex as a raw string, names as a list."""
    if isinstance(targets, str):
        return f"r'{targets}'" if "\\" in targets and "'" not in targets else repr(targets)
    return repr(list(targets))


def _load_block(target: Target, info: bool) -> str:
    """`load()`: the strategy's call (`smart`'s whole chain where the cell's load failed on every route); with
    `info`, the loading info the load probe checks. Float32 unless the profile names a dtype."""
    assert target.entry.recipe is not None
    kwargs = target.entry.load_kwargs[target.cell.profile].kwargs
    dtype = "dtype" in kwargs or "torch_dtype" in kwargs
    if target.cell.strategy == "smart" and target.smart_routes:
        chain = _fill(blocks.SMART_CHAIN, ROUTES=repr(list(target.smart_routes)), MODEL="model" if dtype else "model.float()")
        if dtype:  # the pair from_pretrained returns is what load() returns
            chain = chain.replace("            model, info = getattr", "            return getattr").replace(
                "            return model, info\n", "")
        chain = chain if _loading_kwargs(target) else chain.replace(", **KWARGS", "")
        settings = _config_settings(target)
        if settings:  # as smart: the config keywords on the config, top level and text config (loader/kwargs.py)
            chain = chain.replace("    failed = []\n", "    failed, config = [], transformers.AutoConfig.from_pretrained(folder)\n"
                                  f"    for part in (config, config.get_text_config()): part.update({settings!r})  # as smart\n", 1)
            chain = chain.replace("from_pretrained(folder, ", "from_pretrained(folder, config=config, ")
        return chain
    body, model = _load_statement(target, info)
    doc = "The call under test, in the dtype it names." if dtype else \
        "The call under test, computing in float32 (the default dtype differs by release)."
    return _fill(blocks.LOAD, LOAD_DOC=doc, LOAD_BODY=body, RETURN=f"{model}, info" if info else model)


def _load_statement(target: Target, info: bool) -> tuple[str, str]:
    """The strategy's call as statements binding `model` (and `info`), and the model as the checks take it."""
    assert target.entry.recipe is not None
    kwargs = target.entry.load_kwargs[target.cell.profile].kwargs
    body = _load_call(target.cell.strategy, target.cross_release, target.entry.recipe.architecture,
                      SMART_AUTO_CLASS[target.entry.modality == "image-text"])
    body = body if _loading_kwargs(target) else body.replace(", **KWARGS", "")
    settings = _config_settings(target)
    if settings:  # smart sets a config keyword on the config, top level and text config (loader/kwargs.py)
        body = re.sub(r"^config = transformers\.AutoConfig\.from_pretrained\(folder\).*\n    ", "", body)  # read once, below
        body = (f"config = transformers.AutoConfig.from_pretrained(folder)  # smart sets {', '.join(settings)} on the config\n"
                f"    for part in (config, config.get_text_config()): part.update({settings!r})  # top level and text config\n    "
                + body.replace("from_pretrained(folder, ", "from_pretrained(folder, config=config, "))
    if not info:
        body = body.replace("model, info =", "model =").replace(", output_loading_info=True", "")
    return body, "model" if "dtype" in kwargs or "torch_dtype" in kwargs else "model.float()"


def _config_settings(target: Target) -> dict[str, Any]:
    """The profile's keywords that `smart` sets on the config instead of passing them (loader/kwargs.py: every keyword
    from_pretrained does not read itself, for the tiny configs: use_cache, output_router_logits)."""
    if target.cell.strategy != "smart":
        return {}
    return {k: v for k, v in target.entry.load_kwargs[target.cell.profile].kwargs.items() if k not in LOADING_KEYWORDS}


def _loading_kwargs(target: Target) -> dict[str, Any]:
    """KWARGS as the script passes them to from_pretrained."""
    settings = _config_settings(target)
    return {k: v for k, v in target.entry.load_kwargs[target.cell.profile].kwargs.items() if k not in settings}


def _inline_load(target: Target) -> bool:
    """The call goes into the main block, where it is used once (no `load()` printed): a same-release cell
    whose script loads once (generate loads twice; `smart`'s chain is a function of its own)."""
    return not target.cross_release and target.cell.probe != "generate" and not (
        target.cell.strategy == "smart" and target.smart_routes)


SMART_AUTO_CLASS = {True: "AutoModelForImageTextToText", False: "AutoModelForCausalLM"}
"""The Auto class `smart` goes on to where config.architectures names no class (loader/strategies/smart.py: its first Auto
route for a config with a vision_config, else its only one), by whether the model is image-text."""


def _load_call(strategy: str, cross_release: bool, architecture: str, auto_class: str) -> str:
    if strategy in ROUTES:
        return f"model, info = transformers.{ROUTES[strategy]}.from_pretrained(folder, output_loading_info=True, **KWARGS)"
    if not cross_release:  # the class this script saved
        return f"model, info = transformers.{architecture}.from_pretrained(folder, output_loading_info=True, **KWARGS)"
    if strategy == "smart":
        return ("config = transformers.AutoConfig.from_pretrained(folder)  # smart: the class config.architectures names, "
                "else an Auto class\n"
                f"    route = getattr(transformers, config.architectures[0]) if config.architectures else transformers.{auto_class}\n"
                "    model, info = route.from_pretrained(folder, output_loading_info=True, **KWARGS)")
    return ("config = transformers.AutoConfig.from_pretrained(folder)  # VLM-R1's model_cls: config.architectures[0]\n"
            "    if not config.architectures:\n"
            "        sys.exit(f\"got: ArchitectureLost: {folder}: config.architectures is empty; there is no explicit class to load, though \"\n"
            f"                 f\"transformers {{written_by(folder)}} saved this checkpoint as {architecture}: loaders that take \"\n"
            "                 \"the class from config.architectures (VLM-R1's model_cls) cannot load it\")\n"
            "    model, info = getattr(transformers, config.architectures[0]).from_pretrained(folder, output_loading_info=True, **KWARGS)")


def _call(target: Target, kwargs: dict[str, Any]) -> str:
    assert target.entry.recipe is not None
    route = ROUTES.get(target.cell.strategy, target.entry.recipe.architecture)
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return f"{route}.from_pretrained(folder{', ' + args if args else ''})"


def _image_values(entry: ModelEntry) -> dict[str, str]:
    """Sizes of the tiny Qwen-VL vision tower: a 2x2 grid of merged patches, 4 image tokens."""
    assert entry.recipe is not None
    config = entry.recipe.config
    vision = config.get("vision_config", {})
    patch, merge = int(vision.get("patch_size", 14)), int(vision.get("spatial_merge_size", 2))
    temporal, channels = int(vision.get("temporal_patch_size", 2)), int(vision.get("in_channels", 3))
    grid = 2 * merge
    ids = {token: int(config.get(key, 0)) for token, key in QWEN_VL_TOKENS.items()}
    return {"SIDE": str(patch * grid), "PATCH": str(patch), "MERGE": str(merge), "TEMPORAL": str(temporal),
            "TOKENS": str(grid * grid // (merge * merge)), "PATCHES": str(grid * grid), "GRID": str(grid),
            "PATCH_DIM": str(channels * temporal * patch * patch), "IMAGE": str(ids["<|image_pad|>"]),
            "START": str(ids["<|vision_start|>"]), "END": str(ids["<|vision_end|>"]),
            "SPECIAL_IDS": repr(ids), "SPECIAL_BASE": str(min(ids.values()))}


EXPECTED = {"load": "{call} loads the checkpoint cleanly, with its LM head and the saved weights' logits",
            "adapt": "every name in the LoRA target list adapts a part of the model",
            "forward": "the forward gives the same logits with the inputs training code passes by hand",
            "generate": "greedy generation runs, and a second call matches a freshly loaded model's",
            "grpo_step": "every LoRA module whose output the loss uses gets a gradient",
            "grpo_step_full": "a GRPO step samples and trains; training log-probs match the sampling logits",
            "adapter_roundtrip": "every adapter tensor the writing release saved is in the model read here"}
"""What each script prints as expected (the right behaviour)."""


def _check(target: Target, parts: str) -> str:
    """The statements under test in the script's main block (`folder` and `reference` are set there)."""
    if target.cell.probe != "load":
        return "check(load(folder))"
    return "adapt(load(folder))" if "def adapt(" in parts else "check_load(*load(folder), reference)"


BYTE_LEVEL_STYLES = ("qwen", "gpt2", "gemma")
"""Tokenizer pipelines whose 5.x classes (Qwen2Tokenizer, GPT2Tokenizer, GemmaTokenizer) rebuild their BPE from the
saved vocabulary and merges: a word-level vocabulary reads back as a tokenizer that encodes the prompt otherwise
(seen in 5.24.0 reading its own: [] for Qwen, [995, 996] for Gemma's [995, 1, 2, 3]), so a script's ids compare
only for the other families and PreTrainedTokenizerFast (the build's real BPE reads back)."""

PROMPT_WORDS = ("describe", "the", "picture", "please", "tell", "me", "what", "you", "see", "here", "now", "in", "it")
"""The script tokenizer's vocabulary: the reference prompt is the first N of them."""


def _prompt_words(target: Target, adds_bos: bool) -> tuple[str, ...]:
    """As many words as the writer's tokenizer made tokens of the cell's prompt (less its bos); three without a cell."""
    count = target.prompt_tokens - adds_bos if target.prompt_tokens else 3
    return PROMPT_WORDS[:max(1, min(len(PROMPT_WORDS), count))]


def _compares_ids(target: Target) -> bool:
    """A cross-release load script compares the reference prompt's ids (the load probe's check)."""
    assert target.entry.recipe is not None
    family = target.entry.recipe.model_type
    return target.cross_release and (tokenizer_style(family) not in BYTE_LEVEL_STYLES
                                     or "PreTrainedTokenizerFast" in tokenizer_class(family))  # kept as saved


def _check_load(target: Target) -> str:
    """The load probe's checks; the vision tower's only where the route is not declared text-only."""
    entry, cell = target.entry, target.cell
    text_route = target.matrix.declared_modality(entry, cell.strategy, cell.profile) == "text"
    vision = entry.modality == "image-text" and not text_route
    mismatch = ('sys.exit(f"got: Drift: text-only logits differ from what transformers {written_by(folder)} computed on "\n'
                '                 f"this checkpoint (max diff {absolute:.3g}, {relative:.3g} relative); it loads cleanly (every "\n'
                '                 "tensor used, none re-initialised): the computation changed between the releases (drift, see "\n'
                '                 "`compat-matrix drift`), not the reading of the checkpoint")' if target.cross_release else
                'sys.exit(f"got: CheckFailed: text-only logits differ from the reference recorded at build time (max diff "\n'
                '                 f"{absolute:.3g}, {relative:.3g} relative), over the {model.dtype} tolerance: weights loaded wrong")')
    unused = ('sorted(key for key in info["unexpected_keys"] if not VISION.search(key))' if text_route
              else 'sorted(info["unexpected_keys"])')
    assert entry.recipe is not None
    check = blocks.CHECK_LOAD
    if target.by_content:
        check = check.replace(check[check.index("    new = sorted("):check.index("    if new:")], blocks.BY_CONTENT).replace(
            "if unused := __UNUSED__:", "if unused:")
    return _fill(check, VISION_DOC=", a vision tower" if vision else "", MISMATCH=mismatch,
                 TOKENS_CHECK=(blocks.TOKENS_CHECK if entry.recipe.model_type != "mllama" else blocks.TOKENS_CHECK.replace(
                     "AutoTokenizer.from_pretrained(folder)", "AutoProcessor.from_pretrained(folder).tokenizer"))
                 if _compares_ids(target) else "",
                 VISION_PART='\n              "vision tower" if VISION.search(k) else' if entry.modality == "image-text" else "",
                 VISION_CHECK=blocks.VISION_CHECK if vision else "", UNUSED=unused)


def _imports(text: str) -> str:
    """The standard-library modules the script's body uses, on one line."""
    used = [name for name in ("collections", "inspect", "json", "os", "re", "sys", "tempfile")
            if re.search(rf"(?<![\w.]){name}\.", text)]
    return ", ".join(used)


def _text(target: Target, parts: str, needs: tuple[str, ...]) -> str:
    entry, cell = target.entry, target.cell
    assert entry.recipe is not None
    kwargs = entry.load_kwargs[cell.profile].kwargs
    expected = expected_of(target.matrix, cell, target.release)
    call = _call(target, kwargs)
    dependencies = ", ".join(f'"{p}"' for p in (f"transformers=={target.release}", f"torch=={target.matrix.torch}", *needs))
    specials, tokenizer_kwargs, bos = tokenizer_setup(entry.recipe.model_type)
    image = _image_values(entry) if entry.recipe.model_type in QWEN_VL_FAMILIES else {}
    specials = {**specials, **{token: int(i) for token, i in (ast.literal_eval(image["SPECIAL_IDS"]) if image else {}).items()}}
    arguments = ", ".join(f"{k}={json.dumps(v)}" for k, v in {"tokenizer_object": "backend", "unk_token": "<unk>",
                                                                **tokenizer_kwargs}.items()).replace('"backend"', "backend")
    values = {**image, "SPECIAL_IDS": _literal(specials).replace("\n    ", "\n        "), "SPECIAL_BASE": str(min(specials.values(), default=4)),
              "TOKENIZER_CLASS": tokenizer_class(entry.recipe.model_type),
              "TOKENIZER_KWARGS": "\n        ".join(textwrap.wrap(arguments, 108, break_long_words=False, break_on_hyphens=False))
              .replace("false", "False").replace("true", "True"),
              "BOS": _fill(blocks.BOS, BOS_TOKEN=bos) if bos else "",
              "PROMPT": " ".join(_prompt_words(target, bos is not None)), "WORDS": json.dumps(["<unk>", *_prompt_words(target, bos is not None)])}
    check = _check(target, parts)
    info = "check_load(" in check
    adapter = entry.load_kwargs[cell.profile].adapter
    loading = _loading_kwargs(target)
    body = ((f"KWARGS = {loading!r}\n" if loading else "") + (_lora(adapter.lora) if adapter is not None and needs else "")
            + _fill(blocks.MODEL if target.cross_release or info or "INPUT_IDS" in parts else blocks.MODEL_ONLY,
                    CONFIG=config_source(entry), ARCHITECTURE=entry.recipe.architecture, INIT_STD=str(INIT_STD),
                    MODEL_TYPE=entry.recipe.model_type)
            + _fill(parts, **{k: v for k, v in values.items() if f"__{k}__" in parts})
            + ("" if _inline_load(target) else _load_block(target, info))
            + (_check_load(target) if info else ""))
    what = EXPECTED["adapt" if "adapt(" in check else "grpo_step_full" if "logprob_match" in parts
                    else cell.probe].format(call=call)
    if target.cross_release:
        image_text = entry.modality == "image-text"
        save, read = "tokenizer().save_pretrained(folder)", "transformers.AutoTokenizer.from_pretrained(folder)"
        if image_text and entry.recipe.model_type in QWEN_VL_FAMILIES:
            save += "\n    image_processor().save_pretrained(folder)"
            read += "\n    transformers.AutoImageProcessor.from_pretrained(folder)"
        elif entry.recipe.model_type == "mllama":  # saved and read whole, as its build and its readers do
            save = "transformers.MllamaProcessor(image_processor=image_processor(), tokenizer=tokenizer()).save_pretrained(folder)"
            read = "transformers.AutoProcessor.from_pretrained(folder)"
        if cell.probe == "adapter_roundtrip":
            save += "\n    save_adapter(load(folder), folder)"
        if info and _compares_ids(target):  # the load probe compares the prompt's ids as the writer's tokenizer encoded them
            save += ('\n    with open(f"{folder}/reference_ids.json", "w") as file:'
                     '\n        json.dump(tokenizer()(PROMPT)["input_ids"], file)')
        main = _fill(blocks.MAIN_CROSS, SAVE_FILES=save, READ_FILES=read, CHECK=check, EXPECTED=what)
    else:
        if _inline_load(target):
            statement, model = _load_statement(target, info)
            loaded = statement.split(" = ", 1)[1]
            check = (check.replace("load(folder)", f"{loaded}{model[len('model'):]}") if not info and "\n" not in statement
                     else statement + "\n    " + check.replace("*load(folder)", f"{model}, info").replace("load(folder)", model))
        main = _fill(blocks.MAIN_SAME, CHECK=check, EXPECTED=what,
                     BUILD="reference = build(folder)" if "reference" in check else "build(folder)")
    if "VISION.search(" in body:
        body = body.replace("\n\n\ndef build(", "\n" + _fill(blocks.VISION, PATTERN=vision_pattern()) + "\n\ndef build(", 1)
    if "written_by(" in body:
        body += blocks.WRITTEN_BY
    if "def tokenizer(" in body and "(PROMPT)" not in body + main:  # the reference prompt only where the load check reads it
        body = re.sub(r"\nPROMPT = .*\n", "", body)
    if "def tokenizer(" in body and "processors." not in body:
        body = body.replace("from tokenizers import Tokenizer, models, pre_tokenizers, processors",
                            "from tokenizers import Tokenizer, models, pre_tokenizers")
    body += main
    header = _fill(blocks.HEADER, DEPENDENCIES=dependencies, TITLE=_title(target, call, parts), ABOUT=_about(target, expected),
                   IMPORTS=_imports(body),
                   PACKAGES="import " + ", ".join(sorted({"torch", "transformers", *needs} - {"pillow"}
                                                          | ({"safetensors.torch"} if "safetensors.torch." in body else set()))))
    # one blank line between definitions (not PEP 8's two): a script pasted into an issue, read top to bottom
    return re.sub(r"\n\n\n(?=def |if __name__|PROMPT = )", "\n\n", header + body)


def _title(target: Target, call: str, parts: str) -> str:
    entry, cell = target.entry, target.cell
    where = (f"transformers {target.release} reading a checkpoint {cell.saved_by} saved"
             if target.cross_release else f"transformers {target.release}")
    step = {"load": f"{call}{', then its LoRA adapter' if 'def adapt(' in parts else ''}",
            "forward": f"{call}, then a forward", "generate": f"{call}, then generate()",
            "grpo_step": f"{call}, then {'a LoRA training step' if 'peft.' in parts else 'a GRPO step'}",
            "adapter_roundtrip": f"{call}, then the LoRA adapter transformers {cell.saved_by} saved"}
    return _wrap(f"{entry.hub_id}, {where}: {step[cell.probe]}", width=116)


def _about(target: Target, expected: dict[str, Any] | None) -> str:
    cell = target.cell
    lines = [f"compat-matrix cell {cell.id}, tiny random weights"
             + (f"; passes in {target.good}" if target.good else "") + "."]
    if expected and expected.get("reason"):
        lines.append(f"matrix.yaml expects {expected['status']}: {_first_sentence(str(expected['reason']))}"
                     + (f" Upstream: {expected['link']}" if expected.get("link") else ""))
    elif expected and expected.get("link"):
        lines.append(f"Upstream: {expected['link']}")
    if target.cross_release:
        lines += ["Run the two steps, each with its release (exit 1: the failure reproduces; 0: right):",
                  f"  uv run --with transformers=={cell.saved_by} {target.name} write ckpt",
                  f"  uv run {target.name} read ckpt"]
    else:
        lines.append(f"Run: uv run {target.name}   (exit 1: the failure reproduces; 0: right)")
    return "\n".join(_wrap(line, width=116) for line in lines)


REASON_CHARS = 150
"""A script quotes the expectation's reason up to its first full stop, at most this many characters."""


def _first_sentence(reason: str) -> str:
    text = " ".join(reason.split())
    end = text.find(". ")
    text = text if end < 0 else text[: end + 1]
    return text if len(text) <= REASON_CHARS else text[: text.rfind(" ", 0, REASON_CHARS)] + " …"


def _wrap(line: str, width: int = 110) -> str:
    words, out, current = line.split(" "), [], ""
    for word in words:
        if current and len(current) + 1 + len(word) > width:
            out.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    out.append(current)
    return "\n".join(out)
