"""Every tiny model of matrix.yaml builds offline, loads like a hub checkpoint and reproduces its reference."""

from __future__ import annotations

import json

import hashlib
import shutil
from pathlib import Path

import pytest
import torch
import transformers
from safetensors import safe_open

from compat_matrix.spec.schema import ModelEntry, Recipe
from compat_matrix.spec.validate import load_matrix
from compat_tests.tiny import checkpoint as tiny
from compat_tests.tiny.checkpoint import TinyCheckpoint, UnknownModelType, build_checkpoint
from compat_tests.tiny.inputs import InputBuilder
from compat_tests.tiny.processors import load_processor
from compat_tests.tiny.tokenizer import SPECIAL_BASE

TINY = [m for m in load_matrix(check_model_types=False).models
        if m.source == "tiny" and not (m.recipe and m.recipe.remote_code)]
"""Remote-code recipes load only with trust_remote_code and through their twin: tests/test_remote_code.py."""
ENVIRONMENT_LIMITS = ("torchvision", "num2words")
"""Optional packages whose absence some releases turn into an ImportError; anything else fails."""


def _recipe(entry: ModelEntry) -> Recipe:
    assert entry.recipe is not None
    return entry.recipe


def _build(entry: ModelEntry, root: Path) -> TinyCheckpoint:
    """Build, skipping models this release does not know or this environment cannot process."""
    try:
        return build_checkpoint(entry.key, _recipe(entry), entry.modality, cache_root=root)
    except UnknownModelType as error:
        pytest.skip(f"unsupported here: {error}")
    except ImportError as error:
        if not any(name in str(error) for name in ENVIRONMENT_LIMITS):
            raise
        pytest.skip(f"environment: {error}")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module: each checkpoint is built once (about 1-7 s each on 2 cores)."""
    return tmp_path_factory.mktemp("tiny-cache")


@pytest.fixture(params=TINY, ids=[m.key for m in TINY])
def entry(request: pytest.FixtureRequest) -> ModelEntry:
    return request.param


def _file_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _recipe_token_ids(entry: ModelEntry) -> set[int]:
    """Every *_token_id / *_token_index the recipe sets, at any depth."""
    found: set[int] = set()
    stack = [_recipe(entry).config]
    while stack:
        node = stack.pop()
        for name, value in node.items():
            if isinstance(value, dict):
                stack.append(value)
            elif name.endswith(("_token_id", "_token_index")) and name != "pad_token_id":
                found.add(value)
    return found


def test_folder_is_a_hub_style_bf16_checkpoint(entry: ModelEntry, root: Path) -> None:
    ckpt = _build(entry, root)
    names = {p.name for p in ckpt.path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "reference.json", "reference_logits.safetensors"} <= names
    if entry.modality == "image-text":
        assert names & {"preprocessor_config.json", "processor_config.json"}
    assert ckpt.path.parent.name == transformers.__version__
    assert ckpt.path.name == f"{entry.key}-{ckpt.recipe_hash[:12]}"
    with safe_open(str(ckpt.path / "model.safetensors"), framework="pt") as saved:
        assert {saved.get_slice(name).get_dtype() for name in saved.keys()} == {"BF16"}
    reference = ckpt.reference
    assert reference["architecture"] == _recipe(entry).architecture
    assert reference["param_count"] > 0 and reference["state_dict"]
    assert all(not keys for keys in reference["loading_info"].values()), reference["loading_info"]


def test_auto_classes_load_the_folder(entry: ModelEntry, root: Path) -> None:
    ckpt = _build(entry, root)
    config = transformers.AutoConfig.from_pretrained(ckpt.path)
    assert config.architectures == [_recipe(entry).architecture]
    tokenizer = transformers.AutoTokenizer.from_pretrained(ckpt.path)
    ids = tokenizer("the quick brown fox", add_special_tokens=False)["input_ids"]
    assert ids and max(ids) < SPECIAL_BASE
    vocab = tokenizer.get_vocab()
    assert _recipe_token_ids(entry) <= set(vocab.values())
    if entry.modality == "image-text":
        processor, route = load_processor(ckpt.path)
        assert processor.tokenizer.get_vocab() == vocab
        if route == "AutoProcessor":
            assert type(processor).__name__ == ckpt.reference["processor_class"]
        else:
            assert "torchvision" in route and not transformers.utils.is_torchvision_available()


def test_explicit_class_reproduces_reference_logits(entry: ModelEntry, root: Path) -> None:
    ckpt = _build(entry, root)
    model = getattr(transformers, _recipe(entry).architecture).from_pretrained(ckpt.path).float().eval()
    inputs = InputBuilder(ckpt.path, entry.modality)
    batches = {"text": inputs.text()}
    if entry.modality == "image-text":
        batches["image"] = inputs.image_text()
        assert set(inputs.manual(batches["image"])) >= {"input_ids", "attention_mask", "pixel_values"}
    for kind, batch in batches.items():
        with torch.no_grad():
            logits = model(**batch).logits.float()
        assert torch.isfinite(logits).all(), kind
        assert batch["input_ids"][0].tolist() == ckpt.reference["input_ids"][kind]
        torch.testing.assert_close(logits, ckpt.reference_logits(kind), rtol=1e-5, atol=1e-5)
    if entry.modality == "text":
        with pytest.raises(KeyError):
            ckpt.reference_logits("image")


def test_the_image_moves_the_logits_of_every_image_text_model(entry: ModelEntry, root: Path) -> None:
    """A fresh Gemma3 zeroes its image projection: a tiny one built as it comes ignores the image,
    and a dropped or re-initialised vision tower would go unseen (hence fill_zero_matrices)."""
    if entry.modality != "image-text":
        pytest.skip("text-only model")
    ckpt = _build(entry, root)
    model = getattr(transformers, _recipe(entry).architecture).from_pretrained(ckpt.path).float().eval()
    inputs = InputBuilder(ckpt.path, entry.modality)
    with torch.no_grad():
        one = model(**inputs.image_text()).logits
        other = model(**inputs.image_text(image=inputs.image(seed=1))).logits
    assert (one - other).abs().max() > 0.05 * one.abs().max()


def test_same_recipe_same_release_gives_identical_files(entry: ModelEntry, root: Path,
                                                        tmp_path: Path) -> None:
    first = _build(entry, root)
    second = _build(entry, tmp_path)
    assert second.path != first.path and second.recipe_hash == first.recipe_hash
    assert _file_hashes(second.path) == _file_hashes(first.path)


def test_warm_cache_is_read_not_rebuilt(entry: ModelEntry, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = _build(entry, root)
    assert _build(entry, root) is built
    monkeypatch.setattr(tiny, "_BUILT", {})

    def no_build(*args: object) -> None:
        raise AssertionError("rebuilt a checkpoint that is on disk")

    monkeypatch.setattr(tiny, "_build_atomically", no_build)
    again = _build(entry, root)
    assert again == built and again is not built


def test_losing_a_build_race_keeps_the_winner(root: Path, tmp_path: Path) -> None:
    """Two xdist workers may build one folder at once: the second rename fails and is dropped."""
    entry = TINY[0]
    winner = _build(entry, root)
    folder = tmp_path / winner.path.name
    shutil.copytree(winner.path, folder)
    tiny._build_atomically(folder, _recipe(entry), entry.modality, tiny.FAMILIES[_recipe(entry).model_type])
    assert _file_hashes(folder) == _file_hashes(winner.path)
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]


@pytest.mark.parametrize(("model_type", "architecture", "named"), [
    ("no_such_model", "NoSuchForCausalLM", "model_type 'no_such_model'"),
    ("llama", "LlamaForNoSuchTask", "class 'LlamaForNoSuchTask'"),
])
def test_unknown_model_type_or_class_is_reported(model_type: str, architecture: str, named: str,
                                                 tmp_path: Path) -> None:
    recipe = Recipe(model_type=model_type, architecture=architecture)
    with pytest.raises(UnknownModelType, match=f"transformers {transformers.__version__} .*{named}"):
        build_checkpoint("unknown", recipe, "text", cache_root=tmp_path)
    # no checkpoint folder; only the note other releases' cross-release cells read
    [note] = [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(".lock")]  # and the build lock
    assert note.name.endswith(".not-built.json") and json.loads(note.read_text())["status"] == "unsupported"
    assert not any(p.is_dir() and p.name.startswith("unknown-") for p in tmp_path.rglob("*"))


def test_recipe_hash_covers_recipe_and_modality() -> None:
    recipe = Recipe(model_type="llama", architecture="LlamaForCausalLM", config={"hidden_size": 64})
    same = Recipe(model_type="llama", architecture="LlamaForCausalLM", config={"hidden_size": 64})
    other = Recipe(model_type="llama", architecture="LlamaForCausalLM", config={"hidden_size": 32})
    assert tiny.recipe_hash(recipe, "text") == tiny.recipe_hash(same, "text")
    assert tiny.recipe_hash(recipe, "text") != tiny.recipe_hash(other, "text")
    assert tiny.recipe_hash(recipe, "text") != tiny.recipe_hash(recipe, "image-text")


def test_a_family_revision_rebuilds_only_that_familys_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """Llama's tokenizer files changed (model_input_names) without its recipe: its cached checkpoints,
    built with the old tokenizer, must not be reused; other families keep their folders."""
    import dataclasses

    from compat_tests.tiny import families

    llama = Recipe(model_type="llama", architecture="LlamaForCausalLM", config={"hidden_size": 64})
    qwen2 = Recipe(model_type="qwen2", architecture="Qwen2ForCausalLM", config={"hidden_size": 64})
    before = {r.model_type: tiny.recipe_hash(r, "text") for r in (llama, qwen2)}
    revised = dict(families.FAMILIES, llama=dataclasses.replace(families.FAMILIES["llama"], revision=99))
    monkeypatch.setattr(tiny, "FAMILIES", revised)
    assert tiny.recipe_hash(llama, "text") != before["llama"]
    assert tiny.recipe_hash(qwen2, "text") == before["qwen2"]
    unrevised = dict(families.FAMILIES, llama=dataclasses.replace(families.FAMILIES["llama"], revision=0))
    monkeypatch.setattr(tiny, "FAMILIES", unrevised)
    payload = {"recipe": llama.model_dump(mode="json"), "modality": "text", "build_format": tiny.BUILD_FORMAT}
    del payload["recipe"]["remote_code"]  # type: ignore[attr-defined]
    assert tiny.recipe_hash(llama, "text") == hashlib.sha256(
        json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_cache_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COMPAT_MATRIX_CACHE", str(tmp_path))
    assert tiny.cache_root() == tmp_path
    monkeypatch.delenv("COMPAT_MATRIX_CACHE")
    assert tiny.cache_root() == Path.home() / ".cache" / "compat-matrix"


@pytest.mark.parametrize(("key", "override"), [
    ("gemma2", {"attn_logit_softcapping": None}),
    ("gemma2", {"final_logit_softcapping": None}),
    ("gemma2", {"sliding_window": 512}),
    ("mistral", {"sliding_window": None}),
    ("phi3", {"partial_rotary_factor": 1.0}),
])
def test_each_feature_a_text_recipe_exercises_moves_its_logits(key: str, override: dict[str, object],
                                                               root: Path) -> None:
    """A softcap or window the tiny model's logits never reach would let a release that drops it pass
    unseen (Gemma 2's published caps 50 / 30 move them 0% and 0.35%)."""
    entry = next(m for m in TINY if m.key == key)
    ckpt = _build(entry, root)
    arch = getattr(transformers, _recipe(entry).architecture)
    batch = InputBuilder(ckpt.path, entry.modality).text()
    assert batch["input_ids"].shape[1] > (_recipe(entry).config.get("sliding_window") or 0)
    logits = []
    for extra in ({}, override):
        model = arch.from_pretrained(ckpt.path, attn_implementation="eager", **extra).float().eval()
        with torch.no_grad():
            logits.append(model(**batch).logits)
    assert (logits[0] - logits[1]).abs().max() > 0.05 * logits[0].abs().max()
