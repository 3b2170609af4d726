"""The `generate` probe on tiny models built from the matrix recipes, and on planted bugs."""

from __future__ import annotations

import json

import pytest
import torch

from compat_tests.probes.generate import PROBE, fresh_model
from loader.result import LoadResult
from tests.probe_fixtures import build_model, leak_between_calls, make_context, nan_logits, one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("key", ["llama", "qwen2_vl"])
def test_passes_and_records_tokens(key):
    ctx = make_context(key)
    head = ctx.model.get_output_embeddings().weight.detach().clone()
    outcome = PROBE.run(ctx)
    assert outcome.status == "pass", outcome.message
    details = outcome.details
    tokens = ctx.settings.generate_max_new_tokens
    assert len(details["tokens"][0]) == len(details["tokens_second"][0]) == tokens
    assert details["tokens_second"] == details["tokens_fresh"]
    assert details["max_logit_diff_fresh"] == 0.0
    json.dumps(details, allow_nan=False)
    assert torch.equal(ctx.model.get_output_embeddings().weight, head), "generate must not change the weights"


def test_state_leaking_between_calls_fails_repeatable():
    outcome = PROBE.run(make_context("llama", leak_between_calls))
    assert outcome.status == "fail"
    assert outcome.details["failed_checks"] == ["repeatable"]
    assert outcome.details["tokens_second"][0] == [7] * 4


def test_nan_logits_fail_finite_logits():
    outcome = PROBE.run(make_context("llama", nan_logits))
    assert outcome.status == "fail"
    assert outcome.details["failed_checks"] == ["finite_logits", "finite_logits"]
    assert outcome.message.startswith("finite_logits: the first call produced non-finite logits")


def test_fresh_model_takes_a_model_or_a_load_result():
    ctx = make_context("llama")
    model = build_model(ctx.entry)
    ctx.reload = lambda: LoadResult(model=model, strategy="explicit_class", path="test")
    assert fresh_model(ctx) is model
    ctx.reload = lambda: model
    assert fresh_model(ctx) is model
