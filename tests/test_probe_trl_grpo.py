"""The `trl_grpo` probe: a real TRL GRPOTrainer step on a tiny text model, its planted failure, and
the cells TRL cannot run here (no TRL for the release: unsupported; image-text without torchvision: skipped)."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
from typing import Any
from unittest import mock

import pytest
from transformers.utils import is_torchvision_available

from compat_matrix.spec.cells import Cell
from compat_matrix.spec.schema import GrpoSettings, Settings, TrainingPin
from compat_tests import training
from compat_tests.execute import MatrixState, run_cell
from compat_tests.outcomes import CellUnsupported
from compat_tests.probes import trl_grpo
from compat_tests.probes.trl_grpo import PROBE, TORCHVISION_MISSING, MicroBatching
from tests.probe_fixtures import MATRIX, keep_generation_batch, make_context, nan_gradients, one_thread  # noqa: F401

trl = pytest.importorskip("trl", reason="the unit env installs trl through compat_matrix/envs/install_training.py (tox commands_pre)")
pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_text_model_takes_one_trl_step_and_records_it():
    record = run_cell(MatrixState(MATRIX), Cell("llama", "smart", "default", "trl_grpo"))
    assert record["status"] == "pass", record["message"]
    details = record["details"]
    assert details["trl"] == importlib.metadata.version("trl") == record["libraries"]["trl"]
    assert details["metrics"]["grad_norm"] > 0 and details["max_param_change"] > 0
    assert details["step_s"] > 0 and details["time_s"] >= details["step_s"]
    json.dumps(details, allow_nan=False)


def trl_context(plant: Any) -> Any:
    """A planted llama context TRL can train: a real tokenizer and a checkpoint to load its reference model from."""
    ctx = make_context("llama", plant)
    prepared = MatrixState(MATRIX).checkpoints.prepare(MATRIX.model("llama"))
    ctx.inputs = prepared.inputs
    ctx.model.config._name_or_path = str(prepared.checkpoint.path)
    return ctx


def test_trl_trains_in_the_step_settings_micro_batches_after_one_generation():
    """As the GRPO recipes train (per_device_train_batch_size 1, gradient accumulation): where TRL can
    generate once for several micro-batches (0.18+), it trains on micro_batch_sizes[0] rows at a time."""
    record = run_cell(MatrixState(MATRIX), Cell("llama", "smart", "default", "trl_grpo"))
    details, grpo = record["details"], MATRIX.settings.grpo
    rows = grpo.group_size * grpo.prompts
    assert record["status"] == "pass", record["message"]
    if "steps_per_generation" in {field.name for field in dataclasses.fields(trl.GRPOConfig)}:
        assert details["micro_batch_rows"] == grpo.micro_batch_sizes[0]
        assert details["gradient_accumulation_steps"] == rows // grpo.micro_batch_sizes[0]
        assert "micro_batch_note" not in details
    else:
        assert (details["micro_batch_rows"], details["gradient_accumulation_steps"]) == (rows, 1)
        assert "generates per micro-batch" in details["micro_batch_note"]


def test_state_kept_from_generate_breaks_trls_micro_batched_step():
    """A model whose training forward breaks at a batch size other than generate()'s: TRL's step in one
    micro-batch of every completion hides it; trained as the recipes train, TRL trips over it."""
    if "steps_per_generation" not in {field.name for field in dataclasses.fields(trl.GRPOConfig)}:
        pytest.skip(f"trl {trl.__version__} generates per micro-batch")
    with pytest.raises(RuntimeError, match="planted: state for 8 rows kept from generate"):
        PROBE.run(trl_context(keep_generation_batch))
    one_micro_batch = MicroBatching(MATRIX.settings.grpo.group_size * MATRIX.settings.grpo.prompts, 1)
    with mock.patch.object(trl_grpo, "micro_batching", lambda ctx, options: one_micro_batch):
        assert PROBE.run(trl_context(keep_generation_batch)).status == "pass"


def test_a_checkpointing_variant_in_settings_reaches_trls_config(tmp_path):
    ctx = make_context("llama", settings=Settings(grpo=GrpoSettings(use_reentrant=True)))
    config, _, _ = trl_grpo.grpo_config(ctx, trl, str(tmp_path))
    assert config.gradient_checkpointing_kwargs == {"use_reentrant": True}
    config, _, _ = trl_grpo.grpo_config(make_context("llama"), trl, str(tmp_path))
    assert (config.gradient_checkpointing_kwargs or {}).get("use_reentrant") is not True  # TRL's own choice


def test_nan_gradients_fail_the_trl_step():
    outcome = PROBE.run(trl_context(nan_gradients))
    assert outcome.status == "fail"
    assert outcome.details["failed_checks"][0] == "finite_grads"
    assert "TRL logged grad_norm nan" in outcome.message


@pytest.mark.skipif(is_torchvision_available(), reason="torchvision is installed: image-text cells run")
def test_image_text_without_torchvision_is_skipped_with_the_reason():
    record = run_cell(MatrixState(MATRIX), Cell("qwen2_vl", "smart", "default", "trl_grpo"))
    assert record["status"] == "skipped"
    assert record["message"] == f"needs torchvision: {TORCHVISION_MISSING}"
    assert record["details"]["needs"] == "torchvision"


def test_a_release_without_a_compatible_trl_is_unsupported_with_the_installers_reason(tmp_path, monkeypatch):
    report = tmp_path / "compat-matrix-training.json"
    report.write_text(json.dumps({"trl": {"requested": "trl", "error": "no trl installs beside transformers 4.30.0"}}))
    monkeypatch.setattr(training, "REPORT", report)
    real_version = importlib.metadata.version

    def version(name: str) -> str:
        if name == "trl":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(CellUnsupported, match="trl is not available beside this transformers release: no trl installs"):
        training.require("trl")


def test_training_pins_override_the_newest_accepting_release_for_their_range():
    pins = [{"transformers": "<4.50", "trl": "0.15.2", "reason": "measured"}, {"transformers": "<5", "trl": "0.19.1", "peft": "0.15.2"}]
    matrix = MATRIX.model_copy(update={"training_pins": tuple(TrainingPin(**pin) for pin in pins)})
    assert matrix.training_pin("trl", "4.49.0") == "0.15.2"
    assert matrix.training_pin("trl", "4.57.6") == "0.19.1"
    assert matrix.training_pin("peft", "4.49.0") == "0.15.2"
    assert matrix.training_pin("trl", "5.0.0") is None
    with pytest.raises(ValueError, match="not an exact version"):
        TrainingPin(transformers="<5", trl=">=0.19")
