"""bisect end to end with a planted runner instead of tox: an uninstallable and a skipping release are
stepped over (and an install failure is not stored, so the next invocation tries again), a cell that
changes twice says so, cells sharing a boundary are one group, a cell failing throughout for another
reason from one release on gets that release (and a number in its message none), and --json says the same."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from compat_matrix.bisect.run import bisect_cells, format_text, store_folder, to_json
from compat_matrix.envs.releases import env_name
from compat_matrix.run import runner
from compat_matrix.spec.cells import Cell
from compat_matrix.spec.layout import results_file, results_folder
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix
from tests.test_record_boundary import result

RELEASES = ["5.0.0", "5.1.0", "5.2.0", "5.3.0", "5.4.0", "5.5.0", "5.6.0", "5.7.0", "5.8.0"]
SHARED = [Cell("llama", "smart", "default", "forward"), Cell("llama", "explicit_class", "default", "forward")]
TWICE = Cell("qwen2", "smart", "default", "forward")
UNINSTALLABLE, SKIPPING = "5.7.0", "5.6.0"
CAUSE = Cell("gemma3", "smart", "default", "load")  # fails throughout: on the processor, from 5.4.0 on the tokenizer
NUMBERS = Cell("gemma3", "smart", "default", "forward")  # fails throughout, the same way: only numbers in it change
DEPENDS = Cell("smolvlm", "smart", "default", "load")  # needs torchvision (absent here) from 5.3.0 on
NEEDS_TORCHVISION = ("needs torchvision: SmolVLMProcessor requires a video processor; AutoVideoProcessor needs "
                     "torchvision: TypeError: SmolVLMProcessor.__init__() missing 1 required positional argument: "
                     "'video_processor'")


def status(cell: Cell, release: str) -> str:
    index = RELEASES.index(release)
    if cell == TWICE:  # broken in 5.3.0, fixed in 5.4.0, broken again from 5.5.0: next to its boundary
        return "fail" if index == 3 or index >= 5 else "pass"
    return "fail" if index >= 5 else "pass"


class PlantedRuns:
    """Stands in for tox: writes the lines a release's run would, and records what was prepared and run."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.cells_ran: list[tuple[str, str]] = []
        self.prepared: list[str] = []

    def run_release(self, matrix: Any, matrix_file: Path, release: str, cells: list[Cell], out: Path, workers: int,
                    stream: Any = None, saved_by: list[str] | None = None, env_dir: Path | None = None) -> runner.ReleaseRun:
        self.ran.append(release)
        self.cells_ran += [(release, c.id) for c in cells]
        lines = []
        for cell in cells:
            if release == UNINSTALLABLE:
                line = result(cell, release, "error", error_type="InstallError", message="no wheel for this Python")
            elif release == SKIPPING:
                line = result(cell, release, "skipped", message="needs torchvision")
            elif cell == DEPENDS and RELEASES.index(release) >= 3:
                line = result(cell, release, "skipped", message=NEEDS_TORCHVISION, details={"needs": "torchvision"})
            elif cell in (CAUSE, NUMBERS):
                index = RELEASES.index(release)
                line = result(cell, release, "fail", error_type="OSError",
                              message=f"no preprocessor_config.json in /tmp/tmp{index}q/ckpt ({index * 3} files)")
                if cell == CAUSE and index >= 4:
                    line = result(cell, release, "fail", error_type="AttributeError",
                                  message=f"'list' object has no attribute 'keys' (line {index})")
            else:
                line = result(cell, release, status(cell, release), message="ValueError: boom")
            lines.append(line.model_dump(mode="json", exclude={"origin"}) | {"env": env_name(release)})
        path = results_file(results_folder(out), env_name(release))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        return runner.ReleaseRun(release, env_name(release), path, out / "log", lines=lines)

    def prepare_env(self, matrix: Any, matrix_file: Path, release: str, out: Path, env_dir: Path, log: Path) -> Any:
        self.prepared.append(release)
        return FinishedProcess()


class FinishedProcess:
    def poll(self) -> int:
        return 0

    def wait(self) -> int:
        return 0


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PlantedRuns:
    monkeypatch.setenv("COMPAT_MATRIX_CACHE", str(tmp_path / "cache"))
    runs = PlantedRuns()
    monkeypatch.setattr(runner, "run_release", runs.run_release)
    monkeypatch.setattr(runner, "prepare_env", runs.prepare_env)
    return runs


def bisect(tmp_path: Path) -> Any:
    matrix = load_matrix(DEFAULT_MATRIX, check_model_types=False)
    return bisect_cells(matrix, DEFAULT_MATRIX, [*SHARED, TWICE], RELEASES, tmp_path / "runs", 2, stream=io.StringIO())


def test_stepped_over_grouped_and_changes_more_than_once(tmp_path: Path, planted: PlantedRuns) -> None:
    run = bisect(tmp_path)
    found = {b.cell: b for b in run.boundaries}
    for cell in SHARED:
        assert (found[cell.id].verdict, found[cell.id].last_good, found[cell.id].first_bad) == ("boundary", "5.4.0", "5.5.0")
    assert found[TWICE.id].verdict == "changes more than once"
    assert found[TWICE.id].changes == [("5.0.0", "5.3.0"), ("5.3.0", "5.4.0"), ("5.4.0", "5.5.0")]
    text = format_text(run)
    assert "Last good 5.4.0, first bad 5.5.0 (2 cells)" in text, text
    assert "what changed: pass -> fail (ValueError: boom)" in text, text
    assert "Changes more than once (1 cells): 5.0.0 -> 5.3.0, 5.3.0 -> 5.4.0, 5.4.0 -> 5.5.0" in text
    out = to_json(run)
    assert {c["cell_id"]: c["verdict"] for c in out["cells"]} == {
        SHARED[0].id: "boundary", SHARED[1].id: "boundary", TWICE.id: "changes more than once"}
    assert out["cross_release"] is None and out["releases"] == RELEASES
    exhaustive = bisect_cells(load_matrix(DEFAULT_MATRIX, check_model_types=False), DEFAULT_MATRIX, [TWICE], RELEASES,
                              tmp_path / "runs", 2, exhaustive=True, stream=io.StringIO())
    [every] = exhaustive.boundaries
    assert every.changes[-1] == ("5.4.0", "5.5.0") and every.stepped_over == [SKIPPING, UNINSTALLABLE]
    assert every.tested == [r for r in RELEASES if r not in (UNINSTALLABLE, SKIPPING)]
    assert ("stepped over (skipped or not installable): 5.6.0 (skipped: needs torchvision), "
            "5.7.0 (not installable: no wheel for this Python)") in format_text(exhaustive)
    assert all(set(c) >= {"last_good", "first_bad", "what_changed", "tested", "stepped_over", "changes"} for c in out["cells"])


def test_every_release_run_was_prepared_ahead_except_the_first(tmp_path: Path, planted: PlantedRuns) -> None:
    bisect(tmp_path)
    assert planted.ran[0] == RELEASES[0]
    assert all(release in planted.prepared for release in planted.ran[1:]), (planted.ran, planted.prepared)


def test_an_install_failure_is_not_stored_and_the_next_invocation_tries_again(tmp_path: Path, planted: PlantedRuns) -> None:
    matrix = load_matrix(DEFAULT_MATRIX, check_model_types=False)
    bisect(tmp_path)
    store = store_folder(matrix)
    assert not results_file(store, env_name(UNINSTALLABLE)).is_file() or not results_file(
        store, env_name(UNINSTALLABLE)).read_text().strip()
    assert results_file(store, env_name(SKIPPING)).is_file(), "a skip is an answer of the release, kept"
    first = list(planted.ran)
    planted.ran.clear()
    again = bisect(tmp_path)
    assert set(planted.ran) <= {UNINSTALLABLE}, f"only the uninstallable release runs again, not {planted.ran}"
    assert [b.verdict for b in again.boundaries] == ["boundary", "boundary", "changes more than once"]
    assert UNINSTALLABLE in first


def test_an_end_that_says_nothing_leaves_the_cells_undecided_and_says_why(tmp_path: Path, planted: PlantedRuns) -> None:
    matrix = load_matrix(DEFAULT_MATRIX, check_model_types=False)
    run = bisect_cells(matrix, DEFAULT_MATRIX, SHARED, RELEASES[:7], tmp_path / "runs", 2, stream=io.StringIO())
    assert [b.verdict for b in run.boundaries] == ["undecided", "undecided"]
    text = format_text(run)
    assert "Undecided (2 cells): 5.6.0 says nothing\n  5.6.0: skipped: needs torchvision" in text, text
    assert planted.ran == ["5.0.0", "5.6.0"], "nothing between is run for an undecided cell"


def test_two_releases_at_once_give_the_same_answers_and_run_no_cell_twice(tmp_path: Path, planted: PlantedRuns) -> None:
    matrix = load_matrix(DEFAULT_MATRIX, check_model_types=False)
    run = bisect_cells(matrix, DEFAULT_MATRIX, [*SHARED, TWICE], RELEASES, tmp_path / "runs", 2, reuse=False,
                       stream=io.StringIO(), jobs=2)
    found = {b.cell: b for b in run.boundaries}
    assert [(found[c.id].last_good, found[c.id].first_bad) for c in SHARED] == [("5.4.0", "5.5.0")] * 2
    assert found[TWICE.id].verdict == "changes more than once"
    assert len(planted.cells_ran) == len(set(planted.cells_ran)), f"a cell ran twice in a release: {planted.cells_ran}"


@pytest.mark.parametrize("options", [{}, {"jobs": 2}, {"exhaustive": True}])
def test_another_cause_with_the_same_status_is_a_boundary_and_a_number_is_none(
        tmp_path: Path, planted: PlantedRuns, options: dict[str, Any]) -> None:
    matrix = load_matrix(DEFAULT_MATRIX, check_model_types=False)
    run = bisect_cells(matrix, DEFAULT_MATRIX, [CAUSE, NUMBERS], RELEASES, tmp_path / "runs", 2, reuse=False,
                       stream=io.StringIO(), **options)
    found = {b.cell: b for b in run.boundaries}
    assert (found[CAUSE.id].verdict, found[CAUSE.id].last_good, found[CAUSE.id].first_bad) == ("boundary", "5.3.0", "5.4.0")
    assert found[NUMBERS.id].verdict == "no change", found[NUMBERS.id]
    text = format_text(run)
    assert "Last good 5.3.0, first bad 5.4.0 (1 cells)\n  what changed: fail -> fail, another cause (OSError: no " \
           "preprocessor_config.json in /tmp/tmp0q/ckpt (0 files) -> AttributeError: 'list' object has no attribute " \
           "'keys' (line 4))" in text, text
    assert "No change between 5.0.0 and 5.8.0 (1 cells)" in text, text
    out = {c["cell_id"]: c for c in to_json(run)["cells"]}
    before, after = out[CAUSE.id]["before"]["cause"], out[CAUSE.id]["after"]["cause"]
    assert (before["error_type"], after["error_type"]) == ("OSError", "AttributeError")
    assert before["text"] == "no preprocessor_config.json in ‹path› (‹n› files)", before


def test_a_release_from_which_a_cell_needs_a_missing_package_is_a_dependency_change(
        tmp_path: Path, planted: PlantedRuns) -> None:
    """Not a break, not 'says nothing' (as a skip for the network is): bisect finds the first release that
    needs the package and says so."""
    matrix = load_matrix(DEFAULT_MATRIX, check_model_types=False)
    run = bisect_cells(matrix, DEFAULT_MATRIX, [DEPENDS], RELEASES, tmp_path / "runs", 2, reuse=False,
                       stream=io.StringIO())
    [found] = run.boundaries
    assert (found.verdict, found.last_good, found.first_bad) == ("boundary", "5.2.0", "5.3.0")
    text = format_text(run)
    assert "Dependency change from 5.3.0 (1 cells; last without it 5.2.0): not a break\n  what changed: dependency " \
           "change: smolvlm needs torchvision from 5.3.0 (SmolVLMProcessor requires a video processor; " \
           "AutoVideoProcessor needs torchvision)" in text, text
