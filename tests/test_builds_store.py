"""Stored as-published builds (compat_matrix/run/builds.py): a `written_by` release is started again
only for a model whose build the store does not hold under its current key, with its outputs intact."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import compat_matrix.run.published as published
from compat_matrix.run.builds import BUILDS, CONTENT_HASHES, build_key, content_intact
from compat_matrix.run.runner import StoreUse
from compat_matrix.run.store import EnvFacts, Keys, Store
from compat_matrix.spec.cells import Cell, select_cells
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix

MATRIX = load_matrix(DEFAULT_MATRIX, check_model_types=False)
WRITER = MATRIX.model("qwen2_vl").written_by
assert WRITER is not None
FACTS = EnvFacts(WRITER, "2.13.0", "3.11", {"tokenizers": "0.21.0", "huggingface_hub": "0.30.2", "peft": "0.21.2", "trl": "0.17.0",
                                            "accelerate": "1.6.0"}, "cpu")
CELLS = select_cells(MATRIX, ["qwen2_vl"], probes=["adapter_roundtrip"])


class FakeRelease:
    """Stands in for `tox exec ... compat_tests.build_published`: writes a checkpoint folder with its
    content hashes and an adapter reference file per cell under the cache, and the outputs file."""

    def __init__(self, cache: Path, complete: bool = True):
        self.cache, self.complete, self.calls = cache, complete, 0

    def __call__(self, matrix_file: Path, release: str, out: Path, module_args: list[str], log: Path) -> int:
        self.calls += 1
        args = dict(zip(module_args[1::2], module_args[2::2]))
        done = {}
        for model in args["--models"].split(","):
            folder = self.cache / "tiny" / release / f"{model}-abc"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "model.safetensors").write_bytes(b"weights")
            (folder / CONTENT_HASHES).write_text(json.dumps({"model.safetensors": _sha(b"weights")}))
            outputs = [{"kind": "checkpoint", "path": str(folder.relative_to(self.cache))}]
            for cell in filter(None, args["--cells"].split(",")):
                reference = self.cache / "adapters" / release / folder.name / cell / "adapter_reference.json"
                reference.parent.mkdir(parents=True, exist_ok=True)
                reference.write_text("{}")
                outputs.append({"kind": "file", "path": str(reference.relative_to(self.cache)), "sha256": _sha(b"{}")})
            done[model] = {"outputs": outputs, "complete": self.complete}
        Path(args["--outputs"]).parent.mkdir(parents=True, exist_ok=True)
        Path(args["--outputs"]).write_text(json.dumps(done))
        return 0


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COMPAT_MATRIX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(published, "_facts", lambda *a: FACTS)
    return tmp_path / "cache"


def _build(tmp_path: Path, fake: FakeRelease, store: StoreUse | None, monkeypatch: pytest.MonkeyPatch,
           capsys: pytest.CaptureFixture[str], cells: list[Cell] = CELLS) -> str:
    monkeypatch.setattr(published, "exec_in_release", fake)
    published.build_writers(DEFAULT_MATRIX, {WRITER: ["qwen2_vl"]}, tmp_path / "out", sys.stderr, cells, store)
    return capsys.readouterr().err


def test_a_stored_build_is_not_started_again(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    fake, store = FakeRelease(cache), StoreUse(Store(tmp_path / "store"), Keys(MATRIX))
    _build(tmp_path, fake, store, monkeypatch, capsys)
    assert fake.calls == 1
    assert len(store.store.entries(WRITER, BUILDS)) == 1
    said = _build(tmp_path, fake, store, monkeypatch, capsys)
    assert fake.calls == 1
    assert "store: reused 1 of 1 builds" in said


def test_fresh_no_store_and_other_writer_cells_build_again(tmp_path: Path, cache: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    fake, store = FakeRelease(cache), StoreUse(Store(tmp_path / "store"), Keys(MATRIX))
    _build(tmp_path, fake, store, monkeypatch, capsys)
    _build(tmp_path, fake, StoreUse(store.store, store.keys, fresh=True), monkeypatch, capsys)
    _build(tmp_path, fake, None, monkeypatch, capsys)
    assert fake.calls == 3
    _build(tmp_path, fake, store, monkeypatch, capsys, cells=CELLS[:1])  # another selection of writer cells
    assert fake.calls == 4


def test_a_planted_entry_of_an_older_recipe_or_another_peft_is_not_reused(tmp_path: Path, cache: Path,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    fake, store = FakeRelease(cache), StoreUse(Store(tmp_path / "store"), Keys(MATRIX))
    _build(tmp_path, fake, store, monkeypatch, capsys)
    [entry] = store.store.entries(WRITER, BUILDS).values()
    entry_file = store.store.file(WRITER, BUILDS)
    entry_file.unlink()
    entry_file.write_text("")
    # the same entry under the keys of an older recipe and of another peft: both miss
    entry = dict(entry)
    old = MATRIX.model_copy(deep=True)
    recipe = old.model("qwen2_vl").recipe
    assert recipe is not None
    recipe.config["hidden_size"] = recipe.config.get("hidden_size", 64) + 8
    other_peft = EnvFacts(**{**FACTS.__dict__, "libraries": {**FACTS.libraries, "peft": "0.22.0"}})
    stale = [build_key(Keys(old), WRITER, "qwen2_vl", CELLS, FACTS), build_key(store.keys, WRITER, "qwen2_vl", CELLS, other_peft)]
    assert build_key(store.keys, WRITER, "qwen2_vl", CELLS, FACTS) not in stale
    store.store.add(WRITER, [{**entry, "key": key} for key in stale], BUILDS)
    _build(tmp_path, fake, store, monkeypatch, capsys)
    assert fake.calls == 2


def test_a_missing_adapter_or_an_edited_checkpoint_builds_again(tmp_path: Path, cache: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    fake, store = FakeRelease(cache), StoreUse(Store(tmp_path / "store"), Keys(MATRIX))
    _build(tmp_path, fake, store, monkeypatch, capsys)
    next(cache.glob("adapters/**/adapter_reference.json")).unlink()
    _build(tmp_path, fake, store, monkeypatch, capsys)
    assert fake.calls == 2
    _build(tmp_path, fake, store, monkeypatch, capsys)
    assert fake.calls == 2  # rebuilt and stored again: reused
    next(cache.glob("tiny/*/qwen2_vl-abc/model.safetensors")).write_bytes(b"edited")
    _build(tmp_path, fake, store, monkeypatch, capsys)
    assert fake.calls == 3


def test_an_adapter_another_peft_wrote_again_or_other_training_constraints_build_again(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake, store = FakeRelease(cache), StoreUse(Store(tmp_path / "store"), Keys(MATRIX))
    _build(tmp_path, fake, store, monkeypatch, capsys)
    next(cache.glob("adapters/**/adapter_reference.json")).write_text('{"peft_version": "0.21.2"}')
    _build(tmp_path, fake, store, monkeypatch, capsys)
    assert fake.calls == 2
    pins = tmp_path / "ci-training.txt"
    pins.write_text("peft==0.21.2\n")
    monkeypatch.setenv("COMPAT_MATRIX_TRAINING_CONSTRAINTS", str(pins))  # the adapter folders' hash changes with it
    _build(tmp_path, fake, store, monkeypatch, capsys)
    assert fake.calls == 3
    _build(tmp_path, fake, store, monkeypatch, capsys)
    assert fake.calls == 3


def test_a_build_that_did_not_finish_is_not_stored(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    fake, store = FakeRelease(cache, complete=False), StoreUse(Store(tmp_path / "store"), Keys(MATRIX))
    _build(tmp_path, fake, store, monkeypatch, capsys)
    _build(tmp_path, fake, store, monkeypatch, capsys)
    assert fake.calls == 2
    assert not store.store.entries(WRITER, BUILDS)


def test_no_key_without_peft_in_the_writer_environment() -> None:
    without = EnvFacts(**{**FACTS.__dict__, "libraries": {**FACTS.libraries, "peft": None}})
    assert build_key(Keys(MATRIX), WRITER, "qwen2_vl", CELLS, without) is None
    assert build_key(Keys(MATRIX), WRITER, "qwen2_vl", [], without) is not None  # no writer cell: the build alone


def test_content_check_agrees_with_the_checkpoint_builder(tmp_path: Path) -> None:
    checkpoint = pytest.importorskip("compat_tests.tiny.checkpoint")
    assert checkpoint.CONTENT_HASHES == CONTENT_HASHES
    folder = tmp_path / "ck"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "tokenizer.json").write_text("[]")
    assert checkpoint.changed_files(folder) == []  # records the hashes
    assert content_intact(folder)
    for edit in (lambda: (folder / "config.json").write_text("{ }"), lambda: (folder / "extra.txt").write_text("x"),
                 lambda: (folder / "sub" / "tokenizer.json").unlink()):
        edit()
        assert checkpoint.changed_files(folder) != []
        assert not content_intact(folder)
        (folder / CONTENT_HASHES).write_text(json.dumps(checkpoint.content_hashes(folder)))
        assert content_intact(folder)




def test_build_published_lists_its_outputs_and_a_broken_build_is_not_complete(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    import compat_tests.build_published as build
    from compat_matrix.run.builds import outputs_intact
    from compat_tests.outcomes import HarnessError

    monkeypatch.setenv("COMPAT_MATRIX_CACHE", str(tmp_path / "cache"))
    outputs = tmp_path / "outputs.json"
    assert build.main(["--matrix", str(DEFAULT_MATRIX), "--models", "qwen2", "--outputs", str(outputs)]) == 0
    built = json.loads(outputs.read_text())["qwen2"]
    assert built["complete"] and [o["kind"] for o in built["outputs"]] == ["checkpoint"]
    assert outputs_intact(built["outputs"], tmp_path / "cache")

    def broken(entry: object) -> None:
        raise HarnessError("building the tiny checkpoint failed: NameError: name 'init_empty_weights' is not defined")

    monkeypatch.setattr(build, "resolve", broken)
    assert build.main(["--matrix", str(DEFAULT_MATRIX), "--models", "qwen3", "--outputs", str(outputs)]) == 1
    assert not json.loads(outputs.read_text())["qwen3"]["complete"]


def test_prune_drops_builds_no_run_of_this_checkout_can_reuse(tmp_path: Path, cache: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`store --prune` rewrote cells.jsonl and drift.jsonl and left builds.jsonl to grow: builds of other
    build code or an older model entry, and entries a later one under the same key replaced, are dropped;
    entries that record neither (stored before) and builds of models this matrix.yaml lacks are kept."""
    from compat_matrix.cli import main

    fake, store = FakeRelease(cache), StoreUse(Store(tmp_path / "store"), Keys(MATRIX))
    _build(tmp_path, fake, store, monkeypatch, capsys)
    [entry] = store.store.entries(WRITER, BUILDS).values()
    assert entry["harness"] and entry["entry"] == store.keys.model_entry("qwen2_vl")
    old = MATRIX.model_copy(deep=True)
    recipe = old.model("qwen2_vl").recipe
    assert recipe is not None
    recipe.config["hidden_size"] = recipe.config.get("hidden_size", 64) + 8
    legacy = {k: v for k, v in entry.items() if k not in ("harness", "entry")}
    store.store.add(WRITER, [{**entry, "key": "older build code", "harness": "an older build_published"},
                             {**entry, "key": "older recipe", "entry": Keys(old).model_entry("qwen2_vl")},
                             {**legacy, "key": "stored before entries recorded their code"},
                             {**entry, "key": "another branch's model", "record": {**entry["record"], "model": "moe_x"}},
                             entry], BUILDS)  # the current build stored again: the first one is replaced

    assert main(["--matrix", str(DEFAULT_MATRIX), "store", "--prune", "--store", str(tmp_path / "store")]) == 0
    said = capsys.readouterr().out
    assert f"pruned {store.store.file(WRITER, BUILDS)}: dropped 3, kept 3, 1 of models this matrix.yaml does not list kept" in said
    assert set(Store(tmp_path / "store").entries(WRITER, BUILDS)) == {
        entry["key"], "stored before entries recorded their code", "another branch's model"}
    assert not list((tmp_path / "store").rglob(".*.prune"))
    _build(tmp_path, fake, store, monkeypatch, capsys)
    assert fake.calls == 1  # the current build is still reused
