"""adapter_roundtrip: an adapter one release saved, read onto the same base by another.

Planted on tiny Phi-3's `lora_fused` profile (16 saved tensors, every one with an effect on the
logits): a reader that silently drops some keys, an adapter whose weights the forward ignores, and
a copy of this release's checkpoint and adapter standing for another release's. On tiny Qwen3-MoE's
`lora` (attention and every expert's projections): a reader that drops the experts' tensors, and one
that swaps each expert's gate and up adapters."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch

from compat_matrix.spec.cells import Cell, select_cells
from compat_matrix.spec.schema import LoadProfile
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix
from compat_matrix.run.store import writer_verdict
from compat_tests.adapter_files import NOT_WRITTEN_SUFFIX
from compat_tests.execute import MatrixState, run_cell
from compat_tests.probes.adapter_roundtrip import account, memory_name
from compat_tests.tiny.checkpoint import build_checkpoint

MATRIX = load_matrix(DEFAULT_MATRIX, check_model_types=False)
OTHER = "0.0.1"
"""A release name no real run uses: the 'other release' whose checkpoint and adapter we plant."""
ROUND_TRIP = Cell("phi3", "smart", "lora_fused", "adapter_roundtrip")


def cache_holding(key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache holding this release's tiny `key` (built once in the shared cache, copied), and no adapter."""
    import transformers

    entry = MATRIX.model(key)
    assert entry.recipe is not None
    original = build_checkpoint(key, entry.recipe, entry.modality)
    shutil.copytree(original.path, tmp_path / "tiny" / transformers.__version__ / original.path.name)
    monkeypatch.setenv("COMPAT_MATRIX_CACHE", str(tmp_path))
    monkeypatch.setattr("compat_tests.tiny.checkpoint._BUILT", {})
    return tmp_path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield cache_holding("phi3", tmp_path, monkeypatch)


def round_trip(cell: Cell = ROUND_TRIP) -> dict[str, Any]:
    return run_cell(MatrixState(MATRIX), cell)


Tensors = dict[str, torch.Tensor]


def planted_reader(monkeypatch: pytest.MonkeyPatch, after: Callable[[Any], None] | None = None,
                   drop: str | None = None, convert: Callable[[Tensors], Tensors] | None = None) -> None:
    """Planted in peft's loading: `drop` removes the saved tensors whose names contain it before they
    reach the model (silently), `convert` rewrites them as a key converter would; `after` changes the
    model PeftModel.from_pretrained returns."""
    import peft
    import peft.peft_model

    if drop is not None or convert is not None:
        real_load = peft.peft_model.load_peft_weights

        def planted(*args: Any, **kwargs: Any) -> Tensors:
            tensors = {k: v for k, v in real_load(*args, **kwargs).items() if drop is None or drop not in k}
            return tensors if convert is None else convert(tensors)

        monkeypatch.setattr(peft.peft_model, "load_peft_weights", planted)
    if after is not None:
        real_from_pretrained = peft.PeftModel.from_pretrained.__func__  # type: ignore[attr-defined]

        def from_pretrained(cls: Any, *args: Any, **kwargs: Any) -> Any:
            model = real_from_pretrained(cls, *args, **kwargs)
            after(model)
            return model

        monkeypatch.setattr(peft.PeftModel, "from_pretrained", classmethod(from_pretrained))


def skip_lora_in_forward(model: Any) -> None:
    """Planted: every LoRA layer computes only its base layer; the adapter's weights are loaded, unused."""
    from peft.tuners.lora import LoraLayer

    for module in model.modules():
        if isinstance(module, LoraLayer):
            module.forward = module.base_layer.forward


def test_a_correct_round_trip_passes_with_every_saved_tensor_found(cache: Path) -> None:
    record = round_trip()
    assert record["status"] == "pass", record["message"]
    details = record["details"]
    assert details["saved_tensors"] == 16 and details["not_loaded_count"] == 0 and details["renamed_count"] == 0
    assert details["text_rel_diff"] < 1e-3 and details["writer_effect"]["text"] > 0.1
    folder = Path(details["adapter_folder"])
    assert (folder / "adapter" / "adapter_model.safetensors").is_file() and (folder / "adapter" / "adapter_config.json").is_file()
    written = (folder / "adapter_reference.json").stat().st_mtime_ns
    assert round_trip()["status"] == "pass" and (folder / "adapter_reference.json").stat().st_mtime_ns == written


def test_an_adapter_another_peft_wrote_is_written_again_by_this_one(cache: Path) -> None:
    """A cache shared by runs with other pefts (0.22.0 saves DeepSeek-V3's dense MLP, 0.21.2 does not):
    the writer's peft replaces a folder another peft wrote, so no reader judges that one's adapter."""
    import peft

    folder = Path(round_trip()["details"]["adapter_folder"])
    reference = folder / "adapter_reference.json"
    planted = {**json.loads(reference.read_text()), "peft_version": "0.0.1"}
    reference.write_text(json.dumps(planted))
    record = round_trip()
    assert record["status"] == "pass" and record["details"]["adapter_peft"] == peft.__version__
    assert json.loads(reference.read_text())["peft_version"] == peft.__version__
    assert not any(p.name.endswith(".stale") for p in folder.parent.iterdir())


def test_runs_pinning_trl_and_peft_otherwise_keep_their_adapters_apart(cache: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    newest = Path(round_trip()["details"]["adapter_folder"])
    pins = tmp_path / "pins.txt"
    pins.write_text("peft==0.21.2\n")
    monkeypatch.setenv("COMPAT_MATRIX_TRAINING_CONSTRAINTS", str(pins))
    pinned = Path(round_trip()["details"]["adapter_folder"])
    assert pinned != newest and pinned.parent == newest.parent
    assert (newest / "adapter_reference.json").is_file() and (pinned / "adapter_reference.json").is_file()


def test_a_reader_that_silently_drops_the_mlp_keys_fails_naming_them(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The MLP of a dense model stands for the experts of an MoE: peft 0.21 loads the rest and warns
    at most; the check finds the four tensors missing by their values and names them."""
    assert round_trip()["status"] == "pass"
    planted_reader(monkeypatch, drop="mlp.down_proj")
    record = round_trip()
    assert record["status"] == "fail" and record["error_type"] == "CheckFailed"
    assert "adapter_keys: 4 of 16 adapter tensors" in record["message"]
    assert "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight" in record["message"]
    assert record["details"]["not_loaded_count"] == 4 and "adapter_keys" in record["details"]["failed_checks"]
    assert "adapter_logits" in record["details"]["failed_checks"]


def test_an_adapter_ignored_at_inference_fails(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert round_trip()["status"] == "pass"
    planted_reader(monkeypatch, after=skip_lora_in_forward)
    record = round_trip()
    assert record["status"] == "fail" and record["details"]["not_loaded_count"] == 0
    assert "adapter_logits: text logits with the adapter differ" in record["message"]
    assert "the adapter is ignored at inference" in record["message"]


def _as_other_release(cache: Path) -> None:
    """This release's checkpoint and adapters, copied as if release OTHER had written them."""
    import transformers

    here = transformers.__version__
    for kind in ("tiny", "adapters"):
        shutil.copytree(cache / kind / here, cache / kind / OTHER)


def test_an_adapter_another_release_saved_is_read_onto_its_checkpoint(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert round_trip()["status"] == "pass"
    _as_other_release(cache)
    cross = replace(ROUND_TRIP, saved_by=OTHER)
    record = round_trip(cross)
    assert record["status"] == "pass", record["message"]
    assert record["details"]["adapter_written_by"] == OTHER and f"/adapters/{OTHER}/" in record["details"]["adapter_folder"]
    planted_reader(monkeypatch, drop="self_attn.qkv_proj.lora_B")
    record = round_trip(cross)
    assert record["status"] == "fail" and f"2 of 16 adapter tensors transformers {OTHER} saved" in record["message"]


def test_a_release_whose_adapter_cells_have_not_run_is_skipped(cache: Path) -> None:
    import transformers

    shutil.copytree(cache / "tiny" / transformers.__version__, cache / "tiny" / OTHER)
    record = round_trip(replace(ROUND_TRIP, saved_by=OTHER))
    assert record["status"] == "skipped"
    assert f"transformers {OTHER} has saved no adapter for profile 'lora_fused'" in record["message"]
    assert not writer_verdict(record)  # the writer may run later: not kept by the store


def test_a_writer_that_could_not_save_leaves_its_reason_for_the_readers(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(model: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("planted: the adapter cannot be saved")

    with monkeypatch.context() as inside:
        inside.setattr("peft.PeftModel.save_pretrained", broken)
        record = round_trip()
    assert record["status"] == "fail" and "planted: the adapter cannot be saved" in record["message"]
    notes = list((cache / "adapters").rglob(f"*{NOT_WRITTEN_SUFFIX}"))
    assert len(notes) == 1 and "RuntimeError" in json.loads(notes[0].read_text())["reason"]
    _as_other_release(cache)
    record = round_trip(replace(ROUND_TRIP, saved_by=OTHER))
    assert record["status"] == "skipped" and f"transformers {OTHER} could not save an adapter" in record["message"]
    assert "planted: the adapter cannot be saved" in record["message"]
    assert record["details"]["writer"] == {"status": "fail", "error_type": "RuntimeError"}  # the store keeps this skip
    assert round_trip()["status"] == "pass" and not notes[0].exists()  # the writer tries again, and the note goes


def test_a_writer_whose_load_failed_tells_the_readers_so(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As a LoRA target list that matches nothing in the writing release: the readers hear the writer's
    failure, not that its cells never ran."""
    def unmatched(loaded: Any, adapter: Any) -> Any:
        raise RuntimeError("planted: target_matches refused the list")

    with monkeypatch.context() as inside:
        inside.setattr("compat_tests.execute.apply_adapter", unmatched)
        record = round_trip()
    assert record["status"] == "fail" and record["message"].startswith("not run, the load failed: planted")
    _as_other_release(cache)
    record = round_trip(replace(ROUND_TRIP, saved_by=OTHER))
    assert record["status"] == "skipped" and f"transformers {OTHER} could not save an adapter" in record["message"]
    assert "(fail): not run, the load failed: planted: target_matches refused the list" in record["message"]
    assert record["details"]["writer"]["status"] == "fail" and writer_verdict(record)  # kept by the store


def test_memory_name_puts_the_adapter_name_after_the_lora_part() -> None:
    assert memory_name("base_model.model.model.layers.0.q_proj.lora_A.weight") == \
        "base_model.model.model.layers.0.q_proj.lora_A.default.weight"
    assert memory_name("base_model.model.embed_tokens.lora_embedding_B") == "base_model.model.embed_tokens.lora_embedding_B.default"


def test_a_tensor_held_under_another_name_counts_as_loaded_and_one_held_nowhere_does_not() -> None:
    class Held(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Module()
            self.a.lora_A = torch.nn.ModuleDict({"default": torch.nn.Linear(4, 2, bias=False)})

    model = Held()
    weight = model.a.lora_A["default"].weight.detach().clone()
    moved = account({"x.old_path.lora_A.weight": weight, "x.gone.lora_A.weight": torch.ones(2, 4)}, model)
    assert moved.renamed == {"x.old_path.lora_A.weight": "a.lora_A.default.weight"}
    assert moved.not_loaded == ["x.gone.lora_A.weight"] and moved.not_from_file == []


def test_a_tensor_merged_into_a_larger_one_counts_as_converted_and_one_left_initialised_does_not() -> None:
    """5.x reads a 4.x expert LoRA by concatenating the experts' tensors into the fused experts' LoRA."""
    class Fused(torch.nn.Module):
        def __init__(self, merged: torch.Tensor) -> None:
            super().__init__()
            self.experts = torch.nn.Module()
            self.experts.lora_A = torch.nn.ParameterDict({"default": torch.nn.Parameter(merged)})

    generator = torch.Generator().manual_seed(1)
    first, second = torch.randn(2, 4, generator=generator), torch.randn(2, 4, generator=generator)
    merged = account({"e.0.up.lora_A.weight": first, "e.1.up.lora_A.weight": second}, Fused(torch.cat([first, second])))
    assert merged.converted == {"e.0.up.lora_A.weight": "experts.lora_A.default", "e.1.up.lora_A.weight": "experts.lora_A.default"}
    assert merged.not_loaded == [] and merged.not_from_file == []
    initialised = account({"e.0.up.lora_A.weight": first}, Fused(torch.randn(4, 4, generator=generator)))
    assert initialised.not_loaded == ["e.0.up.lora_A.weight"] and initialised.converted == {}
    assert account({"e.0.up.lora_B.weight": torch.zeros(2, 4)}, Fused(torch.zeros(4, 4))).not_loaded == ["e.0.up.lora_B.weight"]


def test_only_profiles_with_an_adapter_have_adapter_cells_and_cross_release_ones_read_them() -> None:
    cells = select_cells(MATRIX, ["phi3", "qwen2_vl", "llama"])
    assert {c.profile for c in cells if c.probe == "adapter_roundtrip"} == {"lora", "lora_fused", "lora_vision"}
    cross = select_cells(MATRIX, ["phi3"], saved_by=["4.49.0"])
    assert {(c.profile, c.probe) for c in cross if c.probe == "adapter_roundtrip"} == {("lora", "adapter_roundtrip"),
                                                                                     ("lora_fused", "adapter_roundtrip")}


def test_an_adapter_probe_on_a_profile_without_an_adapter_is_refused() -> None:
    with pytest.raises(ValueError, match="add `adapter:"):
        LoadProfile(probes=("load", "adapter_roundtrip"))


def test_every_lora_profile_of_the_default_matrix_reads_its_adapter_across_releases() -> None:
    """An adapter is what a team reloads after an upgrade: no LoRA profile leaves the probe out."""
    lacking = [f"{entry.key}.{name}" for entry in MATRIX.models for name, profile in entry.load_kwargs.items()
               if profile.adapter is not None and "adapter_roundtrip" not in (profile.probes or MATRIX.probe_names)]
    assert lacking == []


def test_mllamas_old_adapter_read_by_5x_is_expected_for_its_lost_keys_not_for_its_drift() -> None:
    """Both causes show on these cells; the keys 5.x loses are what the reader must hear first."""
    entry = MATRIX.model("mllama")
    found = MATRIX.expectation_for(entry, "5.24.0", "smart", "adapter_roundtrip", "lora", saved_by="4.49.0")
    assert found is not None and "loads silently empty or in part" in found.reason
    drift = MATRIX.expectation_for(entry, "5.24.0", "smart", "forward", "lora", saved_by="4.49.0")
    assert drift is not None and "vision encoder" in drift.reason


MOE_ROUND_TRIP = Cell("qwen3_moe", "smart", "lora", "adapter_roundtrip")
"""Qwen3-MoE with TRL's list: attention and every expert's gate, up and down projections."""


@pytest.fixture(scope="module")
def moe_written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A cache in which this release wrote Qwen3-MoE's adapter (once for the module), and the clean read's record."""
    folder = tmp_path_factory.mktemp("moe")
    with pytest.MonkeyPatch.context() as patch:
        cache_holding("qwen3_moe", folder, patch)
        clean = round_trip(MOE_ROUND_TRIP)
    assert clean["status"] == "pass", clean["message"]
    return {"cache": folder, "clean": clean}


@pytest.fixture
def moe_cache(moe_written: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A copy of that cache, for one planted reader."""
    shutil.copytree(moe_written["cache"], tmp_path / "cache")
    monkeypatch.setenv("COMPAT_MATRIX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("compat_tests.tiny.checkpoint._BUILT", {})
    yield moe_written


def test_a_reader_that_silently_drops_the_experts_adapter_keys_fails_naming_them(moe_cache: dict[str, Any],
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """As 'expert LoRA that loads but is silently ignored at inference': the attention part loads, the
    experts' part is dropped without a word; the check counts the expert tensors by their values."""
    reference = Path(moe_cache["clean"]["details"]["adapter_folder"]) / "adapter_reference.json"
    saved = json.loads(reference.read_text())["saved_tensors"]
    experts = sorted(key for key in saved if ".experts." in key)
    assert experts and len(experts) < len(saved)
    planted_reader(monkeypatch, drop=".experts.")
    record = round_trip(MOE_ROUND_TRIP)
    assert record["status"] == "fail" and record["error_type"] == "CheckFailed"
    assert f"adapter_keys: {len(experts)} of {len(saved)} adapter tensors" in record["message"]
    assert experts[0] in record["message"] and record["details"]["not_loaded_count"] == len(experts)
    assert "adapter_logits" in record["details"]["failed_checks"]


def _swap_gate_and_up(tensors: Tensors) -> Tensors:
    """A key converter that puts each expert's gate LoRA on its up projection and back."""
    swapped = dict(tensors)
    for key in tensors:
        if ".experts." in key and ".gate_proj." in key:
            up = key.replace(".gate_proj.", ".up_proj.")
            swapped[key], swapped[up] = tensors[up], tensors[key]
    return swapped


def test_a_reader_that_swaps_the_experts_gate_and_up_adapters_fails_on_the_logits(moe_cache: dict[str, Any],
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tensor is loaded (found by value under the other half's name), so only the logits tell."""
    planted_reader(monkeypatch, convert=_swap_gate_and_up)
    record = round_trip(MOE_ROUND_TRIP)
    assert record["status"] == "fail" and record["details"]["not_loaded_count"] == 0
    assert record["details"]["renamed_count"] > 0
    assert "adapter_logits: text logits with the adapter differ" in record["message"]
    assert "the adapter is applied differently" in record["message"]
