"""`bisect --cross-release`: the search walks the reading or the writing release of a checkpoint,
against a fake world of releases (who wrote, who read, what happened); results reused across
invocations from the store; `--record` puts the range on the walked side. A reader that fails for
another reason is a boundary too, with both causes named, and `--record` splits the two causes' ranges."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from compat_matrix.bisect.run import (BisectRun, CrossAxis, CrossReleaseOracle, ReleaseOracle, describe_change,
                                      format_text, grouped, same_outcome)
from compat_matrix.bisect.record import proposals, propose, record, unsplit
from compat_matrix.bisect.search import Bisect, Boundary
from compat_matrix.envs.releases import env_name
from compat_matrix.spec.cells import Cell
from compat_matrix.spec.layout import results_file
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix
from reports.report import Cell as Result
from tests.test_record_boundary import result

RELEASES = ["5.0.0", "5.1.0", "5.2.0", "5.3.0", "5.4.0", "5.5.0", "5.6.0"]
CELL = Cell("qwen2_5_vl", "smart", "default", "forward")


Outcome = str | tuple[str, str, str] | None
"""A status, or (status, error type, message); None: the release says nothing."""


class FakeReleases:
    """What `ReleaseOracle.answer` gives, from `status(writer, reader)`; None: says nothing there."""

    def __init__(self, status: Callable[[str, str], Outcome], uninstallable: tuple[str, ...] = ()):
        self.status, self.uninstallable = status, uninstallable
        self.runs: list[tuple[str, str | None, tuple[str, ...]]] = []

    def answer(self, release: str, cell_ids: list[str], saved_by: str | None = None) -> dict[str, Result | None]:
        self.runs.append((release, saved_by, tuple(cell_ids)))
        if release in self.uninstallable:
            return dict.fromkeys(cell_ids)
        answers: dict[str, Result | None] = {}
        for cell_id in cell_ids:
            cell = Cell.from_id(cell_id)
            assert cell is not None
            if saved_by is None and cell.probe == "load":
                answers[cell_id] = result(cell, release, "pass")  # the writer's own build
                continue
            got = self.status(saved_by or release, release)
            if got is None:
                answers[cell_id] = None
                continue
            status, error_type, message = (got, None, "") if isinstance(got, str) else got
            answers[cell_id] = result(cell, release, status, saved_by=saved_by, error_type=error_type, message=message)
        return answers


def search(world: FakeReleases, axis: CrossAxis, releases: list[str] = RELEASES, cell: Cell = CELL, **options: Any) -> Any:
    oracle = CrossReleaseOracle(world, axis)  # type: ignore[arg-type]
    search: Bisect[str, Result] = Bisect(releases, oracle, same_outcome, **options)
    [found] = search.run([cell.id])
    return found


def processor_then_tokenizer(first_tokenizer: str, releases: list[str] = RELEASES) -> Callable[[str, str], Outcome]:
    """Every reader fails: on the processor before `first_tokenizer`, on the tokenizer from it on; each
    message carries what varies from run to run (a temporary path, a count, an address, a line number)."""
    def status(writer: str, reader: str) -> Outcome:
        n = releases.index(reader)
        if n < releases.index(first_tokenizer):
            return ("fail", "OSError", f"Can't load /tmp/tmp{n}x9/ckpt-{reader}/preprocessor_config.json "
                                       f"({n + 2} files, loader at 0x7f{n}a3c)")
        return ("fail", "AttributeError", f"'list' object has no attribute 'keys' (tokenizer_config.json line {7 * n})")
    return status


@pytest.mark.parametrize("options", [{}, {"parallel": 2}, {"exhaustive": True}])
def test_a_reader_that_fails_for_another_reason_is_a_boundary_naming_both_causes(options: dict[str, Any]) -> None:
    world = FakeReleases(processor_then_tokenizer("5.3.0"))
    found = search(world, CrossAxis(saved_by="4.57.6"), **options)
    assert (found.verdict, found.last_good, found.first_bad) == ("boundary", "5.2.0", "5.3.0"), found.changes
    assert found.changes == [(found.changes[0][0], "5.3.0")] and (found.before.status, found.after.status) == ("fail", "fail")
    said = describe_change(found)
    assert said.startswith("fail -> fail, another cause (OSError: Can't load "), said
    assert " -> AttributeError: 'list' object has no attribute 'keys'" in said, said
    text = format_text(BisectRun(RELEASES, [found], 1.0, found.tested, [], CrossAxis(saved_by="4.57.6")))
    assert "Last good 5.2.0, first bad 5.3.0 (1 cells)" in text and f"what changed: {said}" in text, text


@pytest.mark.parametrize("options", [{}, {"exhaustive": True}])
def test_only_a_number_path_or_address_changing_in_the_message_is_no_boundary(options: dict[str, Any]) -> None:
    world = FakeReleases(processor_then_tokenizer("never", [*RELEASES, "never"]))
    found = search(world, CrossAxis(saved_by="4.57.6"), **options)
    assert found.verdict == "no change" and found.changes == [], found
    if not options:
        assert found.tested == [RELEASES[0], RELEASES[-1]], "the ends agree: nothing between is tested"


def test_a_cause_that_changes_and_changes_back_changes_more_than_once() -> None:
    inner = processor_then_tokenizer("5.2.0")
    world = FakeReleases(lambda writer, reader: inner(writer, "5.0.0" if reader == "5.4.0" else reader))
    found = search(world, CrossAxis(saved_by="4.57.6"), exhaustive=True)
    assert found.verdict == "changes more than once"
    assert found.changes == [("5.1.0", "5.2.0"), ("5.3.0", "5.4.0"), ("5.4.0", "5.5.0")]
    for options in ({}, {"parallel": 2}):  # a bisection: a real change point with agreeing neighbours, or the warning
        found = search(world, CrossAxis(saved_by="4.57.6"), **options)
        if found.verdict == "boundary":
            low, high = RELEASES.index(found.last_good), RELEASES.index(found.first_bad)
            kinds = [world.status("4.57.6", RELEASES[i])[1] for i in (max(low - 1, 0), low, high, min(high + 1, len(RELEASES) - 1))]  # type: ignore[index]
            assert high == low + 1 and kinds == ["OSError", "OSError", "AttributeError", "AttributeError"], found
        else:
            assert found.verdict == "changes more than once", found


def test_the_reader_is_walked_with_the_writer_fixed() -> None:
    # every release from 5.3.0 on fails to read what 5.0.0 saved
    world = FakeReleases(lambda writer, reader: "fail" if reader >= "5.3.0" and writer != reader else "pass")
    found = search(world, CrossAxis(saved_by="5.0.0"))
    assert (found.verdict, found.last_good, found.first_bad) == ("boundary", "5.2.0", "5.3.0")
    assert {saved_by for _, saved_by, _ in world.runs} <= {None, "5.0.0"}, "only 5.0.0's checkpoints are read"
    builds = [(release, ids) for release, saved_by, ids in world.runs if saved_by is None and release != "5.0.0"]
    assert builds == [], "no other release builds anything"
    assert len(found.tested) < len(RELEASES)


def test_the_writer_is_walked_with_the_reader_fixed_and_each_writer_builds_first() -> None:
    # 5.6.0 cannot read checkpoints written before 5.4.0
    world = FakeReleases(lambda writer, reader: "fail" if writer < "5.4.0" else "pass")
    found = search(world, CrossAxis(loaded_by="5.6.0"))
    assert (found.verdict, found.last_good, found.first_bad) == ("boundary", "5.3.0", "5.4.0")
    assert (found.before.status, found.after.status) == ("fail", "pass")
    for writer in found.tested:
        if writer == "5.6.0":
            continue
        build = world.runs.index((writer, None, ("qwen2_5_vl-smart-default-load",)))
        read = world.runs.index(("5.6.0", writer, (f"{CELL.id}@{writer}",)))
        assert build < read, f"{writer} builds its checkpoint before 5.6.0 reads it"


def test_an_adapter_cell_is_walked_on_the_writer_and_each_writer_saves_its_adapter_first() -> None:
    """The writer's own adapter_roundtrip cell saves the adapter (its `load` cell would not): 4.51 cannot
    read what 4.52 and later saved."""
    adapter = Cell("qwen2_vl", "smart", "lora", "adapter_roundtrip")
    world = FakeReleases(lambda writer, reader: "fail" if writer >= "5.4.0" and writer != reader else "pass")
    found = search(world, CrossAxis(loaded_by="5.0.0"), cell=adapter)
    assert (found.verdict, found.last_good, found.first_bad) == ("boundary", "5.3.0", "5.4.0")
    for writer in found.tested:
        if writer == "5.0.0":
            continue
        save = world.runs.index((writer, None, (adapter.id,)))
        read = world.runs.index(("5.0.0", writer, (f"{adapter.id}@{writer}",)))
        assert save < read, f"{writer} saves its adapter before 5.0.0 reads it"


def test_a_writer_that_cannot_be_installed_is_stepped_over_and_its_checkpoint_never_read() -> None:
    world = FakeReleases(lambda writer, reader: "fail" if writer < "5.4.0" else "pass", uninstallable=("5.3.0",))
    found = search(world, CrossAxis(loaded_by="5.6.0"))
    assert found.verdict == "boundary" and (found.last_good, found.first_bad) == ("5.2.0", "5.4.0")
    assert found.stepped_over == ["5.3.0"]
    assert not [run for run in world.runs if run[1] == "5.3.0"], "nothing read from a writer that never built"


def test_where_writer_and_reader_are_one_release_its_own_cell_answers() -> None:
    world = FakeReleases(lambda writer, reader: "pass" if writer == reader else "fail")
    found = search(world, CrossAxis(saved_by="5.3.0"), ["5.3.0", "5.4.0"])
    assert (found.before.status, found.after.status) == ("pass", "fail")
    assert ("5.3.0", None, (CELL.id,)) in world.runs


def line(cell: Cell, reader: str, writer: str, status: str) -> dict[str, Any]:
    return result(cell, reader, status, saved_by=writer, env=env_name(reader)).model_dump(mode="json", exclude={"origin"})


def test_stored_cross_results_answer_a_later_invocation_without_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    matrix = load_matrix(DEFAULT_MATRIX, check_model_types=False)
    store = tmp_path / "store"
    build = Cell(CELL.model, CELL.strategy, CELL.profile, "load")
    for release in ("5.0.0", "5.6.0"):
        lines = [line(build, release, release, "pass") | {"saved_by": None}]
        results_file(store, env_name(release)).parent.mkdir(parents=True, exist_ok=True)
        results_file(store, env_name(release)).write_text("".join(json.dumps(x) + "\n" for x in lines))
    cross = [line(Cell(CELL.model, CELL.strategy, CELL.profile, CELL.probe, "5.0.0"), "5.6.0", "5.0.0", "fail")]
    results_file(store, env_name("5.6.0"), cross=True).write_text("".join(json.dumps(x) + "\n" for x in cross))
    oracle = ReleaseOracle(matrix, DEFAULT_MATRIX, {CELL.id: CELL}, store, tmp_path / "runs", 1)
    monkeypatch.setattr(oracle, "_run", lambda *args: pytest.fail(f"ran {args} instead of reusing"))
    got = CrossReleaseOracle(oracle, CrossAxis(saved_by="5.0.0"))("5.6.0", [CELL.id])[CELL.id]
    assert got is not None and got.status == "fail" and got.saved_by == "5.0.0"
    assert oracle.stored("5.6.0") and all(r.saved_by is None for r in oracle.stored("5.6.0").values())


@pytest.fixture
def matrix_file(tmp_path: Path) -> Path:
    """A copy of the default matrix for --record to edit."""
    shutil.copy(DEFAULT_MATRIX, tmp_path / "matrix.yaml")
    return tmp_path / "matrix.yaml"


def boundary_of(cell: Cell, before: Result, after: Result, last_good: str, first_bad: str) -> Boundary:
    return Boundary(cell.id, "boundary", last_good, first_bad, before, after, tested=["a", "b", "c"])


def test_record_a_writer_boundary_as_a_saved_by_range_for_the_one_reader(matrix_file: Path) -> None:
    cell = Cell("llama", "smart", "default", "forward")
    found = boundary_of(cell, result(cell, "5.6.0", "pass", saved_by="5.0.0"),
                        result(cell, "5.6.0", "fail", saved_by="5.4.0", error_type="OSError", message="no file"),
                        "5.3.0", "5.4.0")
    [group] = grouped([found])
    proposal = propose(load_matrix(matrix_file), group, {cell.id: cell}, 3, CrossAxis(loaded_by="5.6.0"))
    assert proposal is not None and proposal.replaces is None
    assert (proposal.transformers, proposal.saved_by, proposal.walks) == ("==5.6.0", ">=5.4.0", "saved_by")
    record(matrix_file, [proposal])
    entry = load_matrix(matrix_file).model("llama")
    assert (entry.expectations[0].transformers, entry.expectations[0].saved_by) == ("==5.6.0", ">=5.4.0")
    [row] = [t for t in matrix_file.read_text().splitlines() if 'saved_by: ">=5.4.0"' in t]
    assert "# bisect " in row and "last good 5.3.0, first bad 5.4.0" in row
    recorded = load_matrix(matrix_file)
    assert recorded.expectation_for(entry, "5.6.0", "smart", "forward", "default", "5.5.0") == entry.expectations[0]
    assert recorded.expectation_for(entry, "5.6.0", "smart", "forward", "default", None) != entry.expectations[0], \
        "same-release cells are not covered"


def test_record_narrows_a_cross_expectation_on_the_reader_side(matrix_file: Path) -> None:
    # the top-level expectation: llama saved by >=5 fails in readers "<5"; walking the readers of 5.0.0's
    # checkpoint puts the exact bound on its transformers range, its saved_by range untouched
    cell = Cell("llama", "smart", "default", "load")
    found = boundary_of(cell, result(cell, "4.57.6", "fail", saved_by="5.0.0", error_type="ValueError"),
                        result(cell, "5.0.0", "pass"), "4.57.6", "5.0.0")
    proposal = propose(load_matrix(matrix_file), [found], {cell.id: cell}, 3, CrossAxis(saved_by="5.0.0"))
    assert proposal is not None and proposal.replaces is not None and proposal.replaces.saved_by == ">=5"
    assert (proposal.walks, proposal.transformers) == ("transformers", "<5.0.0")
    before = matrix_file.read_text().splitlines()
    record(matrix_file, [proposal])
    after = matrix_file.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(changed) == 1 and changed[0][1].strip().startswith('transformers: "<5.0.0"  # bisect '), changed


@pytest.mark.parametrize(("readers", "first_tokenizer", "edits"), [
    # later than the matrix says: the processor's expectation, tried first, ends there; the tokenizer's reaches it already
    (["4.55.4", "4.56.0", "4.56.1", "4.56.2", "4.57.1"], "4.56.1", [">=4.50.0,<4.56.1"]),
    # earlier: the tokenizer's expectation must start there too, or nothing would cover 4.55.4
    (["4.55.3", "4.55.4", "4.56.0", "4.56.1", "4.57.1"], "4.55.4", [">=4.50.0,<4.55.4", ">=4.55.4,<5"]),
])
def test_record_splits_the_two_causes_ranges_at_the_boundary(matrix_file: Path, readers: list[str], first_tokenizer: str,
                                                              edits: list[str]) -> None:
    """Gemma3 read from 5.0.0's checkpoints: the processor's expectation (`>=4.50.0,<4.56.0`) and the
    tokenizer's (`>=4.56.0,<5`) are two; after --record, each reader meets the one of its own cause."""
    cell = Cell("gemma3", "smart", "default", "load")
    axis = CrossAxis(saved_by="5.0.0")
    found = search(FakeReleases(processor_then_tokenizer(first_tokenizer, readers)), axis, readers, cell)
    assert found.first_bad == first_tokenizer
    [group] = grouped([found])
    written = proposals(load_matrix(matrix_file), group, {cell.id: cell}, len(found.tested), axis)
    assert [p.transformers for p in written] == edits, written
    assert unsplit(load_matrix(matrix_file), group, {cell.id: cell}, axis) == [], "--record writes it"
    before = matrix_file.read_text().splitlines()
    record(matrix_file, written)
    after = matrix_file.read_text().splitlines()
    changed = [b for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and len(changed) == len(edits), changed
    assert all(f"another cause, same status: last with the old cause {found.last_good}, first with the new "
               f"{first_tokenizer}" in c for c in changed), changed
    matrix = load_matrix(matrix_file)
    entry = matrix.model("gemma3")
    for reader in readers:
        expected = matrix.expectation_for(entry, reader, "smart", "load", "default", "5.0.0")
        assert expected is not None
        cause = "extra_special_tokens" if readers.index(reader) >= readers.index(first_tokenizer) else "processor"
        assert cause in expected.reason, (reader, expected.reason)


def test_one_cause_boundary_over_two_models_splits_each_models_expectations(matrix_file: Path) -> None:
    """Gemma3 and PaliGemma fail for the same two causes (one group), but the processor cause is recorded
    by a different expectation for each: both are split."""
    readers = ["4.55.4", "4.56.0", "4.56.1", "4.56.2", "4.57.1"]
    chosen = [Cell(model, "smart", "default", "load") for model in ("gemma3", "paligemma")]
    axis = CrossAxis(saved_by="5.0.0")
    oracle = CrossReleaseOracle(FakeReleases(processor_then_tokenizer("4.56.1", readers)), axis)  # type: ignore[arg-type]
    bisect: Bisect[str, Result] = Bisect(readers, oracle, same_outcome)
    found = bisect.run([c.id for c in chosen])
    [group] = grouped(found)
    written = proposals(load_matrix(matrix_file), group, {c.id: c for c in chosen}, len(found[0].tested), axis)
    assert sorted((p.model, p.transformers) for p in written) == [("gemma3", ">=4.50.0,<4.56.1"),
                                                                   ("paligemma", "<4.56.1")], written
    record(matrix_file, written)
    matrix = load_matrix(matrix_file)
    for cell in chosen:
        expected = matrix.expectation_for(matrix.model(cell.model), "4.56.0", "smart", "load", "default", "5.0.0")
        assert expected is not None and "processor" in expected.reason, (cell, expected)


def test_an_expectation_shadowed_past_the_boundary_keeps_its_range(matrix_file: Path) -> None:
    """Qwen2-VL's explicit_class forward on 5.0.0's checkpoints: the rope error until 4.56.2, then the
    `architectures` one (`==4.57.*`, tried first for explicit_class). The rope expectation also covers
    every other strategy in 4.57: it must not end at 4.57.1, and the `==` range already says it."""
    cell = Cell("qwen2_vl", "explicit_class", "default", "forward")
    axis = CrossAxis(saved_by="5.0.0")
    readers = ["4.56.0", "4.56.1", "4.56.2", "4.57.1", "4.57.6"]

    def world(writer: str, reader: str) -> Outcome:
        if reader < "4.57":
            return ("fail", "TypeError", "'NoneType' object is not subscriptable")
        return ("fail", "ValueError", "not run, the load failed: no class named in config.architectures")

    found = search(FakeReleases(world), axis, readers, cell)
    assert (found.last_good, found.first_bad) == ("4.56.2", "4.57.1")
    matrix = load_matrix(matrix_file)
    assert matrix.expectation_for(matrix.model("qwen2_vl"), "4.56.2", "explicit_class", "forward", "default",
                                  "5.0.0") != matrix.expectation_for(matrix.model("qwen2_vl"), "4.57.1",
                                                                     "explicit_class", "forward", "default", "5.0.0")
    assert proposals(matrix, [found], {cell.id: cell}, len(found.tested), axis) == []
    assert unsplit(matrix, [found], {cell.id: cell}, axis) == [], "the matrix splits there already: nothing to say"


def test_one_expectation_covering_both_causes_is_not_split(matrix_file: Path) -> None:
    """llama: one expectation (`saved_by >=5`, readers `<5`) covers every 4.x reader."""
    readers = ["4.55.4", "4.56.0", "4.56.1", "4.56.2", "4.57.1"]
    cell = Cell("llama", "smart", "default", "load")
    axis = CrossAxis(saved_by="5.0.0")
    found = search(FakeReleases(processor_then_tokenizer("4.56.1", readers)), axis, readers, cell)
    assert found.verdict == "boundary"
    assert proposals(load_matrix(matrix_file), [found], {cell.id: cell}, len(found.tested), axis) == []
    assert unsplit(load_matrix(matrix_file), [found], {cell.id: cell}, axis) == [
        "llama: the cause changes between 4.56.0 and 4.56.1, but one expectation covers both causes: split the range by hand"]
