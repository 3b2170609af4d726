"""`forward` on a model that ignores its image: caught even when the reference logits come from the
same class (as for hub and local checkpoints), where comparing with the reference cannot show it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch

from compat_matrix.spec.schema import Settings
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix
from compat_tests.probes.base import ProbeContext
from compat_tests.probes.forward import PROBE
from compat_tests.tiny.checkpoint import build_checkpoint
from compat_tests.tiny.inputs import InputBuilder
from loader import load_model
from tests.probe_fixtures import ignore_pixel_values

MATRIX = load_matrix(DEFAULT_MATRIX, check_model_types=False)


@dataclass
class SelfReference:
    """Reference logits from the model under test, as an external checkpoint's reference is made."""

    model: Any
    inputs: InputBuilder

    def reference_logits(self, kind: str) -> torch.Tensor:
        with torch.no_grad():
            return self.model(**(self.inputs.image_text() if kind == "image" else self.inputs.text())).logits


@pytest.mark.parametrize("planted", [False, True], ids=["clean", "image-ignored"])
@pytest.mark.parametrize("key", ["qwen2_vl", "llava"])
def test_a_model_that_ignores_its_image_fails_forward(key: str, planted: bool) -> None:
    entry = MATRIX.model(key)
    assert entry.recipe is not None
    checkpoint = build_checkpoint(key, entry.recipe, entry.modality)
    loaded = load_model(str(checkpoint.path), "explicit_class")
    model = loaded.model.eval()
    if planted:
        ignore_pixel_values(model)
    inputs = InputBuilder(checkpoint.path, entry.modality)
    ctx = ProbeContext(entry=entry, checkpoint=SelfReference(model, inputs), loaded=loaded, inputs=inputs,
                       settings=Settings(), device="cpu", dtype=torch.float32, reload=lambda: model,
                       checkpoint_config=model.config)
    outcome = PROBE.run(ctx)
    if not planted:
        assert outcome.status == "pass", outcome.message
        assert outcome.details["other_image_rel_diff"] > 0.05
        return
    assert outcome.status == "fail" and "does not use the image" in outcome.message
    assert outcome.details["image_rel_diff"] == 0.0  # the reference check alone would have passed it
