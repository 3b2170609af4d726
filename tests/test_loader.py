"""Every strategy, and the smart loader's registry, detection and fallback chain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import transformers

import loader
from loader import LoadFailed, ModelRegistry, StrategyUnsupported, load_model
from loader.inspection import shortfall
from loader.strategies.smart import SmartStrategy
from tests.checkpoints import save_llama, save_qwen2_vl


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save_llama(tmp_path_factory.mktemp("llama")))


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save_qwen2_vl(tmp_path_factory.mktemp("qwen2_vl")))


@pytest.mark.parametrize(("strategy", "loaded", "unused"), [
    ("auto_causal_lm", "LlamaForCausalLM", []), ("auto_model", "LlamaModel", ["lm_head.weight"]),
    ("explicit_class", "LlamaForCausalLM", []), ("smart", "LlamaForCausalLM", [])])
def test_text_checkpoint_through_each_strategy(llama_dir: str, strategy: str, loaded: str, unused: list[str]) -> None:
    result = load_model(llama_dir, strategy)
    assert result.loaded_class == loaded and result.strategy == strategy
    assert result.attempts[-1].ok and result.missing_keys == [] and result.unexpected_keys == unused


def test_auto_model_is_headless_and_the_inspection_says_so(llama_dir: str) -> None:
    result = load_model(llama_dir, "auto_model")
    assert "no LM head" in (shortfall(result.model, result.model.config) or "")


def test_causal_lm_class_on_a_vlm_either_refuses_or_drops_the_vision_tower(vlm_dir: str) -> None:
    """The VLM-R1 break: AutoModelForCausalLM on a Qwen2-VL checkpoint never yields the whole model."""
    try:
        result = load_model(vlm_dir, "auto_causal_lm")
    except ValueError as exc:
        assert "Unrecognized configuration class" in str(exc)
    else:
        config = transformers.AutoConfig.from_pretrained(vlm_dir)
        assert shortfall(result.model, config) or result.unexpected_keys


def test_vlm_through_image_text_to_text_and_smart(vlm_dir: str) -> None:
    for strategy in ("auto_image_text_to_text", "explicit_class", "smart"):
        result = load_model(vlm_dir, strategy)
        assert result.loaded_class == "Qwen2VLForConditionalGeneration", strategy


def test_a_class_missing_from_the_release_is_unsupported(vlm_dir: str) -> None:
    """AutoModelForVision2Seq is gone in 5.x; a strategy naming an absent class says so, by release."""
    from loader.strategies.auto import AutoClassStrategy

    with pytest.raises(StrategyUnsupported, match=f"transformers {transformers.__version__} has no AutoModelForTelepathy"):
        AutoClassStrategy("auto_telepathy", "AutoModelForTelepathy").load(vlm_dir)
    if not hasattr(transformers, "AutoModelForVision2Seq"):
        with pytest.raises(StrategyUnsupported):
            load_model(vlm_dir, "auto_vision2seq")


def test_explicit_class_without_architectures_is_unsupported(tmp_path: Path, llama_dir: str) -> None:
    import json
    import shutil

    folder = tmp_path / "no_arch"
    shutil.copytree(llama_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("architectures")
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(StrategyUnsupported, match="architectures is empty"):
        load_model(str(folder), "explicit_class")


def test_unknown_strategy_lists_the_known_ones(llama_dir: str) -> None:
    with pytest.raises(ValueError, match="known: auto_causal_lm, auto_model"):
        load_model(llama_dir, "magic")


def test_smart_tries_the_registry_first(llama_dir: str) -> None:
    class MyLlama(transformers.LlamaForCausalLM):
        pass

    registry = ModelRegistry()
    registry.register("llama", MyLlama)
    result = SmartStrategy(registry=registry).load(llama_dir)
    assert result.loaded_class == "MyLlama" and result.path == "registry:MyLlama"


def test_the_global_register_reaches_load_model(llama_dir: str) -> None:
    class TheirLlama(transformers.LlamaForCausalLM):
        pass

    loader.register(transformers.LlamaConfig, TheirLlama)
    try:
        assert load_model(llama_dir).path == "registry:TheirLlama"
    finally:
        loader.REGISTRY.unregister("llama")
    assert load_model(llama_dir).path == "architectures:LlamaForCausalLM"


def test_smart_skips_a_headless_candidate_and_keeps_why(llama_dir: str) -> None:
    registry = ModelRegistry()
    registry.register("llama", transformers.LlamaModel)
    result = SmartStrategy(registry=registry).load(llama_dir)
    assert result.loaded_class == "LlamaForCausalLM"
    first = result.attempts[0]
    assert first.path == "registry:LlamaModel" and first.error_type == "Unusable" and "no LM head" in (first.message or "")


def test_smart_falls_back_when_the_explicit_class_breaks(vlm_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("planted: this release broke the class")

    monkeypatch.setattr(transformers.Qwen2VLForConditionalGeneration, "from_pretrained", classmethod(broken))
    routes = [route for route, _ in SmartStrategy().routes(transformers.AutoConfig.from_pretrained(vlm_dir))]
    assert routes[0] == "architectures:Qwen2VLForConditionalGeneration" and "auto:AutoModelForImageTextToText" in routes
    with pytest.raises(LoadFailed) as caught:
        SmartStrategy().load(vlm_dir)
    # every route is listed with its own error: the vision routes reach the broken class, the
    # causal-LM route is refused for a VLM config
    attempts = caught.value.attempts
    assert [a.path for a in attempts] == routes
    assert all("planted" in (a.message or "") for a in attempts if "CausalLM" not in a.path)
    assert [a.error_type for a in attempts if "CausalLM" in a.path] == ["ValueError"]


def test_smart_reports_the_route_that_worked_after_failures(vlm_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = ModelRegistry()

    class Broken(transformers.Qwen2VLForConditionalGeneration):
        @classmethod
        def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
            raise OSError("planted: weights unreadable for this class")

    registry.register("qwen2_vl", Broken)
    result = SmartStrategy(registry=registry).load(vlm_dir)
    assert [a.ok for a in result.attempts] == [False, True]
    assert result.attempts[0].error_type == "OSError" and result.path == "architectures:Qwen2VLForConditionalGeneration"
