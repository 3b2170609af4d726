"""Drift records and their comparison, with planted changes in one process standing in for two
releases: a position computation changed, a vision-side change, a no-op refactor, an unreadable
checkpoint. The comparison must flag the first two, name where each starts, and stay quiet on the third."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

import loader
from compat_matrix.spec.validate import load_matrix
from compat_tests.drift_record import record_model
from compat_tests.tiny.checkpoint import build_checkpoint
from reports.drift import compare_records, drift_table, locate

MATRIX = load_matrix(check_model_types=False)


@pytest.fixture(scope="module")
def qwen2_vl(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    entry = MATRIX.model("qwen2_vl")
    assert entry.recipe is not None
    return entry, build_checkpoint(entry.key, entry.recipe, entry.modality, cache_root=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def baseline(qwen2_vl: tuple[Any, Any]) -> dict[str, Any]:
    return record_model(*qwen2_vl)


def _modeling(record: dict[str, Any], fragment: str) -> type:
    """The class of the first recorded module whose path ends in `fragment` (found where this
    release defines it, so the plant follows the release's own names)."""
    name = next(c["class"] for c in record["modules"]["image"] if c["path"].endswith(fragment))
    from transformers.models.qwen2_vl import modeling_qwen2_vl

    return getattr(modeling_qwen2_vl, name)


def test_a_release_agrees_with_itself(qwen2_vl: tuple[Any, Any], baseline: dict[str, Any]) -> None:
    again = compare_records(baseline, record_model(*qwen2_vl))
    assert again.status == "same", again.describe()
    assert "processor outputs identical" in again.describe()
    assert baseline["position_ids"]["shape"][0] == 3  # Qwen2-VL's 3-D rope index is recorded


def test_planted_position_change_is_drift_starting_at_the_rotary_embedding(
        qwen2_vl: tuple[Any, Any], baseline: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    owner = next(cls for cls in (transformers.Qwen2VLModel, transformers.Qwen2VLForConditionalGeneration)
                 if "get_rope_index" in vars(cls))
    original = owner.get_rope_index

    def doubled_time_axis(self: Any, *args: Any, **kwargs: Any) -> Any:
        position_ids, deltas = original(self, *args, **kwargs)
        if kwargs.get("image_grid_thw", args[1] if len(args) > 1 else None) is not None:
            position_ids = torch.cat([position_ids[:1] * 2, position_ids[1:]])
        return position_ids, deltas

    monkeypatch.setattr(owner, "get_rope_index", doubled_time_axis)
    comparison = compare_records(baseline, record_model(*qwen2_vl))
    text = comparison.describe()
    assert comparison.status == "drift", text
    assert "image+text logits differ" in text and "text-only logits identical" in text
    assert "processor outputs identical" in text and "position ids differ" in text
    (image,) = comparison.divergences
    assert image.first is not None and image.first.endswith("rotary_emb"), text
    assert "visual" in dict(image.agree), text  # the vision tower runs before and is untouched
    assert "first difference at" in text and "vision tower (visual) identical" in text
    assert "rotary_emb" in drift_table([comparison])


def test_planted_vision_change_names_the_vision_tower(
        qwen2_vl: tuple[Any, Any], baseline: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    patch_embed = _modeling(baseline, "patch_embed")
    original = patch_embed.forward
    monkeypatch.setattr(patch_embed, "forward", lambda self, *a, **k: original(self, *a, **k) * 1.5)
    comparison = compare_records(baseline, record_model(*qwen2_vl))
    assert comparison.status == "drift"
    (image,) = comparison.divergences
    assert image.first is not None and image.first.endswith("visual.patch_embed"), image.describe()
    assert "visual" not in dict(image.agree)
    assert "text-only logits identical" in comparison.describe()


@pytest.mark.parametrize("module", ["embed_tokens", "lm_head"])
def test_planted_weight_change_names_the_module_that_holds_it(
        qwen2_vl: tuple[Any, Any], baseline: dict[str, Any], monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """A release that loads, ties or re-initialises the token embeddings or the head differently:
    the first difference is that module, not the next layer that merely receives its output."""
    load = loader.load_model

    def nudged(*args: Any, **kwargs: Any) -> Any:
        result = load(*args, **kwargs)
        with torch.no_grad():
            getter = "get_input_embeddings" if module == "embed_tokens" else "get_output_embeddings"
            getattr(result.model, getter)().weight.mul_(1.5)
        return result

    monkeypatch.setattr(loader, "load_model", nudged)
    comparison = compare_records(baseline, record_model(*qwen2_vl))
    assert comparison.status == "drift", comparison.describe()
    for where in comparison.divergences:
        assert where.first is not None and where.first.endswith(module), where.describe()


class PassThrough(torch.nn.Module):
    """A level a refactor adds around a layer (named `model`, as releases do)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.model = inner

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)


def test_planted_noop_refactor_is_not_drift(
        qwen2_vl: tuple[Any, Any], baseline: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    load = loader.load_model
    called = next(c["path"] for c in baseline["modules"]["image"] if c["path"].endswith("rotary_emb"))

    def refactored(*args: Any, **kwargs: Any) -> Any:
        result = load(*args, **kwargs)
        model = result.model
        model.lm_head = PassThrough(model.lm_head)
        rotary = model.get_submodule(called)
        rotary.__class__ = type("RenamedRotaryEmbedding", (type(rotary),), {})
        return result

    monkeypatch.setattr(loader, "load_model", refactored)
    after = record_model(*qwen2_vl)
    assert any(c["class"] == "RenamedRotaryEmbedding" for c in after["modules"]["image"])
    comparison = compare_records(baseline, after)
    assert comparison.status == "same", comparison.describe()
    where = locate("image", baseline["modules"]["image"], after["modules"]["image"], 1e-4)
    assert where.first is None and where.matched == len(baseline["modules"]["image"])
    # the head is traced (get_output_embeddings): the wrapper now stands where the Linear stood
    assert where.unmatched_after == ()


def test_paths_that_cannot_be_matched_are_said_so(baseline: dict[str, Any]) -> None:
    calls = baseline["modules"]["image"]
    renamed = [{**c, "path": f"other{i}.{c['path']}", "shape": [[-1]]} for i, c in enumerate(calls)]
    where = locate("image", calls, renamed, 1e-4)
    assert where.matched == 0 and "no module could be matched" in where.describe()


def test_unreadable_checkpoint_is_not_drift(qwen2_vl: tuple[Any, Any], baseline: dict[str, Any],
                                            tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    entry, checkpoint = qwen2_vl
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint.path, broken)
    tensors = load_file(broken / "model.safetensors")
    dropped = next(name for name in tensors if "visual" in name)
    save_file({k: v for k, v in tensors.items() if k != dropped}, str(broken / "model.safetensors"),
              metadata={"format": "pt"})
    after = record_model(entry, type(checkpoint)(checkpoint.key, broken, checkpoint.recipe_hash,
                                                 checkpoint.transformers_version, checkpoint.reference))
    assert after["status"] == "unreadable" and "newly initialised" in after["reason"]
    comparison = compare_records(baseline, after)
    assert comparison.status == "unreadable"
    assert "cannot read the checkpoint (not drift)" in comparison.describe()


class Doubled(torch.nn.Module):
    """A module of a model's own code (not torch's): traced."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def test_tracing_skips_torchs_own_leaves_and_leaves_no_hooks() -> None:
    from compat_tests.fingerprint import ModuleTrace

    model = torch.nn.Sequential(torch.nn.Embedding(4, 2), torch.nn.Linear(2, 3), Doubled(), torch.nn.ReLU())
    with ModuleTrace(model) as trace:
        model(torch.ones(1, 2, dtype=torch.long))
    # Linear and ReLU compute alike wherever torch is the same; an embedding's weights may not be
    assert [c["path"] for c in trace.calls] == ["0", "2", ""]
    assert not any(m._forward_hooks for m in model.modules())


def test_a_release_without_a_record_is_said_and_bridged(baseline: dict[str, Any]) -> None:
    """5.4.0 cannot run Qwen2-VL here (its image processor wants torchvision): its row says so,
    and 5.5.0 is compared with the last release that had a record, not left out."""
    from compat_matrix.run.drift import adjacent

    skipped = {"model": "qwen2_vl", "transformers": "5.4.0", "status": "skipped", "reason": "needs torchvision"}
    records = {"5.3.0": {"qwen2_vl": {**baseline, "transformers": "5.3.0"}}, "5.4.0": {"qwen2_vl": skipped},
               "5.5.0": {"qwen2_vl": {**baseline, "transformers": "5.5.0"}}}
    rows = adjacent(records, ["qwen2_vl"])
    assert [(r.before, r.after, r.status) for r in rows] == [("5.3.0", "5.4.0", "not compared"),
                                                            ("5.3.0", "5.5.0", "same")]
    assert "skipped: needs torchvision" in rows[0].describe()


def _call(path: str, value: float, cls: str = "Module") -> dict[str, Any]:
    return {"path": path, "shape": [[1, 4, 64]], "class": cls, "stats": [[value, value, value]]}


def test_a_mixture_of_experts_block_is_matched_across_the_fused_layout_and_mixtrals_rename() -> None:
    """4.x runs Mixtral's `block_sparse_moe` with one module per expert; 5.x runs `mlp` with a router
    module and one fused `experts`: the block and its layer pair up, the experts are listed unmatched."""
    per_expert = [_call("model.layers.0.self_attn", 1.0), _call("model.layers.0.block_sparse_moe.experts.0", 2.0),
                  _call("model.layers.0.block_sparse_moe.experts.3", 3.0), _call("model.layers.0.block_sparse_moe", 4.0),
                  _call("model.layers.0", 5.0)]
    fused = [_call("model.layers.0.self_attn", 1.0), _call("model.layers.0.mlp.gate", 9.0),
             _call("model.layers.0.mlp.experts", 9.0), _call("model.layers.0.mlp", 4.5, "MixtralSparseMoeBlock"),
             _call("model.layers.0", 5.5)]
    where = locate("text", per_expert, fused, 1e-4)
    assert where.matched == 3 and where.first == "model.layers.0.mlp" and where.first_class == "MixtralSparseMoeBlock"
    assert where.unmatched_before == ("model.layers.0.block_sparse_moe.experts.0", "model.layers.0.block_sparse_moe.experts.3")
    assert where.unmatched_after == ("model.layers.0.mlp.gate", "model.layers.0.mlp.experts")


def test_a_tiny_build_that_fails_is_an_error_record_naming_the_exception_the_store_keeps(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The build's exception type goes in the record (`build_error`), so the store can keep a build this release
    cannot do; the recording's other errors carry none (`compat_matrix.run.drift.storable_record`)."""
    from compat_matrix.run.drift import storable_record
    from compat_tests import drift_record, sources
    from compat_tests.outcomes import CellFailed

    entry = load_matrix(check_model_types=False).model("qwen2")

    def cannot_build(*args: Any) -> Any:
        raise TypeError("planted: this release's config refuses the recipe")

    monkeypatch.setattr("compat_tests.tiny.checkpoint.build_checkpoint", cannot_build)
    record = drift_record.record_entry(entry)
    assert record["status"] == "error" and "planted" in record["reason"] and record["build_error"] == "TypeError"
    assert storable_record(record) and not storable_record({**record, "build_error": "MemoryError"})

    def unreadable(*args: Any) -> Any:
        raise CellFailed("planted: another release's checkpoint is unreadable")

    monkeypatch.setattr(sources, "resolve", unreadable)
    record = drift_record.record_entry(entry)
    assert record["status"] == "error" and "build_error" not in record and not storable_record(record)
