"""Typed, frozen view of `matrix.yaml`: releases, strategies, probes, models and expectations.

Validation is pydantic's (unknown keys, types, ranges); the checks pydantic cannot know
(version specifiers, names that must exist elsewhere) are field validators here, so that every
problem comes out as one located message from `compat_matrix.spec.validate`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import (AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationInfo, field_validator,
                      model_validator)

from compat_tests.rewards import REWARDS
from loader.strategies import STRATEGIES
from reports.status import ADAPTER_PROBES, PROBE_ORDER, Status

SPECIFIER_START = ("<", ">", "=", "!", "~")


def is_specifier(item: str) -> bool:
    """`>=5.0,<5.6` and `==4.57.*` are specifiers; `4.57.6`, `latest`, `main` are releases."""
    return item.strip().startswith(SPECIFIER_START)


STRATEGY_NAMES = tuple(STRATEGIES)
"""Every loading strategy the harness knows: the names of `loader.STRATEGIES`, the registry that implements them."""

TRAINING_PACKAGES = ("trl", "peft")
"""Training libraries installed into every release environment, each at the newest release whose
requirements accept the installed transformers unless `training_pins` pins it (accelerate comes with them)."""

REWARD_NAMES = tuple(REWARDS)
"""Rule-based GRPO rewards: the names of `compat_tests.rewards.REWARDS`, the registry that implements them."""

REMOTE_CODE_ROOT = Path(__file__).resolve().parents[2] / "compat_tests" / "remote_code"
"""Folders of modeling code written for this project, one per remote-code recipe (`sources`)."""

SURFACE_PATH = re.compile(r"^(?:[A-Za-z_]\w*|\d+)(?:\(\))?(?:\.(?:[A-Za-z_]\w*|\d+)(?:\(\))?)*$")
"""`config.text_config.vocab_size`, `get_decoder().layers.0`: dotted names (digits index module
lists); `()` calls with no arguments."""


IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""A Python class name: what `getattr(transformers, name)` can find (no dots, no calls)."""

TINY_PARAMETER_CAP = 50_000_000
"""Most parameters a tiny recipe may describe (README: matrix.yaml keys). The tiny models have
~0.1-1M; 50M still builds in seconds on a CPU, a typo such as `vocab_size: 1000000000` does not."""

_WIDTH_KEYS = ("hidden_size", "embed_dim", "d_model", "n_embd")
_LAYER_KEYS = ("num_hidden_layers", "depth", "num_layers", "n_layer")
_MLP_KEYS = ("intermediate_size", "ffn_dim", "n_inner")
_EXPERT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts")


def _first_int(config: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    return next((v for k in keys if isinstance(v := config.get(k), int) and not isinstance(v, bool)), None)


def estimate_parameters(config: dict[str, Any]) -> int:
    """Parameters a config's dimensions describe, counted over it and every nested sub-config
    (`text_config`, `vision_config`): embeddings in and out, and per layer attention (4 h^2) plus
    a gated MLP (3 h i per expert). An upper-bound sketch for refusing typos, not an exact count."""
    total = 0
    width = _first_int(config, _WIDTH_KEYS)
    if width is not None:
        vocab = _first_int(config, ("vocab_size",)) or 0
        layers = _first_int(config, _LAYER_KEYS) or 1
        mlp = _first_int(config, _MLP_KEYS)
        if mlp is None:
            ratio = config.get("mlp_ratio")
            mlp = int(ratio * width) if isinstance(ratio, (int, float)) and not isinstance(ratio, bool) else 4 * width
        experts = _first_int(config, _EXPERT_KEYS) or 1
        total += 2 * vocab * width + layers * (4 * width * width + 3 * width * mlp * max(1, experts))
    return total + sum(estimate_parameters(v) for v in config.values() if isinstance(v, dict))


def _class_name(value: str) -> str:
    if not re.fullmatch(IDENTIFIER, value):
        raise ValueError(f"{value!r} is not a class name; write the class as transformers names it, e.g. "
                         "'LlamaForCausalLM' (letters, digits and '_': no dots, spaces or calls)")
    return value


ClassName = Annotated[str, AfterValidator(_class_name)]
"""A class name transformers exports (checked as an identifier; whether this release has it, at run time)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ROUTE_MODALITIES = ("text",)
"""What a route (a strategy or a load profile) may declare it loads of a multimodal checkpoint."""


def _route_modality(value: str | None) -> str | None:
    if value is not None and value not in ROUTE_MODALITIES:
        raise ValueError(f"modality {value!r} is not a route modality; write 'text' for a text-only route on a "
                         "multimodal checkpoint (judged on text-only logits, the vision side's absence expected), "
                         "or leave it out for a route that loads the whole model")
    return value


RouteModality = Annotated[Union[str, None], AfterValidator(_route_modality)]
"""`text` or unset; see ROUTE_MODALITIES."""


CALLABLE_REF = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
"""`package.module:function` (a dotted attribute after the colon is allowed: `mod:Class.method`)."""


class UserCallable(_Frozen):
    """A strategy or probe of the user's own code, imported in each release's environment."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$")
    """Its name in cell ids and reports (lower case, digits, `_`)."""
    callable: str
    """`package.module:function`; the package comes from `install:` (or is importable there)."""
    mutates_model: bool = True
    """Probes only: the probe changes the weights (a training step), so later probes load afresh."""
    modality: RouteModality = None
    """Strategies only: `text` when it loads only the text side of a multimodal checkpoint on purpose."""

    @field_validator("callable")
    @classmethod
    def _reference(cls, value: str) -> str:
        if not CALLABLE_REF.match(value):
            raise ValueError(f"{value!r} is not an import path; write 'package.module:function', "
                             "e.g. 'mytrainer.models:load_policy'")
        return value

    @property
    def module(self) -> str:
        return self.callable.partition(":")[0]


NameOrCallable = Annotated[
    Union[Annotated[str, Tag("<name>")], Annotated[UserCallable, Tag("<callable>")]],
    Discriminator(lambda v: "<name>" if isinstance(v, str) else "<callable>"),
]
"""A built-in name, or a mapping for a user callable; the tags are left out of error locations."""


def user_names(data: Any, key: str) -> tuple[str, ...]:
    """Names of the user callables listed under `key` in raw matrix data (validation context)."""
    items = data.get(key) if isinstance(data, dict) else None
    return tuple(str(i["name"]) for i in items or () if isinstance(i, dict) and "name" in i) if isinstance(items, list) else ()


def _allowed(info: ValidationInfo, builtin: tuple[str, ...], key: str) -> tuple[str, ...]:
    """Built-in names plus the user callables of the matrix being validated."""
    return tuple(dict.fromkeys(builtin + tuple((info.context or {}).get(key, ()))))


MOVING_REVISIONS = frozenset({"main", "master", "HEAD"})
"""Hub revisions that are branches, not pins."""
REVISION_PLACEHOLDER = "PIN-A-COMMIT-SHA"
"""What `compat-matrix init` writes where it could not ask the hub for the commit."""


def _in_range(version: str, specifier: str) -> bool:
    """`version` is in the PEP 440 range (an empty range holds every version)."""
    return not specifier or _contains(version, specifier)


@lru_cache(maxsize=None)
def _contains(version: str, specifier: str) -> bool:
    """Parsed once per (release, range): every cell of a run asks its expectations the same few questions,
    and parsing a `SpecifierSet` per expectation per cell made looking up a stored check's cells cost 21 s."""
    return Version(version) in SpecifierSet(specifier, prereleases=True)


def _check_specifier(value: str) -> str:
    try:
        SpecifierSet(value)
    except InvalidSpecifier:
        raise ValueError(f"{value!r} is not a PEP 440 version specifier; write e.g. '<5', '>=4.52,<4.57'") from None
    return value


class LibraryRanges(_Frozen):
    """PEP 440 ranges of the libraries besides torch and transformers that decide whether a cell works
    (each result line records their versions, `libraries`); empty: any version, or none installed.
    huggingface_hub reads every config (5.x's typed configs are its strict dataclasses): a release
    installed today gets a newer hub than the one it was tested with."""

    trl: str = ""
    peft: str = ""
    accelerate: str = ""
    tokenizers: str = ""
    huggingface_hub: str = ""

    @field_validator("trl", "peft", "accelerate", "tokenizers", "huggingface_hub")
    @classmethod
    def _specifier(cls, value: str) -> str:
        return _check_specifier(value) if value else value

    def named(self) -> dict[str, str]:
        """{library: range} for the libraries given a range."""
        return {name: spec for name, spec in self.model_dump().items() if spec}

    def hold(self, installed: Mapping[str, str | None]) -> bool:
        """Every named library is installed at a version inside its range (not installed, or unparseable: outside)."""
        return all(_version_in(installed.get(name), spec) for name, spec in self.named().items())


def _version_in(version: str | None, specifier: str) -> bool:
    if not version:
        return False
    try:
        return _contains(version, specifier)
    except InvalidVersion:
        return False


RECORDED_LIBRARIES = tuple(LibraryRanges.model_fields)
"""The libraries every result line records the versions of (`libraries`), and an expectation can bound."""


class Expectation(_Frozen):
    """What a set of cells should do in a range of releases, and why."""

    status: Status
    """Expected status of the matching cells."""
    models: tuple[str, ...] = ()
    """Model keys it applies to (top-level expectations only); empty means all."""
    transformers: str = ""
    """PEP 440 specifier of the releases it applies to; empty means every release."""
    strategies: tuple[str, ...] = ()
    """Strategies it applies to; empty means all."""
    probes: tuple[str, ...] = ()
    """Probes it applies to; empty means all."""
    load_kwargs: tuple[str, ...] = ()
    """Load profiles it applies to; empty means all."""
    saved_by: str = ""
    """PEP 440 specifier of the release that saved the checkpoint: set, it covers only cross-release
    cells whose checkpoint such a release wrote; empty means any checkpoint, own or another release's."""
    libraries: LibraryRanges = Field(default_factory=LibraryRanges)
    """PEP 440 ranges of the training libraries the cause holds for (`{peft: "<0.22.0"}`): set, it covers only
    cells whose line records a version of each named library inside its range (a library not installed is
    outside). A fix released in peft or trl then ends the expectation for the runs that have it, without
    ending it for the runs that pin the older one; empty means any version."""
    reason: str
    """Why: people read this in the report next to the cell."""
    link: str | None = None
    """Upstream issue or PR, where known."""
    repro: str | None = None
    """A self-contained script that reproduces this cause (`compat-matrix repro`), relative to the
    matrix file's folder; validation checks that it exists."""

    @field_validator("transformers", "saved_by")
    @classmethod
    def _specifier(cls, value: str) -> str:
        return _check_specifier(value) if value else value

    @field_validator("strategies")
    @classmethod
    def _known_strategies(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        return _known(value, _allowed(info, STRATEGY_NAMES, "strategies"), "strategy")

    @field_validator("probes")
    @classmethod
    def _known_probes(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        return _known(value, _allowed(info, PROBE_ORDER, "probes"), "probe")

    def matches(self, model: str, version: str, strategy: str, probe: str, profile: str,
                saved_by: str | None = None, libraries: Mapping[str, str | None] | None = None) -> bool:
        """True when this expectation covers the cell (`saved_by`: the release whose checkpoint it loads;
        `libraries`: the versions its line records, None where they are not known, which `libraries:` ranges
        then do not narrow)."""
        return (
            (not self.models or model in self.models)
            and _in_range(version, self.transformers)
            and (not self.saved_by or (saved_by is not None and _in_range(saved_by, self.saved_by)))
            and (not self.strategies or strategy in self.strategies)
            and (not self.probes or probe in self.probes)
            and (not self.load_kwargs or profile in self.load_kwargs)
            and (libraries is None or self.libraries.hold(libraries))
        )


class RemoteCode(_Frozen):
    """Modeling code the checkpoint ships itself, as hub repos loaded with `trust_remote_code` do."""

    sources: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$")
    """Folder under `compat_tests/remote_code/` whose `*.py` files are copied into the checkpoint."""
    auto_map: dict[str, str]
    """`config.json` `auto_map`: Auto class -> `module.Class` in those files; needs `AutoConfig`."""
    twin: ClassName
    """A transformers class with the same weight names and maths: it makes the random weights and
    the reference logits, so both exist in releases where the remote code itself breaks."""

    @field_validator("sources")
    @classmethod
    def _folder_exists(cls, value: str) -> str:
        if not (REMOTE_CODE_ROOT / value).is_dir():
            known = sorted(p.name for p in REMOTE_CODE_ROOT.iterdir() if p.is_dir()) if REMOTE_CODE_ROOT.is_dir() else []
            raise ValueError(f"no folder {value!r} in compat_tests/remote_code/; there: {', '.join(known) or 'none'}")
        return value

    @field_validator("auto_map")
    @classmethod
    def _auto_config(cls, value: dict[str, str]) -> dict[str, str]:
        if "AutoConfig" not in value:
            raise ValueError("auto_map needs an 'AutoConfig' entry (module.ConfigClass): transformers reads the config through it")
        bad = sorted(v for v in value.values() if not re.fullmatch(r"[A-Za-z_]\w*\.[A-Za-z_]\w*", v))
        if bad:
            raise ValueError(f"auto_map values are 'module.Class' (e.g. modeling_x.XForCausalLM); got {bad}")
        return value


class Recipe(_Frozen):
    """How to build a tiny random checkpoint locally: a config and the class to instantiate."""

    model_type: str
    """`config.model_type`, as `AutoConfig.for_model` takes it (the remote code's own one with `remote_code`)."""
    architecture: ClassName
    """The class in `transformers` to instantiate (goes into `config.architectures`); with
    `remote_code`, a class of the remote code that `auto_map` names."""
    remote_code: RemoteCode | None = None
    """The checkpoint ships its own configuration/modeling files; the entry needs `trust_remote_code: true`."""
    config: dict[str, Any] = Field(default_factory=dict)
    """Overrides for `AutoConfig.for_model(model_type, **config)`; keep the model tiny."""
    dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    """dtype the weights are saved in, as real checkpoints of the family ship."""
    seed: int = 0
    """Seed for the random weights; same recipe and release give identical files."""

    @field_validator("model_type")
    @classmethod
    def _model_type_is_a_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_\-]*", value):
            raise ValueError(f"{value!r} is not a model_type; write the lower-case name config.json carries, e.g. 'llama', 'qwen2_5_vl'")
        return value

    @model_validator(mode="after")
    def _tiny(self) -> Recipe:
        estimate = estimate_parameters(self.config)
        if estimate > TINY_PARAMETER_CAP:
            raise ValueError(f"config describes ~{estimate:,} parameters, over the {TINY_PARAMETER_CAP:,} cap for a tiny "
                             "recipe (TINY_PARAMETER_CAP in compat_matrix/spec/schema.py): check vocab_size, hidden_size, "
                             "intermediate_size and the layer counts")
        return self

    @model_validator(mode="after")
    def _architecture_in_auto_map(self) -> Recipe:
        if self.remote_code:
            classes = {v.split(".")[-1] for v in self.remote_code.auto_map.values()}
            if self.architecture not in classes:
                raise ValueError(f"architecture {self.architecture!r} is none of the classes remote_code.auto_map "
                                 f"names ({', '.join(sorted(classes))})")
        return self


class LoraSpec(_Frozen):
    """A LoRA adapter as peft's `LoraConfig` takes it (r, lora_alpha, target_modules)."""

    r: int = Field(8, ge=1)
    """Rank of the update matrices."""
    alpha: int = Field(16, ge=1)
    """`lora_alpha`: the update is scaled by alpha / r."""
    target_modules: Union[str, tuple[str, ...]]
    """Module names (a module matches when its path ends with one, at a dot) or one regular expression
    that must match a module's whole path (`re.fullmatch`), exactly as peft takes them; `all-linear`
    is peft's every-linear-layer-but-the-output one."""
    target_parameters: tuple[str, ...] = ()
    """Parameter names (dotted tails such as `mlp.experts.gate_up_proj`) adapted in place, as peft's
    `target_parameters` (peft 0.17+) does for fused 3-D expert weights; a cell whose peft lacks it is
    `unsupported`."""

    @field_validator("target_parameters")
    @classmethod
    def _parameters(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not re.fullmatch(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*", v)]
        if bad:
            raise ValueError(f"{bad}: target_parameters entries are parameter names or dotted name tails "
                             "(mlp.experts.gate_up_proj, down_proj), as peft matches them")
        return value

    @field_validator("target_modules")
    @classmethod
    def _targets(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("an empty regular expression matches no module; write names, e.g. [q_proj, v_proj], "
                                 r"or a regex such as '.*\.layers\.\d+\.self_attn\.(q|v)_proj'")
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a regular expression ({exc}); peft matches a string against each "
                                 "module's whole path, a list by name") from None
            return value
        if not value:
            raise ValueError("an empty list matches no module; name them, e.g. [q_proj, k_proj, v_proj, o_proj]")
        bad = [v for v in value if not re.fullmatch(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*", v)]
        if bad:
            raise ValueError(f"{bad}: list entries are module names or dotted name tails (q_proj, self_attn.q_proj); "
                             "for a pattern give target_modules one regex string instead of a list")
        return value


class AdapterSpec(_Frozen):
    """An adapter applied with peft after the strategy's load; the cell then trains only the adapter."""

    lora: LoraSpec
    """The only adapter type so far."""


PROFILE_KEYS = ("adapter", "probes", "strategies", "modality")
"""Keys of a load profile that are not `from_pretrained` keyword arguments."""


class LoadProfile(BaseModel):
    """One named load profile: `from_pretrained` keyword arguments (any key), plus an optional adapter
    and the probes / strategies its cells run (default: the matrix's)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    adapter: AdapterSpec | None = None
    """Apply this adapter with peft after loading (e.g. `{lora: {r: 8, alpha: 16, target_modules: [q_proj]}}`)."""
    probes: tuple[str, ...] = ()
    """Probes this profile's cells run (empty: every probe of the matrix); keeps extra profiles cheap."""
    strategies: tuple[str, ...] = ()
    """Strategies this profile's cells run (empty: every strategy of the matrix)."""
    modality: RouteModality = None
    """`text`: this profile's routes load only the text side of a multimodal checkpoint (text-only fine-tuning)."""

    @field_validator("probes")
    @classmethod
    def _known_probes(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        return _known(value, _allowed(info, PROBE_ORDER, "probes"), "probe")

    @field_validator("strategies")
    @classmethod
    def _known_strategies(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        return _known(value, _allowed(info, STRATEGY_NAMES, "strategies"), "strategy")

    @model_validator(mode="after")
    def _adapter_for_adapter_probes(self) -> LoadProfile:
        named = [p for p in self.probes if p in ADAPTER_PROBES]
        if named and self.adapter is None:
            raise ValueError(f"probe(s) {named} work on the profile's adapter and this profile has none: add "
                             "`adapter: {lora: {r: 8, alpha: 16, target_modules: [q_proj, v_proj]}}` or drop them")
        return self

    @property
    def kwargs(self) -> dict[str, Any]:
        """The `from_pretrained` keyword arguments (every key but PROFILE_KEYS)."""
        return dict(self.model_extra or {})


class ModelEntry(_Frozen):
    """One row of `models:`: a model id and how to get a checkpoint for it here."""

    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$")
    """Stable id used in test ids and reports (`qwen2_5_vl`)."""
    hub_id: str
    """The real hub id it stands for (`Qwen/Qwen2.5-VL-3B-Instruct`)."""
    modality: Literal["text", "image-text"]
    """`image-text` models also get image inputs and a vision-side check."""
    source: Literal["tiny", "hub", "local"] = "tiny"
    """`tiny`: built from `recipe`; `hub`: downloaded when the network allows; `local`: `path`."""
    revision: str | None = None
    """Pinned hub revision (commit) for `source: hub`."""
    path: str | None = None
    """Checkpoint folder for `source: local`."""
    recipe: Recipe | None = None
    """Required for `source: tiny`."""
    written_by: str | None = None
    """The transformers release that wrote the real hub checkpoint (its config.json's
    `transformers_version`, a dev version as the release it became: 4.49.0.dev0 -> 4.49.0). The tiny
    checkpoint is then built once in that release and loaded by every release, as
    `from_pretrained(hub_id)` does (the "as published" checkpoint; drift is measured on it)."""
    trust_remote_code: bool = False
    """Pass `trust_remote_code=True`; needed for checkpoints with `auto_map`."""
    load_kwargs: dict[str, LoadProfile] = Field(default_factory=lambda: {"default": LoadProfile()})
    """Named load profiles (`from_pretrained` keyword arguments, optionally an adapter); each profile
    is one more column of cells."""
    expectations: tuple[Expectation, ...] = ()
    """Known outcomes; the first matching expectation of a cell wins."""

    @field_validator("written_by")
    @classmethod
    def _exact_release(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d+\.\d+\.\d+", value):
            raise ValueError(f"written_by {value!r} is not an exact release such as 4.49.0 (a config.json saying "
                             "4.49.0.dev0 was written by what became 4.49.0: write that)")
        return value

    @model_validator(mode="after")
    def _source_fields(self) -> ModelEntry:
        if self.source == "tiny" and self.recipe is None:
            raise ValueError("source 'tiny' needs a 'recipe' (model_type, architecture, config)")
        if self.source == "local" and not self.path:
            raise ValueError("source 'local' needs a 'path' to a checkpoint folder")
        if self.source == "hub" and not self.revision:
            raise ValueError("source 'hub' needs a pinned 'revision' (a commit sha or tag) so runs are reproducible")
        if self.source == "hub" and self.revision == REVISION_PLACEHOLDER:
            raise ValueError(f"revision is still {REVISION_PLACEHOLDER!r}, the placeholder `compat-matrix init` wrote: replace "
                             "it with the commit sha of the checkpoint to test (the hub page's 'Files and versions' history)")
        if self.source == "hub" and self.revision in MOVING_REVISIONS:
            raise ValueError(f"revision {self.revision!r} is a branch: it moves, so two nightlies may test different "
                             "weights; pin the commit sha (the hub page's 'Files and versions' history lists it)")
        if self.recipe and self.recipe.remote_code and not self.trust_remote_code:
            raise ValueError("recipe.remote_code ships its own modeling code, which transformers runs only when "
                             "asked to: add 'trust_remote_code: true' to this model entry")
        if self.written_by is not None and self.source != "tiny":
            raise ValueError("'written_by' is for tiny entries (which release builds their checkpoint); a hub or "
                             "local checkpoint is already as published")
        if not self.load_kwargs:
            raise ValueError("'load_kwargs' needs at least one profile, e.g. {default: {}}")
        for expectation in self.expectations:
            if expectation.models:
                raise ValueError("'models' is for top-level expectations; a model's own expectations already apply to it")
            unknown = sorted(set(expectation.load_kwargs) - set(self.load_kwargs))
            if unknown:
                raise ValueError(f"expectation names load_kwargs profile(s) {unknown}; this model has {sorted(self.load_kwargs)}")
        return self



class GrpoSettings(_Frozen):
    """One GRPO step: group size, sampling length, loss constants, optimizer."""

    group_size: int = Field(4, ge=2)
    """Completions sampled per prompt (G)."""
    prompts: int = Field(2, ge=1)
    """Prompts per step."""
    max_new_tokens: int = Field(4, ge=1)
    """Tokens per completion."""
    beta: float = Field(0.04, ge=0)
    """Weight of the k3 KL term."""
    epsilon_low: float = Field(0.2, gt=0, lt=1)
    """Lower clip range: ratio >= 1 - epsilon_low."""
    epsilon_high: float = Field(0.28, gt=0)
    """Upper clip range: ratio <= 1 + epsilon_high."""
    learning_rate: float = Field(1e-3, gt=0)
    """Step size of the one optimizer step."""
    reward: str = "token_diversity"
    """Rule-based reward, one of REWARD_NAMES; the default gives different values inside a group."""
    seed: int = 0
    """Sampling seed."""
    micro_batch_sizes: tuple[int, ...] = Field((1, 2), min_length=1)
    """Rows per training forward, as a trainer's per-device batch: the step trains on micro-batches
    of the first size with gradient accumulation (so does `trl_grpo`, where its TRL release can);
    log-probs at every other size must agree with it."""
    gradient_checkpointing: bool = True
    """Train with gradient checkpointing where the model supports it, as most GRPO recipes do."""
    use_reentrant: bool | None = None
    """Gradient checkpointing's variant (`use_reentrant`) for `grpo_step` and `trl_grpo`. None: each
    one's own default: `grpo_step` the release's, as `gradient_checkpointing_enable()` and the HF
    Trainer give it (reentrant before 5.0, non-reentrant from 5.0, transformers#43203; TRL before
    0.27 keeps it), `trl_grpo` its TRL's (0.27 and later pass False on 4.x, trl#4811). A value
    applies to both."""

    @field_validator("micro_batch_sizes")
    @classmethod
    def _positive_sizes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(size < 1 for size in value):
            raise ValueError(f"micro-batch sizes are rows per forward, at least 1; got {list(value)}")
        return value

    @field_validator("reward")
    @classmethod
    def _known_reward(cls, value: str) -> str:
        _known((value,), REWARD_NAMES, "reward")
        return value


class TrlSettings(_Frozen):
    """The `trl_grpo` probe: one real TRL GRPOTrainer step (G, lengths and loss constants from `grpo`)."""

    max_prompt_length: int = Field(64, ge=8)
    """Prompt tokens TRL keeps (older TRL releases truncate to this)."""
    gradient_checkpointing: bool = True
    """Pass `gradient_checkpointing=True` to GRPOConfig, as most recipes do."""


class TrainingPin(_Frozen):
    """Exact trl / peft versions for a range of transformers releases, overriding the newest-accepting choice."""

    transformers: str
    """PEP 440 specifier of the releases it applies to."""
    trl: str | None = None
    """Exact trl version, e.g. '0.19.1'."""
    peft: str | None = None
    """Exact peft version, e.g. '0.15.2'."""
    reason: str = ""
    """Why the newest accepting release is not used."""

    @field_validator("transformers")
    @classmethod
    def _specifier(cls, value: str) -> str:
        return _check_specifier(value)

    @field_validator("trl", "peft")
    @classmethod
    def _exact(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                Version(value)
            except InvalidVersion:
                raise ValueError(f"{value!r} is not an exact version such as '0.19.1'") from None
        return value

    def version_for(self, package: str, release: str) -> str | None:
        """The pinned version of `package` when this pin covers `release`, else None."""
        return getattr(self, package) if _in_range(release, self.transformers) else None


class SurfaceSettings(_Frozen):
    """The `surface` probe: attribute paths and methods training code touches on a loaded model."""

    paths: tuple[str, ...] = ()
    """Paths from the model (`get_decoder()`, `model.visual`, `config.text_config.vocab_size`);
    each is recorded as exists + a plain value. A `()` call runs on a deep copy of the model."""
    required: tuple[str, ...] = ()
    """Paths that must exist (and, for calls, not raise) on every model; the probe fails otherwise."""

    @field_validator("paths", "required")
    @classmethod
    def _syntax(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not SURFACE_PATH.match(v)]
        if bad:
            raise ValueError(f"not an attribute path: {bad}; write dotted names with optional '()' calls, "
                             "e.g. 'model.language_model', 'get_decoder()', 'config.text_config.vocab_size'")
        return value

    @model_validator(mode="after")
    def _required_listed(self) -> SurfaceSettings:
        missing = [p for p in self.required if p not in self.paths]
        if missing:
            raise ValueError(f"required path(s) {missing} are not in 'paths'; add them there too")
        return self


class Settings(_Frozen):
    """Run-wide knobs."""

    cell_timeout_s: float = Field(120.0, gt=0)
    """A cell that runs longer is stopped and reported as `error`."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto`: cuda when available, else cpu."""
    generate_max_new_tokens: int = Field(4, ge=1)
    """Greedy tokens generated by the `generate` probe."""
    grpo: GrpoSettings = GrpoSettings()
    """The `grpo_step` probe (and G, lengths, loss constants of `trl_grpo`)."""
    trl: TrlSettings = TrlSettings()
    """The `trl_grpo` probe."""
    surface: SurfaceSettings = SurfaceSettings()
    """The `surface` probe."""


class Matrix(_Frozen):
    """The whole of `matrix.yaml`."""

    transformers: tuple[str, ...] = Field(min_length=1)
    """Releases to test: exact versions (`4.57.6`), `latest`, or PEP 440 specifiers (`">=5.0,<5.6"`:
    every final release on the package index in that range, see `compat_matrix.envs.release_sets`)."""
    torch: str = "2.13.0"
    """The one torch pin every environment installs."""
    strategies: tuple[NameOrCallable, ...] = STRATEGY_NAMES
    """Strategies to run: known names, and `{name, callable}` entries for the user's own loaders."""
    probes: tuple[NameOrCallable, ...] = PROBE_ORDER
    """Probes to run: known names, and `{name, callable}` entries for the user's own checks."""
    install: tuple[str, ...] = ()
    """What every release environment installs besides torch and transformers: pip requirements
    (`trl`, `peft==0.17.1`), `-e .` or a folder (relative to this file's folder), a git URL."""
    settings: Settings = Settings()
    """Run-wide knobs."""
    models: tuple[ModelEntry, ...] = Field(min_length=1)
    """Model entries; keys are unique."""
    expectations: tuple[Expectation, ...] = ()
    """Expectations for many models at once (`models:` narrows them); a model's own come first."""
    training_pins: tuple[TrainingPin, ...] = ()
    """Exact trl / peft versions per transformers range; the first pin naming a package wins."""

    @field_validator("transformers")
    @classmethod
    def _releases(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if item == "latest":
                continue
            if is_specifier(item):  # a release set, expanded on the index when a command runs
                _check_specifier(item)
                continue
            try:
                version = Version(item)
            except InvalidVersion:
                raise ValueError(f"{item!r} is not a release; write an exact version such as '4.57.6', 'latest', "
                                 "or a specifier such as '>=5.0,<5.6'") from None
            if str(version) != item:
                raise ValueError(f"{item!r}: write the exact release as '{version}'")
        duplicates = sorted({v for v in value if value.count(v) > 1})
        if duplicates:
            raise ValueError(f"releases listed twice: {duplicates}")
        return value

    @field_validator("torch")
    @classmethod
    def _torch_pin(cls, value: str) -> str:
        try:
            Version(value)
        except InvalidVersion:
            raise ValueError(f"{value!r} is not an exact torch version such as '2.13.0'") from None
        return value

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, value: tuple[str | UserCallable, ...]) -> tuple[str | UserCallable, ...]:
        return _entries(value, STRATEGY_NAMES, "strategy")

    @field_validator("probes")
    @classmethod
    def _probes(cls, value: tuple[str | UserCallable, ...]) -> tuple[str | UserCallable, ...]:
        declared = [v.name for v in value if isinstance(v, UserCallable) and v.modality is not None]
        if declared:
            raise ValueError(f"{declared}: 'modality' is for strategies (what a route loads); remove it from the probe")
        return _entries(value, PROBE_ORDER, "probe")

    @field_validator("install")
    @classmethod
    def _requirements(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not v.strip() or "\n" in v]
        if bad:
            raise ValueError(f"each install entry is one pip requirement line; got {bad}")
        return value

    @property
    def strategy_names(self) -> tuple[str, ...]:
        return tuple(s if isinstance(s, str) else s.name for s in self.strategies)

    @property
    def probe_names(self) -> tuple[str, ...]:
        return tuple(p if isinstance(p, str) else p.name for p in self.probes)

    @property
    def user_strategies(self) -> dict[str, UserCallable]:
        return {s.name: s for s in self.strategies if isinstance(s, UserCallable)}

    @property
    def user_probes(self) -> dict[str, UserCallable]:
        return {p.name: p for p in self.probes if isinstance(p, UserCallable)}

    @field_validator("models")
    @classmethod
    def _unique_keys(cls, value: tuple[ModelEntry, ...]) -> tuple[ModelEntry, ...]:
        keys = [m.key for m in value]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"model keys must be unique; listed twice: {duplicates}")
        return value

    @model_validator(mode="after")
    def _expectation_models(self) -> Matrix:
        keys = {m.key for m in self.models}
        for expectation in self.expectations:
            unknown = sorted(set(expectation.models) - keys)
            if unknown:
                raise ValueError(f"top-level expectation names unknown model(s) {unknown}; known: {', '.join(sorted(keys))}")
        return self

    def expectation_for(self, entry: ModelEntry, version: str, strategy: str, probe: str, profile: str,
                        saved_by: str | None = None,
                        libraries: Mapping[str, str | None] | None = None) -> Expectation | None:
        """The one place that decides what a cell is expected to do: first match, model's own first.

        For a cross-release cell, expectations that name `saved_by` come first: an unreadable
        checkpoint fails every strategy, whatever a strategy would do with a readable one."""
        for expectation in self.expectation_order(entry, saved_by is not None):
            if expectation.matches(entry.key, version, strategy, probe, profile, saved_by, libraries):
                return expectation
        return None

    def expectation_order(self, entry: ModelEntry, cross_release: bool = False) -> tuple[Expectation, ...]:
        """The order `expectation_for` tries a model's expectations in (the first match wins)."""
        ordered = (*entry.expectations, *self.expectations)
        if cross_release:
            ordered = (*(e for e in ordered if e.saved_by), *(e for e in ordered if not e.saved_by))
        return ordered

    def training_pin(self, package: str, release: str) -> str | None:
        """The version `training_pins` fixes for `package` in `release` (first match), or None."""
        for pin in self.training_pins:
            version = pin.version_for(package, release)
            if version is not None:
                return version
        return None

    def model(self, key: str) -> ModelEntry:
        """The entry with this key (KeyError naming the known keys otherwise)."""
        for entry in self.models:
            if entry.key == key:
                return entry
        raise KeyError(f"no model {key!r} in the matrix; known: {', '.join(m.key for m in self.models)}")

    def profile_dimensions(self, entry: ModelEntry, profile: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The strategies and probes a profile's cells run: the matrix's, narrowed by the profile's own lists
        (a profile without an adapter runs no ADAPTER_PROBES)."""
        chosen = entry.load_kwargs[profile]
        strategies = tuple(s for s in self.strategy_names if not chosen.strategies or s in chosen.strategies)
        probes = tuple(p for p in self.probe_names if (not chosen.probes or p in chosen.probes)
                       and (chosen.adapter is not None or p not in ADAPTER_PROBES))
        return strategies, probes

    def declared_modality(self, entry: ModelEntry, strategy: str, profile: str) -> str | None:
        """What the profile, else the user's strategy, declares the route loads (`text`), or None."""
        own = self.user_strategies.get(strategy)
        return entry.load_kwargs[profile].modality or (own.modality if own is not None else None)

    def count_cells(self) -> int:
        """Cells per release: for each model and profile, its strategies x its probes."""
        return sum(len(s) * len(p) for m in self.models for s, p in (self.profile_dimensions(m, k) for k in m.load_kwargs))


def _entries(value: tuple[str | UserCallable, ...], builtin: tuple[str, ...], what: str) -> tuple[str | UserCallable, ...]:
    """Built-in names must exist; user callables must not take a built-in's name; no name twice."""
    _known(tuple(v for v in value if isinstance(v, str)), builtin, what)
    clash = sorted(v.name for v in value if isinstance(v, UserCallable) and v.name in builtin)
    if clash:
        raise ValueError(f"{clash}: a {what} of your own needs a name of its own; these are built-in {what} names")
    names = [v if isinstance(v, str) else v.name for v in value]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{what} names listed twice: {twice}")
    return value


def _known(value: tuple[str, ...], allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    unknown = [v for v in value if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; allowed: {', '.join(allowed)}")
    return value
