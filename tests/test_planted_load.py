"""Planted failures the `load` probe must catch, each with the right reason: a deleted LM head,
removed vision-tower weights, silently wrong weights, and a strategy returning a headless model."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

import loader
from compat_matrix.spec.cells import Cell
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix
from compat_tests.execute import MatrixState, Prepared, run_cell
from compat_tests.tiny.checkpoint import build_checkpoint
from compat_tests.tiny.inputs import InputBuilder

MATRIX = load_matrix(DEFAULT_MATRIX, check_model_types=False)


def planted_state(tmp_path: Path, key: str, edit: Callable[[dict[str, Any]], dict[str, Any]]) -> MatrixState:
    """A state whose checkpoint for `key` is the tiny one with its weights passed through `edit`."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig

    entry = MATRIX.model(key)
    assert entry.recipe is not None
    original = build_checkpoint(key, entry.recipe, entry.modality)
    folder = tmp_path / key
    shutil.copytree(original.path, folder)
    weights = folder / "model.safetensors"
    save_file(edit(load_file(weights)), weights, metadata={"format": "pt"})
    checkpoint = dataclasses.replace(original, path=folder)
    state = MatrixState(MATRIX)
    state.checkpoints.prepared[(key, None)] = Prepared(checkpoint, AutoConfig.from_pretrained(folder), InputBuilder(folder, entry.modality))
    return state


def load_cell(state: MatrixState, key: str, strategy: str = "explicit_class") -> dict[str, Any]:
    return run_cell(state, Cell(key, strategy, "default", "load"))


def test_the_untouched_checkpoint_passes(tmp_path: Path) -> None:
    record = load_cell(planted_state(tmp_path, "llama", lambda w: w), "llama")
    assert record["status"] == "pass", record["message"]
    assert record["details"]["rel_diff"] < 1e-3


def test_a_deleted_lm_head_is_caught_as_newly_initialised(tmp_path: Path) -> None:
    state = planted_state(tmp_path, "llama", lambda w: {k: v for k, v in w.items() if "lm_head" not in k})
    record = load_cell(state, "llama")
    assert record["status"] == "fail"
    assert "newly initialised" in record["message"] and "LM head: 1 tensor(s) (lm_head.weight)" in record["message"]
    assert record["details"]["missing_keys"] == ["lm_head.weight"]


def test_removed_vision_tower_weights_are_caught(tmp_path: Path) -> None:
    state = planted_state(tmp_path, "qwen2_vl", lambda w: {k: v for k, v in w.items() if "visual" not in k})
    record = load_cell(state, "qwen2_vl")
    assert record["status"] == "fail"
    assert "newly initialised" in record["message"] and "vision tower:" in record["message"]
    assert "LM head" not in record["message"]


def test_silently_wrong_weights_are_caught_by_the_reference_logits(tmp_path: Path) -> None:
    def scramble(weights: dict[str, Any]) -> dict[str, Any]:
        name = next(k for k in weights if "layers.1.mlp.down_proj" in k)
        weights[name] = weights[name].flip(0).contiguous()
        return weights

    record = load_cell(planted_state(tmp_path, "llama", scramble), "llama")
    assert record["status"] == "fail" and "logits differ from the reference" in record["message"]
    assert record["details"]["rel_diff"] > 1e-2


def test_a_strategy_returning_a_headless_model_fails_with_no_lm_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclasses.dataclass(frozen=True)
    class Headless:
        name: str = "smart"

        def load(self, path: str, **kwargs: Any) -> loader.LoadResult:
            import transformers

            return loader.LoadResult(transformers.LlamaModel.from_pretrained(path), self.name, "planted:LlamaModel")

    monkeypatch.setitem(loader.STRATEGIES, "smart", Headless())
    record = load_cell(planted_state(tmp_path, "llama", lambda w: w), "llama", "smart")
    assert record["status"] == "fail" and "LlamaModel has no LM head" in record["message"]
    assert record["loaded_class"] == "LlamaModel" and record["load_path"] == "planted:LlamaModel"


def test_a_model_that_loads_but_cannot_run_names_the_forward_error(tmp_path: Path) -> None:
    """Planted as 4.57 reads a 5.x Qwen2-VL config: the M-RoPE sections are gone, so the weights load
    and the first forward raises."""
    import json

    state = planted_state(tmp_path, "qwen2_vl", lambda w: w)
    config_file = tmp_path / "qwen2_vl" / "config.json"
    config = json.loads(config_file.read_text())
    for section in (config, config.get("text_config") or {}):
        section.pop("rope_scaling", None)
    config_file.write_text(json.dumps(config))
    record = load_cell(state, "qwen2_vl")
    assert record["status"] == "fail" and record["error_type"] == "TypeError"
    assert record["message"].startswith("Qwen2VLForConditionalGeneration loaded, but a text forward raised TypeError")


def test_a_tokenizer_that_reads_back_with_another_bos_is_named_not_a_shape_error(tmp_path: Path) -> None:
    """Planted as 4.x reads a Phi-3 tokenizer 5.x saved: it prepends bos where the writer did not, so
    the prompt has one more token than the reference logits (a bare shape ValueError before)."""
    import json

    state = planted_state(tmp_path, "phi3", lambda w: w)
    config_file = tmp_path / "phi3" / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["add_bos_token"] = True
    config_file.write_text(json.dumps(config))
    state.checkpoints.prepared[("phi3", None)] = dataclasses.replace(
        state.checkpoints.prepared[("phi3", None)], inputs=InputBuilder(tmp_path / "phi3", "text"))
    record = load_cell(state, "phi3")
    assert record["status"] == "fail" and record["error_type"] == "CheckFailed", record["message"]
    assert "encodes the reference prompt as [991, " in record["message"] and "reads back differently" in record["message"]
