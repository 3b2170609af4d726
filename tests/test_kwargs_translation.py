"""`smart` makes one call work on every release: keyword arguments translated and recorded."""

from __future__ import annotations

import pytest
import torch
import transformers

from loader import load_model
from loader.kwargs import translate
from tests.checkpoints import save_llama, save_qwen2_vl

TRAINER_CALL = {"dtype": torch.bfloat16, "use_cache": False, "attn_implementation": "sdpa"}
"""What training code passes on every release (issue 14)."""


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save_qwen2_vl(tmp_path_factory.mktemp("qwen2_vl")))


@pytest.mark.parametrize(("version", "kept", "renamed"), [("4.49.0", "torch_dtype", "dtype"), ("4.55.4", "torch_dtype", "dtype"),
                                                          ("4.56.0", "dtype", "torch_dtype"), ("5.24.0", "dtype", "torch_dtype")])
def test_the_dtype_keyword_is_the_one_the_release_reads(vlm_dir: str, version: str, kept: str, renamed: str) -> None:
    config = transformers.AutoConfig.from_pretrained(vlm_dir)
    translation = translate({renamed: torch.bfloat16, "attn_implementation": "sdpa"}, config, version)
    assert translation.kwargs == {kept: torch.bfloat16, "attn_implementation": "sdpa"}
    assert translation.notes == [f"{renamed} -> {kept} (transformers {version} reads {kept})"]


def test_use_cache_goes_to_the_config_and_its_text_config_not_to_init(vlm_dir: str) -> None:
    config = transformers.AutoConfig.from_pretrained(vlm_dir)
    translation = translate({"use_cache": False, "trust_remote_code": False}, config, transformers.__version__)
    passed = translation.kwargs.pop("config")
    assert translation.kwargs == {"trust_remote_code": False}
    assert passed.use_cache is False and passed.get_text_config().use_cache is False
    assert config.get_text_config().use_cache is not False, "the checkpoint's own config object was changed"
    assert any(note.startswith("use_cache=False set on the config") for note in translation.notes)


def test_a_caller_given_config_is_left_alone(vlm_dir: str) -> None:
    config = transformers.AutoConfig.from_pretrained(vlm_dir)
    translation = translate({"use_cache": False, "config": config}, config, transformers.__version__)
    assert translation.kwargs == {"use_cache": False, "config": config} and translation.notes == []


def test_smart_loads_the_trainer_call_and_records_what_it_changed(vlm_dir: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    for folder in (vlm_dir, str(save_llama(tmp_path_factory.mktemp("llama")))):
        result = load_model(folder, "smart", **TRAINER_CALL)
        assert next(result.model.parameters()).dtype == torch.bfloat16
        assert result.model.config.get_text_config().use_cache is False
        assert any("use_cache=False" in note for note in result.translations), result.translations


def test_the_other_strategies_pass_the_call_through_untouched(vlm_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted: a release that reads only `torch_dtype` (as before 4.56) sees `dtype` from a raw strategy."""
    seen: dict[str, object] = {}
    real = transformers.Qwen2VLForConditionalGeneration.from_pretrained

    def spy(path: str, **kwargs: object) -> object:
        seen.update(kwargs)
        return real(path, **kwargs)

    monkeypatch.setattr(transformers.Qwen2VLForConditionalGeneration, "from_pretrained", spy)
    result = load_model(vlm_dir, "explicit_class", dtype=torch.bfloat16, attn_implementation="sdpa")
    assert seen["dtype"] == torch.bfloat16 and "torch_dtype" not in seen and result.translations == []
