"""The results store: a stored cell is reused only under its current key (recipe, harness code,
libraries, settings), and a killed writer never leaves the store unreadable."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from compat_matrix.run import harness_hash
from compat_matrix.spec.cells import Cell
from compat_matrix.spec.records import WRITER, cell_record
from compat_matrix.run.store import (CELLS, FROM_STORE, EnvFacts, Keys, Store, env_facts, keep, line_facts,
                                 needed_libraries, reusable)
from compat_matrix.spec.schema import UserCallable
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix

REPO = Path(__file__).resolve().parent.parent
MATRIX = load_matrix(DEFAULT_MATRIX, check_model_types=False)
FACTS = EnvFacts("4.57.6", "2.13.0+cpu", "3.11", {"tokenizers": "0.22.1", "huggingface_hub": "1.2.1", "trl": "0.24.0", "peft": "0.17.1",
                                                  "accelerate": "1.10.1"}, "cpu")


def line(cell: Cell, status: str = "pass", facts: EnvFacts = FACTS) -> dict:
    record = cell_record(MATRIX, cell, "tf4_57_6", {
        "transformers": facts.transformers, "transformers_requested": facts.transformers, "torch": facts.torch,
        "python": f"{facts.python}.7", "device": facts.device, "gpu_name": None, "git_commit": None,
        "libraries": facts.libraries})
    return {**record, "status": status}


def test_a_run_reuses_its_stored_cells_with_the_current_expectation(tmp_path: Path) -> None:
    store, keys = Store(tmp_path), Keys(MATRIX)
    cells = [Cell("qwen2", "smart", "default", "load"), Cell("qwen2", "smart", "default", "trl_grpo")]
    assert keep(store, keys, MATRIX, [line(c) for c in cells]) == 2
    found = reusable(store, keys, MATRIX, cells, "4.57.6", FACTS, "tf4_57_6")
    assert [entry["cell_id"] for entry in found.lines] == [c.id for c in cells]
    assert all(entry[FROM_STORE] for entry in found.lines)
    assert "reused 2 of 3 cells" in found.describe(3)


def test_a_stored_cell_is_judged_by_the_peft_its_line_ran_with(tmp_path: Path) -> None:
    """matrix.yaml bounds DeepSeek-V3's 4.x-adapter cause by `libraries: {peft: "<0.22.0"}`: the line stored with
    peft 0.21.2 keeps it, the one with 0.22.0 (which reads every tensor) has none."""
    store, keys = Store(tmp_path), Keys(MATRIX)
    cell = Cell("deepseek_v3", "smart", "lora", "adapter_roundtrip", "4.57.6")
    for peft in ("0.21.2", "0.22.0"):
        facts = replace(FACTS, transformers="5.24.0", libraries={**FACTS.libraries, "peft": peft})
        assert keep(store, keys, MATRIX, [line(cell, "fail", facts)]) == 1
        [found] = reusable(store, keys, MATRIX, [cell], "5.24.0", facts, "tf5_24_0").lines
        assert found["libraries"]["peft"] == peft
        if peft == "0.21.2":
            assert found["expected"]["libraries"] == {"peft": "<0.22.0"} and "12 of 56" in found["expected"]["reason"]
        else:
            assert found["expected"] is None


def test_a_run_pinning_trl_and_peft_otherwise_reruns_only_the_cells_that_use_them(tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment's versions are read before its trl/peft follow the run's pins: a CI run pinning peft
    0.21.2 after a run that took 0.22.0 must not take that run's adapter cells (seen 2026-12-07: 87 reused)."""
    store = Store(tmp_path)
    adapter, plain = Cell("phi3", "smart", "lora", "adapter_roundtrip"), Cell("phi3", "smart", "default", "forward")
    keep(store, Keys(MATRIX), MATRIX, [line(adapter), line(plain)])
    pins = tmp_path / "pins.txt"
    pins.write_text("peft==0.21.2\n")
    monkeypatch.setenv("COMPAT_MATRIX_TRAINING_CONSTRAINTS", str(pins))
    found = reusable(store, Keys(MATRIX), MATRIX, [adapter, plain], "4.57.6", FACTS, "tf4_57_6")
    assert [entry["cell_id"] for entry in found.lines] == [plain.id]


def test_a_cell_stored_from_an_older_recipe_is_not_reused(tmp_path: Path) -> None:
    store, cell = Store(tmp_path), Cell("qwen2", "smart", "default", "forward")
    keep(store, Keys(MATRIX), MATRIX, [line(cell)])
    entry = MATRIX.model("qwen2")
    assert entry.recipe is not None
    recipe = entry.recipe.model_copy(update={"config": {**entry.recipe.config, "num_hidden_layers": 3}})
    changed = MATRIX.model_copy(update={"models": tuple(e.model_copy(update={"recipe": recipe}) if e.key == "qwen2" else e
                                                        for e in MATRIX.models)})
    assert reusable(store, Keys(changed), changed, [cell], "4.57.6", FACTS, "tf4_57_6").lines == []
    assert len(reusable(store, Keys(MATRIX), MATRIX, [cell], "4.57.6", FACTS, "tf4_57_6").lines) == 1


def test_other_libraries_miss_only_for_the_cells_that_use_them(tmp_path: Path) -> None:
    store, keys = Store(tmp_path), Keys(MATRIX)
    load, trl = Cell("qwen2", "smart", "default", "load"), Cell("qwen2", "smart", "default", "trl_grpo")
    keep(store, keys, MATRIX, [line(load), line(trl)])
    newer_trl = EnvFacts(**{**FACTS.__dict__, "libraries": {**FACTS.libraries, "trl": "0.25.0"}})
    assert [e["cell_id"] for e in reusable(store, keys, MATRIX, [load, trl], "4.57.6", newer_trl, "x").lines] == [load.id]
    assert needed_libraries(MATRIX, Cell("phi3", "smart", "lora", "grpo_step")) == ("tokenizers", "huggingface_hub", "peft")


def test_another_hub_misses_every_cell(tmp_path: Path) -> None:
    """huggingface_hub reads every config (5.4.0's OLMoE config fails from hub 1.9.0): no cell is reused across hubs."""
    store, keys = Store(tmp_path), Keys(MATRIX)
    load, trl = Cell("qwen2", "smart", "default", "load"), Cell("qwen2", "smart", "default", "trl_grpo")
    keep(store, keys, MATRIX, [line(load), line(trl)])
    assert len(reusable(store, keys, MATRIX, [load, trl], "4.57.6", FACTS, "x").lines) == 2
    newer_hub = EnvFacts(**{**FACTS.__dict__, "libraries": {**FACTS.libraries, "huggingface_hub": "1.9.0"}})
    assert reusable(store, keys, MATRIX, [load, trl], "4.57.6", newer_hub, "x").lines == []


def test_errors_and_lines_without_a_needed_library_are_not_stored(tmp_path: Path) -> None:
    store = Store(tmp_path)
    no_trl = EnvFacts(**{**FACTS.__dict__, "libraries": {**FACTS.libraries, "trl": None}})
    assert keep(store, Keys(MATRIX), MATRIX, [line(Cell("qwen2", "smart", "default", "load"), "error"),
                                             line(Cell("qwen2", "smart", "default", "trl_grpo"), "unsupported", no_trl)]) == 0


def test_a_cell_skipped_for_a_missing_package_is_reused_only_while_the_package_is_absent(tmp_path: Path) -> None:
    """Installing the package (torchvision from COMPAT_MATRIX_TORCH_INDEX) lets the cell get further: it runs again."""
    store, keys, cell = Store(tmp_path), Keys(MATRIX), Cell("smolvlm", "smart", "default", "load")
    needs = {**line(cell, "skipped"), "message": "needs torchvision: ...", "details": {"needs": "torchvision"}}
    assert keep(store, keys, MATRIX, [needs]) == 1
    without = EnvFacts(**{**FACTS.__dict__, "present": frozenset({"transformers", "torch", "pillow"})})
    with_it = EnvFacts(**{**FACTS.__dict__, "present": frozenset({"transformers", "torch", "torchvision"})})
    assert [e["status"] for e in reusable(store, keys, MATRIX, [cell], "4.57.6", without, "x").lines] == ["skipped"]
    assert reusable(store, keys, MATRIX, [cell], "4.57.6", with_it, "x").lines == []
    published = Cell("smolvlm", "smart", "default", "load", "4.51.3")  # loads what 4.51.3 wrote: the same
    waiting = {**line(published, "skipped"), "message": "transformers 4.51.3 has saved no adapter ...", "details": {}}
    assert keep(store, keys, MATRIX, [{**needs, "cell_id": published.id, "saved_by": "4.51.3"}, waiting]) == 1
    assert [e["cell_id"] for e in reusable(store, keys, MATRIX, [published], "4.57.6", without, "x").lines] == [published.id]


def test_a_readers_skip_that_is_its_writers_failure_is_stored_and_reruns_when_its_key_changes(tmp_path: Path) -> None:
    """phi3's `lora` writer fails at load (target_matches) and saves no adapter: its readers' skips were never
    stored, so every check rebuilt the writer. Kept now under the reader's key (writer release in `saved_by`,
    recipe, profile, the harness code the writer ran too); a writer that has not run, or timed out, is not kept."""
    store, keys = Store(tmp_path), Keys(MATRIX)
    reader = Cell("phi3", "smart", "lora", "adapter_roundtrip", "4.49.0")
    failed = {**line(reader, "skipped"), "message": "transformers 4.49.0 could not save an adapter for profile 'lora' "
              "(fail): not run, the load failed: ...", "details": {WRITER: {"status": "fail", "error_type": "LoadFailed"}}}
    timed_out = {**failed, "details": {WRITER: {"status": "fail", "error_type": "CellTimeout"}}}
    not_run = {**failed, "message": "transformers 4.49.0 has saved no adapter ...", "details": {}}
    assert keep(store, keys, MATRIX, [timed_out, not_run]) == 0
    assert keep(store, keys, MATRIX, [failed]) == 1
    assert [e["status"] for e in reusable(store, keys, MATRIX, [reader], "4.57.6", FACTS, "x").lines] == ["skipped"]
    other_writer = replace(reader, saved_by="4.51.3")
    assert reusable(store, keys, MATRIX, [other_writer], "4.57.6", FACTS, "x").lines == []
    entry = MATRIX.model("phi3")
    profile = entry.load_kwargs["lora"]
    assert profile.adapter is not None
    lora = profile.adapter.lora.model_copy(update={"target_modules": ("qkv_proj",)})  # what phi3 has: the writer saves
    retargeted = profile.model_copy(update={"adapter": profile.adapter.model_copy(update={"lora": lora})})
    changed = MATRIX.model_copy(update={"models": tuple(
        e.model_copy(update={"load_kwargs": {**e.load_kwargs, "lora": retargeted}}) if e.key == "phi3" else e
        for e in MATRIX.models)})
    assert reusable(store, Keys(changed), changed, [reader], "4.57.6", FACTS, "x").lines == []
    new_code = Keys(MATRIX)
    new_code._code["adapter_roundtrip"] = "the writer's code changed"
    assert reusable(store, new_code, MATRIX, [reader], "4.57.6", FACTS, "x").lines == []


def test_the_environment_facts_are_read_from_its_site_packages(tmp_path: Path) -> None:
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    for name in ("transformers-4.57.6", "torch-2.13.0+cpu", "tokenizers-0.22.1", "huggingface_hub-1.2.1", "trl-0.24.0",
                 "opencv_python-4.12.0"):
        (site / f"{name}.dist-info").mkdir(parents=True)
    (site / "cv2").mkdir()
    (site / "six.py").write_text("")
    facts = env_facts(tmp_path, "cpu")
    assert facts is not None and (facts.transformers, facts.torch, facts.python) == ("4.57.6", "2.13.0+cpu", "3.11")
    assert facts.libraries == {"tokenizers": "0.22.1", "huggingface_hub": "1.2.1", "trl": "0.24.0", "peft": None,
                               "accelerate": None}
    assert {"cv2", "opencv_python", "six", "trl"} <= facts.present and "torchvision" not in facts.present
    assert line_facts(line(Cell("qwen2", "smart", "default", "load"))) == FACTS
    assert env_facts(tmp_path / "absent", "cpu") is None


@pytest.fixture
def harness_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The harness packages copied, so a test can edit a module and see which probes' hashes move."""
    for package in harness_hash.HARNESS_PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(harness_hash, "_package_dir", lambda name: tmp_path / name)
    for cached in (harness_hash.probe_modules, harness_hash.core_modules, harness_hash.probe_hash):
        cached.cache_clear()
    yield tmp_path
    for cached in (harness_hash.probe_modules, harness_hash.core_modules, harness_hash.probe_hash):
        cached.cache_clear()


def hashes() -> dict[str, str]:
    for cached in (harness_hash.core_modules, harness_hash.probe_hash):
        cached.cache_clear()
    return {probe: harness_hash.probe_hash(probe) for probe in harness_hash.probe_modules()}


def test_a_changed_probe_module_reruns_its_probe_and_those_importing_it_only(harness_copy: Path) -> None:
    before = hashes()
    with (harness_copy / "compat_tests" / "probes" / "load.py").open("a") as handle:
        handle.write("\n# edited\n")
    after = hashes()
    changed = sorted(p for p in before if before[p] != after[p])
    assert changed == ["adapter_roundtrip", "forward", "load"]  # both others import load's load_problems


def test_a_changed_core_module_reruns_every_probe(harness_copy: Path) -> None:
    before = hashes()
    with (harness_copy / "compat_tests" / "tiny" / "checkpoint.py").open("a") as handle:
        handle.write("\n# edited\n")
    after = hashes()
    assert all(before[p] != after[p] for p in before) and before.keys() == after.keys()


def test_a_new_probe_is_hashed_from_its_module_and_its_place_in_the_order_reruns_the_others(
        harness_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A built-in probe is its module and its name in PROBE_ORDER; the order is part of every cell's
    code (later probes reuse the model earlier ones loaded), so adding a name reruns every probe."""
    before = hashes()
    (harness_copy / "compat_tests" / "probes" / "extra.py").write_text('class Extra:\n    name = "extra"\n\n\nPROBE = Extra()\n')
    status = harness_copy / "reports" / "status.py"
    status.write_text(status.read_text().replace('"adapter_roundtrip")', '"adapter_roundtrip", "extra")', 1))
    monkeypatch.setattr(harness_hash, "PROBE_ORDER", (*harness_hash.PROBE_ORDER, "extra"))
    harness_hash.probe_modules.cache_clear()
    after = hashes()
    assert harness_hash.probe_modules()["extra"] == "compat_tests.probes.extra"
    assert "extra" in after and all(after[p] != before[p] for p in before)


def test_a_torn_last_line_is_skipped_and_cut_before_the_next_append(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.add("4.57.6", [{"key": "a", "stored_at": "t", "line": {}}])
    with store.file("4.57.6", CELLS).open("a") as handle:
        handle.write('{"key": "b", "stored_at": "t", "li')
    assert set(store.entries("4.57.6")) == {"a"}
    store.add("4.57.6", [{"key": "c", "stored_at": "t", "line": {}}])
    assert set(store.entries("4.57.6")) == {"a", "c"}


KILLED_WRITER = """
import sys
from compat_matrix.run.store import Store
store = Store(__import__("pathlib").Path(sys.argv[1]))
print("started", flush=True)
for i in range(10**6):
    store.add("4.57.6", [{"key": str(i), "stored_at": "t", "line": {"pad": "x" * 5000}}])
"""


def test_a_writer_killed_mid_run_leaves_a_store_another_run_reads_and_extends(tmp_path: Path) -> None:
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert writer.stdout is not None and writer.stdout.readline().strip() == b"started"
    deadline = time.monotonic() + 60
    while len(Store(tmp_path).entries("4.57.6")) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    store = Store(tmp_path)
    kept = store.entries("4.57.6")
    assert len(kept) >= 20
    raw = store.file("4.57.6", CELLS).read_text().splitlines()
    assert all(json.loads(text)["key"] for text in raw[:-1])  # every line but a possibly torn last one is whole
    store.add("4.57.6", [{"key": "after", "stored_at": "t", "line": {}}])
    assert set(store.entries("4.57.6")) == set(kept) | {"after"}


def test_cells_of_the_users_own_code_are_never_stored(tmp_path: Path) -> None:
    mine = MATRIX.model_copy(update={"strategies": (*MATRIX.strategies, UserCallable(name="mine", callable="pkg.m:load"))})
    keys = Keys(mine)
    assert keys.cell(Cell("qwen2", "mine", "default", "load"), FACTS) is None
    assert keys.cell(Cell("qwen2", "smart", "default", "load"), FACTS) is not None


def fake_env(folder: Path, facts: EnvFacts) -> Path:
    site = folder / "lib" / f"python{facts.python}" / "site-packages"
    versions = {"transformers": facts.transformers, "torch": facts.torch, **facts.libraries}
    for name, version in versions.items():
        if version:
            (site / f"{name}-{version}.dist-info").mkdir(parents=True)
    return folder


def test_a_release_runs_only_the_cells_the_store_lacks_and_stores_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from compat_matrix.run import runner

    cells = [Cell("qwen2", strategy, "default", "load") for strategy in ("smart", "explicit_class", "auto_model")]
    store = runner.StoreUse(Store(tmp_path / "store"), Keys(MATRIX))
    keep(store.store, store.keys, MATRIX, [line(c) for c in cells[:2]])
    ran: list[tuple[list[str], bool]] = []

    def fake_tox(run: runner.ReleaseRun, matrix: object, matrix_file: Path, out: Path, left: list[Cell], *args: object) -> None:
        ran.append(([c.id for c in left], bool(args[3])))  # the cells, and `resumed` (pytest keeps the stored lines)
        writer = runner.ResultsWriter(run.results, fresh=False)
        for cell in left:
            writer.write(line(cell, "fail"))
        writer.close()

    monkeypatch.setattr(runner, "_run_tox", fake_tox)
    env = fake_env(tmp_path / "env", FACTS)
    first = runner.run_release(MATRIX, DEFAULT_MATRIX, "4.57.6", cells, tmp_path / "out", 1, env_dir=env, store=store)
    assert ran == [([cells[2].id], True)]
    assert sorted((entry["cell_id"], entry["status"], bool(entry.get(FROM_STORE))) for entry in first.lines) == [
        (cells[2].id, "fail", False), (cells[1].id, "pass", True), (cells[0].id, "pass", True)]
    again = runner.run_release(MATRIX, DEFAULT_MATRIX, "4.57.6", cells, tmp_path / "again", 1, env_dir=env, store=store)
    assert len(ran) == 1 and {entry["cell_id"] for entry in again.lines} == {c.id for c in cells}
    fresh = runner.StoreUse(store.store, store.keys, fresh=True)
    runner.run_release(MATRIX, DEFAULT_MATRIX, "4.57.6", cells, tmp_path / "fresh", 1, env_dir=env, store=fresh)
    assert ran[-1] == ([c.id for c in cells], False)


def test_drift_records_all_from_the_store_are_written_to_a_fresh_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from compat_matrix.run import drift, runner

    store = runner.StoreUse(Store(tmp_path / "store"), Keys(MATRIX))
    record = {"model": "qwen2", "status": "ok", "transformers": "4.57.6"}
    store.store.add("4.57.6", [{"key": store.keys.drift("qwen2", FACTS), "stored_at": "t", "record": record}], "drift.jsonl")
    monkeypatch.setattr(drift, "_facts", lambda *args: FACTS)
    monkeypatch.setattr(drift, "record_release", lambda *args: pytest.fail("a stored record was recorded again"))
    found = drift._recorded(MATRIX, DEFAULT_MATRIX, "4.57.6", ["qwen2"], tmp_path / "fresh-out", store)
    assert found == {"qwen2": record}
    assert json.loads(drift.record_file(tmp_path / "fresh-out", "4.57.6").read_text()) == {"qwen2": record}


def test_a_written_by_release_outside_the_check_records_only_the_models_it_writes(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """4.45.0 (llama's writer) recorded every model, and llava and mllama, which it cannot build, as `error`s:
    records no comparison reads and the store never keeps, rerun on every check."""
    from compat_matrix.run import drift

    recorded: dict[str, list[str]] = {}

    def fake(matrix: object, matrix_file: Path, release: str, models: list[str], *args: object) -> dict:
        recorded[release] = list(models)
        return {m: {"model": m, "status": "ok"} for m in models}

    monkeypatch.setattr(drift, "_recorded", fake)
    models = ["llama", "llava", "internvl", "smolvlm", "qwen2"]
    records = drift.record_all(MATRIX, DEFAULT_MATRIX, models, ["4.57.6", "5.24.0"], tmp_path)
    assert recorded == {"4.45.0": ["llama"], "4.49.0": ["llava", "qwen2"], "4.51.3": ["smolvlm"],
                        "4.52.4": ["internvl"], "4.57.6": models, "5.24.0": models}
    assert list(records) == ["4.57.6", "5.24.0"]


def test_a_tiny_build_a_release_cannot_do_is_stored_as_its_drift_record_and_reruns_when_its_key_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """smolvlm's build fails in 4.52.4: an `error` record, rerun on every call. A build error is kept under the
    record's key (release, recipe, drift code); the recording's own trouble and the machine's are not."""
    from compat_matrix.run import drift, runner

    store = runner.StoreUse(Store(tmp_path / "store"), Keys(MATRIX))
    asked: list[list[str]] = []
    build = {"status": "error", "reason": "building the tiny checkpoint failed: TypeError: ...", "build_error": "TypeError"}
    made = {"smolvlm": {**build, "model": "smolvlm"},
            "llava": {**build, "model": "llava", "build_error": "MemoryError"},
            "mllama": {"model": "mllama", "status": "error", "reason": "the drift recording in tf4_52_4 wrote nothing"},
            "qwen2": {"model": "qwen2", "status": "ok"}}

    def record_release(matrix_file: Path, release: str, models: list[str], out: Path, *args: object) -> Path:
        asked.append(list(models))
        path = drift.record_file(out, release)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({m: made[m] for m in models}))
        return path

    monkeypatch.setattr(drift, "_facts", lambda *args: FACTS)
    monkeypatch.setattr(drift, "record_release", record_release)
    models = list(made)
    first = drift._recorded(MATRIX, DEFAULT_MATRIX, "4.52.4", models, tmp_path / "one", store)
    again = drift._recorded(MATRIX, DEFAULT_MATRIX, "4.52.4", models, tmp_path / "two", store)
    assert asked == [models, ["llava", "mllama"]] and first == again
    assert again["smolvlm"]["status"] == "error" and "TypeError" in again["smolvlm"]["reason"]  # still said
    other_code = runner.StoreUse(store.store, Keys(MATRIX))
    monkeypatch.setattr(other_code.keys, "drift_code", "the tiny builders changed")
    drift._recorded(MATRIX, DEFAULT_MATRIX, "4.52.4", models, tmp_path / "three", other_code)
    assert asked[-1] == models


class Killed(BaseException):
    """The machine lost the run: nothing after it runs (no storing at the release's end)."""


def test_a_resumed_run_stores_the_lines_it_found_only_under_the_same_code_and_models(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from compat_matrix.run import runner

    cells = [Cell("qwen2", strategy, "default", "forward") for strategy in ("smart", "explicit_class", "auto_model")]
    entry = MATRIX.model("qwen2")
    assert entry.recipe is not None
    recipe = entry.recipe.model_copy(update={"config": {**entry.recipe.config, "num_hidden_layers": 3}})
    changed = MATRIX.model_copy(update={"models": tuple(e.model_copy(update={"recipe": recipe}) if e.key == "qwen2" else e
                                                        for e in MATRIX.models)})
    env = fake_env(tmp_path / "env", FACTS)

    def killed_after(count: int):  # type: ignore[no-untyped-def]
        def fake_tox(run: runner.ReleaseRun, matrix: object, matrix_file: Path, out: Path, left: list[Cell], *args: object) -> None:
            writer = runner.ResultsWriter(run.results, fresh=False)
            for cell in left[:count]:
                writer.write(line(cell, "fail"))
            writer.close()
            if count < len(left):
                raise Killed
        return fake_tox

    def kill_then_resume(name: str, matrix_then: object, matrix_now: object) -> Store:
        store = Store(tmp_path / name / "store")
        monkeypatch.setattr(runner, "_run_tox", killed_after(2))
        with pytest.raises(Killed):
            runner.run_release(matrix_then, DEFAULT_MATRIX, "4.57.6", cells, tmp_path / name / "out", 1, env_dir=env,
                               store=runner.StoreUse(store, Keys(matrix_then)))  # type: ignore[arg-type]
        assert store.entries("4.57.6") == {}  # killed before the release's end: nothing stored
        monkeypatch.setattr(runner, "_run_tox", killed_after(3))
        runner.run_release(matrix_now, DEFAULT_MATRIX, "4.57.6", cells, tmp_path / name / "out", 1, env_dir=env,  # type: ignore[arg-type]
                           resumed=True, store=runner.StoreUse(store, Keys(matrix_now)))  # type: ignore[arg-type]
        return store

    same = kill_then_resume("same", MATRIX, MATRIX)
    assert sorted(e["line"]["cell_id"] for e in same.entries("4.57.6").values()) == sorted(c.id for c in cells)
    other = kill_then_resume("other", MATRIX, changed)  # qwen2's recipe edited between the kill and the resume
    assert [e["line"]["cell_id"] for e in other.entries("4.57.6").values()] == [cells[2].id]
    assert [e["cell_id"] for e in reusable(other, Keys(changed), changed, cells, "4.57.6", FACTS, "x").lines] == [cells[2].id]


def test_prune_drops_what_this_checkout_cannot_reuse_and_keeps_the_rest(tmp_path: Path) -> None:
    from compat_matrix.run.store import DRIFT, prune

    store, keys = Store(tmp_path), Keys(MATRIX)
    current, older_code, other_model = (Cell("qwen2", "smart", "default", "load"), Cell("qwen2", "smart", "default", "forward"),
                                        Cell("moe_of_another_branch", "smart", "default", "load"))
    old_keys = Keys(MATRIX)
    old_keys._code = {probe: "an older harness" for probe in old_keys._code}
    keep(store, keys, MATRIX, [line(current)])
    keep(store, old_keys, MATRIX, [line(older_code)])
    keep(store, keys, MATRIX, [line(current)])  # stored again: the first entry is replaced
    store.add("4.57.6", [{"key": "k", "stored_at": "t", "line": {**line(current), "cell_id": other_model.id}}])
    drift = [{"key": key, "stored_at": "t", "record": {"model": "qwen2"}, **extra}
             for key, extra in (("old", {"harness": "older drift code"}), ("new", {"harness": keys.drift_code}), ("unknown", {}))]
    store.add("4.57.6", drift, DRIFT)

    done = {p.path.name: p for p in prune(store, keys)}
    assert (done["cells.jsonl"].kept, done["cells.jsonl"].dropped, done["cells.jsonl"].other_models) == (2, 2, 1)
    assert (done["drift.jsonl"].kept, done["drift.jsonl"].dropped) == (2, 1)
    assert sorted(e["line"]["cell_id"] for e in store.entries("4.57.6").values()) == sorted([current.id, other_model.id])
    assert set(store.entries("4.57.6", DRIFT)) == {"new", "unknown"}
    found = reusable(store, keys, MATRIX, [current, older_code], "4.57.6", FACTS, "x")
    assert [e["cell_id"] for e in found.lines] == [current.id]
    assert not list(tmp_path.rglob(".*.prune"))
