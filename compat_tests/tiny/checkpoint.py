"""Tiny random checkpoints built offline from a recipe, cached per transformers release.

A build writes what a hub checkpoint has (config, bf16 safetensors, tokenizer, processor, chat
template) plus `reference.json` and reference logits of the explicit class in float32, into a
temporary folder renamed into place at the end: a folder that exists is complete, and two
pytest-xdist workers building the same one at once both end up with the same files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compat_matrix.spec.layout import cache_root
from compat_tests.needs import needed_package
from compat_tests.tiny import remote_code
from compat_tests.tiny.families import FAMILIES, Family
from compat_tests.tiny.inputs import InputBuilder
from compat_tests.tiny.tokenizer import build_tokenizer
from loader.kwargs import dtype_keyword

if TYPE_CHECKING:
    import torch

    from compat_matrix.spec.schema import Recipe

BUILD_FORMAT = 4
"""Part of the recipe hash: bump it when a build writes different files for the same recipe
(3: weights drawn with INIT_STD; 4: no all-zero weight matrices)."""

INIT_STD = 0.1
"""`initializer_range` of every tiny model unless its recipe sets one. Transformers' default 0.02
gives near-uniform logits, so a decode step at the wrong position moved GRPO log-probs by 2e-3 in
bf16, under the 7e-3 bf16 tolerance: missed on a GPU. Measured on CPU in bf16 (tiny Llama and
Qwen2-VL, planted one-position shift): 0.1 gives 0.25-0.53 for the shift against tolerance
0.024-0.029 and 0.008-0.016 for clean runs; 0.2 leaves clean runs within 2x of the tolerance."""


def fill_zero_matrices(model: Any) -> None:
    """Draw every weight matrix the model's init left all zero from N(0, INIT_STD), and open every
    scalar gate it left shut (1.0: tanh(1) = 0.76).

    Some inits zero a projection or a gate on purpose (Gemma3's mm_input_projection_weight, Mllama's
    cross-attention gates), which trained checkpoints never have: a fresh tiny Gemma3 or Mllama then
    ignores its image entirely, and no probe could see a vision tower dropped or re-initialised. A gate
    drawn like a weight (about 0.1) lets the image move Mllama's logits by only 4%.
    Vectors (biases, norm offsets) stay as they are."""
    import torch

    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.is_floating_point() or parameter.any():
                continue
            if parameter.dim() >= 2:
                parameter.normal_(0.0, INIT_STD)
            elif parameter.numel() == 1:
                parameter.fill_(1.0)


def with_init_std(config: dict[str, Any]) -> dict[str, Any]:
    """The recipe config with `initializer_range` = INIT_STD at the top and in `text_config`
    (composite models read one or the other, depending on the release), where it is unset."""
    out = {"initializer_range": INIT_STD, **config}
    if isinstance(config.get("text_config"), dict):
        out["text_config"] = {"initializer_range": INIT_STD, **config["text_config"]}
    return out


CONTENT_HASHES = "content.sha256.json"
"""sha256 of every file of a built folder, written last: a truncated or edited file is found on
the next open and the folder rebuilt (a folder from before this file gets it on first open)."""

REFERENCE_JSON = "reference.json"
REFERENCE_LOGITS = "reference_logits.safetensors"

NOT_BUILT_SUFFIX = ".not-built.json"
"""Beside a folder that could not be built: why (`unsupported` or `skipped`), for other releases'
cross-release cells, which otherwise could not tell "this release predates the model" from
"this release's cells did not run here"."""


def not_built_note(folder: Path) -> Path:
    """Where the note for `folder` lives (beside it, so a cache wipe takes both)."""
    return folder.with_name(folder.name + NOT_BUILT_SUFFIX)


class UnknownModelType(Exception):
    """The installed transformers does not know recipe.model_type or recipe.architecture (message says which and which release)."""


@dataclass(frozen=True)
class TinyCheckpoint:
    """A built checkpoint folder and what was recorded when it was built."""

    key: str
    """Model entry key."""
    path: Path
    """Folder: config.json, model.safetensors, tokenizer/processor files, reference files."""
    recipe_hash: str
    """sha256 of the canonical JSON of the recipe, modality and BUILD_FORMAT."""
    transformers_version: str
    """Release that built it."""
    reference: dict[str, Any]
    """reference.json: architecture, param_count, dtype saved, state_dict shapes, loading info, inputs."""

    def reference_logits(self, kind: str) -> torch.Tensor:
        """Float32 CPU logits of the explicit class at build time; kind `text` or `image` (image-text only)."""
        from safetensors.torch import load_file

        logits = load_file(self.path / REFERENCE_LOGITS)
        if kind not in logits:
            raise KeyError(f"{self.key} has no {kind!r} reference logits; it has {sorted(logits)}")
        return logits[kind]


_default_root = cache_root
"""`build_checkpoint`'s `cache_root` argument hides the function of that name."""


def tiny_folder(root: Path, release: str, key: str, digest: str) -> Path:
    """The folder of the tiny checkpoint that `release` builds for a model entry (`digest`: `recipe_hash`)."""
    return root / "tiny" / release / f"{key}-{digest[:12]}"


def recipe_hash(recipe: Recipe, modality: str) -> str:
    dumped = recipe.model_dump(mode="json")
    if recipe.remote_code is None:
        del dumped["remote_code"]  # recipes without it keep the hashes (and cached folders) they had
    else:
        dumped["remote_code"]["files"] = remote_code.source_digest(recipe.remote_code.sources)
    payload: dict[str, Any] = {"recipe": dumped, "modality": modality, "build_format": BUILD_FORMAT}
    family = FAMILIES.get(recipe.model_type)
    if family is not None and family.revision:
        payload["family_revision"] = family.revision  # families never revised keep their hashes and folders
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


_BUILT: dict[Path, TinyCheckpoint] = {}
"""Checkpoints this process has built or opened, by folder."""


class CheckpointRebuilt(UserWarning):
    """A cached tiny checkpoint no longer matched its content hashes and was built again."""


def content_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` but the hash file itself, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != CONTENT_HASHES}


def changed_files(folder: Path) -> list[str]:
    """Files that differ from the hashes recorded at build (added, missing or edited); records
    the hashes first where none were recorded."""
    recorded_file = folder / CONTENT_HASHES
    now = content_hashes(folder)
    if not recorded_file.is_file():
        recorded_file.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
        return []
    try:
        recorded = json.loads(recorded_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return [CONTENT_HASHES]
    return sorted(name for name in recorded.keys() | now.keys() if recorded.get(name) != now.get(name))


def _discard(folder: Path) -> None:
    """Move a bad folder out of the way in one step, then delete it."""
    doomed = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.bad"
    os.rename(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def building(folder: Path, what: str = "tiny checkpoint") -> Any:
    """The folder's build lock, held (release it); a process that finds it held says what (`what`) it waits for."""
    from filelock import FileLock, Timeout

    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{folder.parent / ('.' + folder.name)}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"waiting for {what} {folder}: another process is building or checking it",
              file=sys.__stderr__, flush=True)
        lock.acquire()
    return lock


def build_checkpoint(key: str, recipe: Recipe, modality: str, cache_root: Path | None = None) -> TinyCheckpoint:
    """The checkpoint for this recipe in the installed release: from memory, from disk, or built now."""
    import transformers

    version = transformers.__version__
    digest = recipe_hash(recipe, modality)
    root = Path(cache_root) if cache_root is not None else _default_root()
    folder = tiny_folder(root, version, key, digest)
    if folder not in _BUILT:
        lock = building(folder)
        try:
            _check_or_build(folder, recipe, modality, version)
        finally:
            lock.release()
        reference = json.loads((folder / REFERENCE_JSON).read_text())
        _BUILT[folder] = TinyCheckpoint(key, folder, digest, version, reference)
    return _BUILT[folder]


def _check_or_build(folder: Path, recipe: Recipe, modality: str, version: str) -> None:
    """A cached folder whose files changed since the build is discarded, saying so; then build if absent."""
    if (folder / REFERENCE_JSON).is_file():
        changed = changed_files(folder)
        if changed:
            message = (f"tiny checkpoint {folder}: {', '.join(changed)} changed since it was built (content hash "
                       f"in {CONTENT_HASHES}); rebuilding it")
            print(message, file=sys.__stderr__, flush=True)
            warnings.warn(message, CheckpointRebuilt, stacklevel=3)
            _discard(folder)
    if (folder / REFERENCE_JSON).is_file():
        return
    try:
        _build_atomically(folder, recipe, modality, _family(recipe, version))
    except UnknownModelType as exc:
        _write_note(folder, {"status": "unsupported", "reason": str(exc)})
        raise
    except Exception as exc:
        need = needed_package(exc)
        if need is not None:
            _write_note(folder, {"status": "skipped", "reason": f"needs {need.package}: {need.why}",
                                 "needs": need.package})
        raise
    not_built_note(folder).unlink(missing_ok=True)


def _write_note(folder: Path, note: dict[str, str]) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    not_built_note(folder).write_text(json.dumps(note))


def _family(recipe: Recipe, version: str) -> Family:
    """The family, after checking that this release knows the model_type and the class."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if recipe.remote_code:  # the remote code brings its model_type and class; the twin must exist here
        if not hasattr(transformers, recipe.remote_code.twin):
            raise UnknownModelType(f"transformers {version} has no class {recipe.remote_code.twin!r} "
                                   f"(the twin of remote code {recipe.remote_code.sources!r})")
    elif recipe.model_type not in CONFIG_MAPPING_NAMES:
        raise UnknownModelType(f"transformers {version} does not know model_type {recipe.model_type!r}")
    elif not hasattr(transformers, recipe.architecture):
        raise UnknownModelType(f"transformers {version} has no class {recipe.architecture!r} "
                               f"(model_type {recipe.model_type!r})")
    if recipe.model_type not in FAMILIES:
        raise ValueError(f"no tiny tokenizer/processor for model_type {recipe.model_type!r}; "
                         f"add it to compat_tests/tiny/families.py (known: {', '.join(FAMILIES)})")
    return FAMILIES[recipe.model_type]


def _build_atomically(folder: Path, recipe: Recipe, modality: str, family: Family) -> None:
    temporary = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.tmp"
    temporary.mkdir(parents=True)
    try:
        _write(temporary, recipe, modality, family)
        try:
            os.rename(temporary, folder)
        except OSError:
            if not (folder / REFERENCE_JSON).is_file():
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _config_kwargs(recipe: Recipe, family: Family) -> dict[str, Any]:
    """Recipe config plus the tokenizer's bos/eos/pad ids wherever the recipe leaves them unset.

    Default ids (Llama bos=1, eos=2) would be ordinary tokens of the tiny vocabulary, so
    `generate` would stop on them; real checkpoints carry their tokenizer's ids.
    """
    spec = family.tokenizer
    ids = spec.token_ids()
    roles = {"bos": spec.roles.get("bos_token") or spec.config_bos, "eos": spec.roles.get("eos_token"),
             "pad": spec.roles.get("pad_token")}
    special = {f"{role}_token_id": ids[token] for role, token in roles.items() if token}
    config = with_init_std(recipe.config)
    kwargs = {**special, **config}
    if isinstance(config.get("text_config"), dict):
        kwargs["text_config"] = {**special, **config["text_config"]}
    return kwargs


def _write(folder: Path, recipe: Recipe, modality: str, family: Family) -> None:
    import torch
    import transformers

    kwargs = _config_kwargs(recipe, family)
    model_class: Any
    if recipe.remote_code:
        model_class, config = remote_code.twin(recipe, kwargs)
    else:
        config = transformers.AutoConfig.for_model(recipe.model_type, **kwargs)
        config.architectures = [recipe.architecture]
        model_class = getattr(transformers, recipe.architecture)
    tokenizer = build_tokenizer(family.tokenizer, family.chat_template)
    processor, side = None, None
    if modality == "image-text":
        if family.processor is None or recipe.remote_code:
            raise ValueError(f"model_type {recipe.model_type!r} has no processor builder for image-text")
        processor, side = family.processor(tokenizer, config)
    torch.manual_seed(recipe.seed)
    model = model_class(config)
    fill_zero_matrices(model)
    model = model.to(getattr(torch, recipe.dtype))
    model.save_pretrained(folder, safe_serialization=True)
    if recipe.remote_code:
        remote_code.ship(folder, recipe, kwargs)
    (processor or tokenizer).save_pretrained(folder)
    _record_reference(folder, recipe, modality, side, model_class, config if recipe.remote_code else None)
    (folder / CONTENT_HASHES).write_text(json.dumps(content_hashes(folder), indent=1, sort_keys=True) + "\n")


def _record_reference(folder: Path, recipe: Recipe, modality: str, side: int | None, model_class: Any,
                      twin_config: Any = None) -> None:
    """Load the folder back with the explicit class (a remote recipe's twin, given its own config,
    since config.json is the remote code's) in float32 and record what a good load gives."""
    import torch
    import transformers
    from safetensors import safe_open
    from safetensors.torch import save_file

    extra = {"config": twin_config} if twin_config is not None else {}
    extra[dtype_keyword(transformers.__version__)] = torch.float32
    model, info = model_class.from_pretrained(folder, output_loading_info=True, **extra)
    model.eval()
    inputs = InputBuilder(folder, modality, image_size=side)
    batches = {"text": inputs.text()}
    if modality == "image-text":
        batches["image"] = inputs.image_text()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the logits' bits, and so the files, must not depend on the caller's threads
    try:
        with torch.no_grad():
            logits = {kind: model(**batch).logits.float().contiguous() for kind, batch in batches.items()}
    finally:
        torch.set_num_threads(threads)
    save_file(logits, str(folder / REFERENCE_LOGITS))
    with safe_open(str(folder / "model.safetensors"), framework="pt") as saved:
        saved_tensors = {name: list(saved.get_slice(name).get_shape()) for name in sorted(saved.keys())}
    reference = {
        "build_format": BUILD_FORMAT,
        "model_type": recipe.model_type,
        "architecture": recipe.architecture,
        "modality": modality,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "dtype_saved": recipe.dtype,
        "param_count": sum(p.numel() for p in model.parameters()),
        "state_dict": {name: list(t.shape) for name, t in model.state_dict().items()},
        "saved_tensors": saved_tensors,
        "loading_info": {k: sorted(str(item) for item in v) for k, v in info.items()},
        "tokenizer_class": type(inputs.tokenizer).__name__,
        "processor_class": type(inputs.processor).__name__ if inputs.processor is not None else None,
        "processor_route": inputs.processor_route,
        "image_size": side,
        "input_ids": {kind: batch["input_ids"][0].tolist() for kind, batch in batches.items()},
    }
    if twin_config is not None:
        reference["reference_class"] = model_class.__name__
    (folder / REFERENCE_JSON).write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")
