"""Checkpoints across releases: a checkpoint saved by another release is loaded and compared with
the reference that release recorded; a config mis-read into a huge model is refused unbuilt."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from compat_matrix.spec.cells import Cell, select_cells
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix
from compat_tests.execute import MatrixState, run_cell
from compat_tests.tiny.checkpoint import build_checkpoint

MATRIX = load_matrix(DEFAULT_MATRIX, check_model_types=False)
OTHER = "0.0.1"
"""A release name no real run uses: the 'other release' whose saved checkpoint we plant."""


@pytest.fixture
def planted_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache holding this release's tiny llama as if release 0.0.1 had saved it."""
    entry = MATRIX.model("llama")
    assert entry.recipe is not None
    original = build_checkpoint("llama", entry.recipe, entry.modality)
    folder = tmp_path / "tiny" / OTHER / original.path.name
    shutil.copytree(original.path, folder)
    monkeypatch.setenv("COMPAT_MATRIX_CACHE", str(tmp_path))
    return folder


def test_cross_release_cells_are_load_and_forward_per_writer() -> None:
    cells = select_cells(MATRIX, ["llama", "qwen2_5_vl_3b_hub"], ["smart"], saved_by=["4.49.0", "5.0.0"])
    assert {c.probe for c in cells} == {"load", "forward"}
    assert {c.saved_by for c in cells} == {"4.49.0", "5.0.0"} and {c.model for c in cells} == {"llama"}
    assert Cell.from_id(cells[0].id) == cells[0] and cells[0].id.endswith("@4.49.0")


def test_a_readable_checkpoint_from_another_release_passes_with_saved_by(planted_cache: Path) -> None:
    state = MatrixState(MATRIX)
    for probe in ("load", "forward"):
        record = run_cell(state, Cell("llama", "explicit_class", "default", probe, OTHER))
        assert record["status"] == "pass", record["message"]
        assert record["saved_by"] == OTHER and record["cell_id"].endswith(f"-{probe}@{OTHER}")


def test_a_release_whose_cells_have_not_run_here_is_skipped_not_unsupported(planted_cache: Path) -> None:
    record = run_cell(MatrixState(MATRIX), Cell("llama", "explicit_class", "default", "load", "0.0.2"))
    assert record["status"] == "skipped" and "transformers 0.0.2 has saved no checkpoint of llama" in record["message"]
    assert "have not run on this machine" in record["message"]


def _build_as(release: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Run a same-release cell as if `release` were installed (with the monkeypatches already set)."""
    import transformers

    with monkeypatch.context() as inside:
        inside.setattr(transformers, "__version__", release)
        return run_cell(MatrixState(MATRIX), Cell("llama", "explicit_class", "default", "load"))


def test_a_release_that_predates_the_model_leaves_a_note_that_makes_cross_cells_unsupported(
        planted_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    with monkeypatch.context() as inside:
        inside.delitem(CONFIG_MAPPING_NAMES, "llama")
        assert _build_as("0.0.3", monkeypatch)["status"] == "unsupported"
    record = run_cell(MatrixState(MATRIX), Cell("llama", "explicit_class", "default", "load", "0.0.3"))
    assert record["status"] == "unsupported"
    assert "transformers 0.0.3 could not save a checkpoint of llama" in record["message"]
    assert "does not know model_type 'llama'" in record["message"]


@pytest.fixture
def hidden_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision cannot be imported here, installed or not."""
    monkeypatch.setitem(sys.modules, "torchvision", None)


def _no_torchvision(*args: object) -> None:
    """Planted in place of the checkpoint writer: the build needs a package this machine lacks."""
    raise ModuleNotFoundError("No module named 'torchvision'", name="torchvision")


def test_a_release_that_lacked_a_package_leaves_a_note_that_makes_cross_cells_skipped(
        planted_cache: Path, monkeypatch: pytest.MonkeyPatch, hidden_torchvision: None) -> None:
    from compat_tests.tiny import checkpoint

    with monkeypatch.context() as inside:
        inside.setattr(checkpoint, "_write", _no_torchvision)
        assert _build_as("0.0.4", monkeypatch)["status"] == "skipped"
    record = run_cell(MatrixState(MATRIX), Cell("llama", "explicit_class", "default", "load", "0.0.4"))
    assert record["status"] == "skipped" and "needs torchvision" in record["message"]
    assert record["details"]["needs"] == "torchvision"


def test_a_model_this_machine_cannot_run_in_this_release_skips_its_cross_release_cells(
        planted_cache: Path, monkeypatch: pytest.MonkeyPatch, hidden_torchvision: None) -> None:
    """Its processor would fail for the missing package, not for anything the other release wrote."""
    import transformers

    from compat_tests.tiny import checkpoint

    with monkeypatch.context() as inside:
        inside.setattr(checkpoint, "_write", _no_torchvision)
        inside.setattr(checkpoint, "_BUILT", {})
        assert run_cell(MatrixState(MATRIX), Cell("llama", "explicit_class", "default", "load"))["status"] == "skipped"
    record = run_cell(MatrixState(MATRIX), Cell("llama", "explicit_class", "default", "load", OTHER))
    assert record["status"] == "skipped" and "cannot build llama on this machine" in record["message"]
    assert transformers.__version__ in record["message"] and "needs torchvision" in record["message"]
    assert record["details"]["needs"] == "torchvision"


def test_a_misread_config_is_refused_before_anything_is_built(planted_cache: Path) -> None:
    """Planted: the other release wrote the dimensions under names this one does not read, so they
    fall back to full-size defaults (Llama: 4096 hidden, 32 layers: billions of parameters)."""
    config_file = planted_cache / "config.json"
    config = json.loads(config_file.read_text())
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers"):
        config[f"renamed_{key}"] = config.pop(key)
    config_file.write_text(json.dumps(config))
    state = MatrixState(MATRIX)
    record = run_cell(state, Cell("llama", "explicit_class", "default", "load", OTHER))
    assert record["status"] == "fail"
    assert "parses this config into" in record["message"] and "not instantiated" in record["message"]
    assert record["peak_memory_mb"] is None or record["peak_memory_mb"] < 4000
    forward = run_cell(state, Cell("llama", "explicit_class", "default", "forward", OTHER))
    assert forward["status"] == "fail" and forward["message"].startswith("not run, the load failed")


def test_an_unreadable_saved_config_is_a_fail_not_a_harness_error(planted_cache: Path) -> None:
    (planted_cache / "config.json").write_text('{"model_type": "llama", "architectures": ["LlamaForCausalLM"], ')
    record = run_cell(MatrixState(MATRIX), Cell("llama", "explicit_class", "default", "load", OTHER))
    assert record["status"] == "fail" and f"cannot read the config or processor that transformers {OTHER} saved" in record["message"]


def test_a_model_type_this_release_lacks_is_unsupported_not_failed(planted_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    monkeypatch.delitem(CONFIG_MAPPING_NAMES, "llama")
    record = run_cell(MatrixState(MATRIX), Cell("llama", "explicit_class", "default", "load", OTHER))
    assert record["status"] == "unsupported" and "does not know model_type llama" in record["message"]


def test_a_checkpoint_read_without_its_architecture_is_a_fail_for_the_explicit_class(planted_cache: Path) -> None:
    """Planted as 4.57 writes Qwen2-VL configs: `architectures` only inside text_config, so a
    release without 4.57's attribute forwarding reads no class at all."""
    from loader import NoArchitectureNamed, load_model

    config_file = planted_cache / "config.json"
    config = json.loads(config_file.read_text())
    config["text_config"] = {"architectures": config.pop("architectures")}
    config_file.write_text(json.dumps(config))
    with pytest.raises(NoArchitectureNamed):  # to the library user: unsupported, nothing to load
        load_model(str(planted_cache), "explicit_class")
    state = MatrixState(MATRIX)
    record = run_cell(state, Cell("llama", "explicit_class", "default", "load", OTHER))
    assert record["status"] == "fail" and record["error_type"] == "ArchitectureLost"
    assert f"transformers {OTHER} saved this checkpoint as LlamaForCausalLM" in record["message"]
    forward = run_cell(state, Cell("llama", "explicit_class", "default", "forward", OTHER))
    assert forward["status"] == "fail" and forward["message"].startswith("not run, the load failed")


def test_logits_another_release_computed_differently_on_a_clean_load_are_drift(planted_cache: Path) -> None:
    """The writer's reference moved (as when it computes differently on the same weights) while
    every tensor loads: `Drift`, said as such, not a checkpoint this release cannot read."""
    from safetensors.torch import load_file, save_file

    reference = planted_cache / "reference_logits.safetensors"
    logits = load_file(reference)
    save_file({kind: value * 1.5 for kind, value in logits.items()}, str(reference))
    record = run_cell(MatrixState(MATRIX), Cell("llama", "explicit_class", "default", "load", OTHER))
    assert record["status"] == "fail" and record["error_type"] == "Drift", record["message"]
    assert f"differ from what transformers {OTHER} computed" in record["message"]
    assert "loads cleanly" in record["message"] and "not the reading" in record["message"]


def test_logits_that_moved_on_an_unclean_load_are_the_reading_not_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another release's checkpoint whose vision tower this release does not find (as 4.57 reading the
    vision tower 5.6+ saves under new names): the forward's moved logits are the load's fault, and the
    forward cell says so instead of calling it drift on a clean load."""
    from safetensors.torch import load_file, save_file

    entry = MATRIX.model("llava")
    assert entry.recipe is not None
    folder = tmp_path / "tiny" / OTHER / build_checkpoint("llava", entry.recipe, entry.modality).path.name
    shutil.copytree(build_checkpoint("llava", entry.recipe, entry.modality).path, folder)
    monkeypatch.setenv("COMPAT_MATRIX_CACHE", str(tmp_path))
    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    save_file({key.replace("vision_tower.", "renamed_tower."): value for key, value in tensors.items()}, str(weights),
              metadata={"format": "pt"})
    record = run_cell(MatrixState(MATRIX), Cell("llava", "explicit_class", "default", "forward", OTHER))
    assert record["status"] == "fail" and record["error_type"] == "CheckFailed", record["message"]
    assert f"differ from what transformers {OTHER} computed" in record["message"]
    assert "the load was not clean: weights newly initialised" in record["message"] and "vision tower" in record["message"]
    assert "not drift" in record["message"] and "loads cleanly" not in record["message"]
