"""The `trl_grpo` probe: a real TRL GRPOTrainer step on a tiny text model, its planted failure, and
the cells TRL cannot run here (no TRL for the release: unsupported; image-text without torchvision: skipped)."""

from __future__ import annotations

import importlib.metadata
import json

import pytest
from transformers.utils import is_torchvision_available

from compat_matrix.cells import Cell
from compat_matrix.spec import TrainingPin
from compat_tests import training
from compat_tests.execute import MatrixState, run_cell
from compat_tests.outcomes import CellUnsupported
from compat_tests.probes.trl_grpo import PROBE, TORCHVISION_MISSING
from tests.probe_fixtures import MATRIX, make_context, nan_gradients, one_thread  # noqa: F401

pytest.importorskip("trl", reason="the unit env installs trl through compat_matrix/install_training.py (tox commands_pre)")
pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_text_model_takes_one_trl_step_and_records_it():
    record = run_cell(MatrixState(MATRIX), Cell("llama", "smart", "default", "trl_grpo"))
    assert record["status"] == "pass", record["message"]
    details = record["details"]
    assert details["trl"] == importlib.metadata.version("trl") == record["libraries"]["trl"]
    assert details["metrics"]["grad_norm"] > 0 and details["max_param_change"] > 0
    assert details["step_s"] > 0 and details["time_s"] >= details["step_s"]
    json.dumps(details, allow_nan=False)


def test_nan_gradients_fail_the_trl_step():
    ctx = make_context("llama", nan_gradients)
    prepared = MatrixState(MATRIX).checkpoints.prepare(MATRIX.model("llama"))
    ctx.inputs = prepared.inputs  # TRL needs a real tokenizer
    ctx.model.config._name_or_path = str(prepared.checkpoint.path)  # where TRL loads its reference model from
    outcome = PROBE.run(ctx)
    assert outcome.status == "fail"
    assert outcome.details["failed_checks"][0] == "finite_grads"
    assert "TRL logged grad_norm nan" in outcome.message


@pytest.mark.skipif(is_torchvision_available(), reason="torchvision is installed: image-text cells run")
def test_image_text_without_torchvision_is_skipped_with_the_reason():
    record = run_cell(MatrixState(MATRIX), Cell("qwen2_vl", "smart", "default", "trl_grpo"))
    assert record["status"] == "skipped"
    assert record["message"] == TORCHVISION_MISSING


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
