"""A long run stays flat: a model is dropped when its group ends, and garbage is collected once
per model (a full collection costs ~0.25 s, so once per group or per mutating probe is too often)."""

from __future__ import annotations

import gc
import weakref

import pytest

from compat_matrix.spec.cells import Cell
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix
from compat_tests import execute
from compat_tests.execute import MatrixState, run_cell

MATRIX = load_matrix(DEFAULT_MATRIX, check_model_types=False)


@pytest.fixture()
def collections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each full collection the harness asks for (still collecting for real)."""
    calls: list[str] = []
    real = gc.collect

    def counting(*args: int) -> int:
        calls.append("collect")
        return real(*args)

    monkeypatch.setattr(execute.gc, "collect", counting)
    return calls


def run(state: MatrixState, model: str, strategy: str, probe: str) -> dict:
    record = run_cell(state, Cell(model, strategy, "default", probe))
    assert record["status"] == "pass", record["message"]
    return record


def test_one_collection_per_model_not_per_group_or_training_step(collections: list[str]) -> None:
    state = MatrixState(MATRIX)
    for strategy in ("explicit_class", "smart"):
        for probe in ("load", "forward", "grpo_step"):  # grpo_step mutates the model: it is dropped
            run(state, "llama", strategy, probe)
    assert collections == []  # groups of one model change without a collection
    run(state, "qwen2", "explicit_class", "load")
    assert collections == ["collect"]  # the model changed


def test_the_previous_group_model_is_freed(collections: list[str]) -> None:
    state = MatrixState(MATRIX)
    run(state, "llama", "explicit_class", "load")
    assert state.slot.group is not None and state.slot.group.result is not None
    first = weakref.ref(state.slot.group.result.model)
    run(state, "llama", "smart", "load")
    assert first() is None  # freed by reference counting, before any collection
    run(state, "llama", "smart", "grpo_step")
    assert state.slot.group is None  # a trained model is never handed to the next probe


def test_a_model_caught_in_a_reference_cycle_is_collected_when_the_model_changes(collections: list[str]) -> None:
    state = MatrixState(MATRIX)
    run(state, "llama", "explicit_class", "load")
    assert state.slot.group is not None and state.slot.group.result is not None
    model = state.slot.group.result.model
    model.planted_cycle = [model]  # reference counting alone can never free it now
    first = weakref.ref(model)
    del model
    run(state, "llama", "smart", "load")
    assert first() is not None  # same model: no collection yet
    run(state, "qwen2", "explicit_class", "load")
    assert collections == ["collect"] and first() is None
