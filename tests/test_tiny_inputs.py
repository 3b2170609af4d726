"""InputBuilder: short fixed CPU inputs through the checkpoint's own tokenizer, template and processor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compat_matrix.spec.validate import load_matrix
from compat_tests.tiny.checkpoint import TinyCheckpoint, build_checkpoint
from compat_tests.tiny.families import FAMILIES
from compat_tests.tiny.inputs import MANUAL_KEYS, InputBuilder
from compat_tests.tiny.tokenizer import SPECIAL_BASE

MATRIX = load_matrix(check_model_types=False)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TinyCheckpoint]:
    """A text model, a Qwen-style VLM and a template-less VLM: about 5 s of builds, once."""
    root = tmp_path_factory.mktemp("tiny-inputs")
    built = {}
    for key in ("llama", "qwen2_5_vl", "paligemma"):
        entry = MATRIX.model(key)
        assert entry.recipe is not None
        built[key] = build_checkpoint(key, entry.recipe, entry.modality, cache_root=root)
    return built


def _builder(checkpoints: dict[str, TinyCheckpoint], key: str) -> InputBuilder:
    return InputBuilder(checkpoints[key].path, MATRIX.model(key).modality)


def test_text_is_short_batch_one_and_plain(checkpoints: dict[str, TinyCheckpoint]) -> None:
    inputs = _builder(checkpoints, "llama")
    batch = inputs.text()
    assert set(batch) == {"input_ids", "attention_mask"}
    assert batch["input_ids"].shape == (1, 5) and batch["input_ids"].device.type == "cpu"
    assert batch["input_ids"][0, 0].item() == inputs.tokenizer.bos_token_id
    assert inputs.processor is None
    assert inputs.text("hello world")["input_ids"].shape[1] == 3


def test_prompts_are_distinct_and_plain_text(checkpoints: dict[str, TinyCheckpoint]) -> None:
    inputs = _builder(checkpoints, "llama")
    prompts = inputs.prompts(12)
    assert len(set(prompts)) == 12 and prompts[:2] == inputs.prompts(2)
    for prompt in prompts:
        ids = inputs.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert max(ids) < SPECIAL_BASE and len(ids) <= 8


def test_special_ids_come_from_the_tokenizer(checkpoints: dict[str, TinyCheckpoint]) -> None:
    inputs = _builder(checkpoints, "llama")
    ids = FAMILIES["llama"].tokenizer.token_ids()
    assert inputs.eos_token_id == ids["<|eot_id|>"]
    assert inputs.pad_token_id == ids["<|finetune_right_pad_id|>"]
    config = (checkpoints["llama"].path / "config.json").read_text()
    assert f'"eos_token_id": {inputs.eos_token_id}' in config


def test_image_is_deterministic_at_the_processor_size(checkpoints: dict[str, TinyCheckpoint]) -> None:
    inputs = _builder(checkpoints, "qwen2_5_vl")
    assert inputs.image().size == (56, 56) and inputs.image().mode == "RGB"
    assert inputs.image(0).tobytes() == inputs.image(0).tobytes() != inputs.image(1).tobytes()


def test_image_text_goes_through_the_chat_template(checkpoints: dict[str, TinyCheckpoint]) -> None:
    inputs = _builder(checkpoints, "qwen2_5_vl")
    text = inputs.chat_text("count the trees")
    assert text.endswith("<|im_start|>assistant\n") and "<|image_pad|>" in text
    batch = inputs.image_text("count the trees")
    grid = batch["image_grid_thw"]
    assert grid.tolist() == [[1, 4, 4]]
    image_tokens = (batch["input_ids"] == 990).sum().item()
    assert image_tokens == grid.prod().item() // 4
    manual = inputs.manual(batch)
    assert set(manual) <= set(MANUAL_KEYS) and {"input_ids", "pixel_values", "image_grid_thw"} <= set(manual)
    assert all(isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in batch.values())


def test_template_less_processor_gets_image_token_then_prompt(checkpoints: dict[str, TinyCheckpoint]) -> None:
    inputs = _builder(checkpoints, "paligemma")
    assert inputs.chat_text("name one color") == "<image>name one color"
    batch = inputs.image_text("name one color")
    assert (batch["input_ids"] == 990).sum().item() == 4
    # 5.x returns token_type_ids (and labels) without a suffix, 4.x only with one.
    assert ("token_type_ids" in inputs.manual(batch)) == ("token_type_ids" in batch)
    assert "labels" not in inputs.manual(batch)


def test_text_checkpoint_has_no_image_inputs(checkpoints: dict[str, TinyCheckpoint]) -> None:
    with pytest.raises(ValueError, match="no processor"):
        _builder(checkpoints, "llama").image_text()


def test_hub_folder_without_reference_uses_default_image_size(checkpoints: dict[str, TinyCheckpoint],
                                                              tmp_path: Path) -> None:
    folder = tmp_path / "hub-like"
    folder.mkdir()
    for path in checkpoints["qwen2_5_vl"].path.iterdir():
        if not path.name.startswith("reference"):
            (folder / path.name).write_bytes(path.read_bytes())
    inputs = InputBuilder(folder, "image-text")
    assert inputs.image().size == (224, 224)
    assert inputs.image_text()["image_grid_thw"].tolist() == [[1, 4, 4]]


IMAGE_PLACEHOLDERS = {"idefics3": "<image>", "mllama": "<|image|>", "internvl": "<IMG_CONTEXT>"}
"""The token each family's chat template writes where the image goes; the processor expands it."""


@pytest.fixture(scope="module")
def image_text_families(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TinyCheckpoint]:
    """Idefics3, Mllama and InternVL, each with its own processor layout: about 6 s of builds, once."""
    root = tmp_path_factory.mktemp("tiny-families")
    built = {}
    for key in IMAGE_PLACEHOLDERS:
        entry = MATRIX.model(key)
        assert entry.recipe is not None
        built[key] = build_checkpoint(key, entry.recipe, entry.modality, cache_root=root)
    return built


def _explicit_model(checkpoint: TinyCheckpoint) -> torch.nn.Module:
    import transformers

    return getattr(transformers, checkpoint.reference["architecture"]).from_pretrained(checkpoint.path).float().eval()


@pytest.mark.parametrize("key", sorted(IMAGE_PLACEHOLDERS))
def test_new_family_processor_fills_the_image_tokens_its_model_reads(image_text_families: dict[str, TinyCheckpoint],
                                                                      key: str) -> None:
    """One forward per family: the template's placeholder becomes the image tokens the vision tower fills
    (a count that disagrees with the model makes the forward raise), and the image moves the logits."""
    inputs = InputBuilder(image_text_families[key].path, "image-text")
    assert IMAGE_PLACEHOLDERS[key] in inputs.chat_text()
    batch = inputs.image_text()
    assert (batch["input_ids"] == 990).sum().item() >= 1
    assert "token_type_ids" not in batch
    model = _explicit_model(image_text_families[key])
    with torch.no_grad():
        one = model(**batch).logits
        other = model(**inputs.image_text(image=inputs.image(seed=1))).logits
    assert one.shape[:2] == batch["input_ids"].shape and torch.isfinite(one).all()
    assert not torch.allclose(one, other)


def test_mllama_hand_passed_inputs_are_its_whole_image_input(image_text_families: dict[str, TinyCheckpoint]) -> None:
    """Planted: without aspect_ratio_ids the forward raises, without cross_attention_mask the logits move;
    the hand-passed subset keeps both and gives the full set's logits."""
    inputs = InputBuilder(image_text_families["mllama"].path, "image-text")
    batch = inputs.image_text()
    manual = inputs.manual(batch)
    assert {"aspect_ratio_ids", "aspect_ratio_mask", "cross_attention_mask"} <= set(manual)
    assert batch["cross_attention_mask"].shape[:2] == batch["input_ids"].shape
    model = _explicit_model(image_text_families["mllama"])
    with torch.no_grad():
        full = model(**batch).logits
        torch.testing.assert_close(model(**manual).logits, full)
        unmasked = model(**{k: v for k, v in manual.items() if k != "cross_attention_mask"}).logits
        assert not torch.allclose(unmasked, full, rtol=1e-4, atol=1e-4)
        with pytest.raises(ValueError, match="aspect_ratio_ids"):
            model(**{k: v for k, v in manual.items() if k != "aspect_ratio_ids"})
