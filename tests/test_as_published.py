"""As-published cells: each release loads the checkpoint the model's `written_by` release wrote
(every probe), which is the report's main grid; round trips and cross-release cells stay apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compat_matrix.run.published import writers_to_build
from compat_matrix.spec.cells import AS_PUBLISHED, CROSS_RELEASE, ROUND_TRIP, checkpoint_kind, select_cells
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix
from reports.build import build_report
from reports.diff import compare_releases
from reports.grid import build_grid
from reports.overview import model_sentences

MATRIX = load_matrix(DEFAULT_MATRIX, check_model_types=False)
FIXTURES = Path(__file__).parent / "fixtures" / "results"
BASE = json.loads((FIXTURES / "nightly" / "tf457.jsonl").read_text().splitlines()[0])


def test_every_probe_runs_on_the_written_by_checkpoint_and_only_load_and_forward_on_other_writers() -> None:
    llama = MATRIX.model("llama")
    cells = select_cells(MATRIX, ["llama", "qwen2_5_vl_3b_hub"], ["smart"], saved_by=[llama.written_by, "5.0.0"],
                         published_in="4.57.6")
    published = [c for c in cells if c.saved_by == llama.written_by]
    assert {c.probe for c in published} == set(MATRIX.probe_names) - {"adapter_roundtrip"}  # llama has no adapter profile
    assert {c.probe for c in cells if c.saved_by == "5.0.0"} == {"load", "forward"}
    assert {c.model for c in cells} == {"llama"}  # a hub entry is as published already
    assert len({c.id for c in cells}) == len(cells)  # the written_by checkpoint is not run twice


def test_the_written_by_release_has_no_as_published_cells_of_its_own_its_same_release_cells_are() -> None:
    llama = MATRIX.model("llama")
    assert not select_cells(MATRIX, ["llama"], published_in=llama.written_by)
    assert checkpoint_kind(llama, None, llama.written_by) == AS_PUBLISHED
    assert checkpoint_kind(llama, None, "5.0.0") == ROUND_TRIP
    assert checkpoint_kind(llama, llama.written_by, "5.0.0") == AS_PUBLISHED
    assert checkpoint_kind(llama, "5.0.0", "4.57.6") == CROSS_RELEASE
    assert checkpoint_kind(MATRIX.model("qwen2_5_vl_3b_hub"), None, "5.0.0") == AS_PUBLISHED


def test_writers_the_run_did_not_install_are_built_first() -> None:
    writers = writers_to_build(MATRIX, ["llama", "qwen3_vl", "qwen2_5_vl_3b_hub"], {"4.57.6", "5.24.0"})
    assert writers == {MATRIX.model("llama").written_by: ["llama"]}  # qwen3_vl's writer (4.57.6) ran


def line(transformers: str, probe: str, status: str, saved_by: str | None, checkpoint: str | None,
         message: str = "") -> dict:
    suffix = f"@{saved_by}" if saved_by else ""
    return {**BASE, "transformers": transformers, "model": "qwen2", "strategy": "smart", "load_kwargs": "default",
            "probe": probe, "status": status, "saved_by": saved_by, "checkpoint": checkpoint, "expected": None,
            "cell_id": f"qwen2-smart-default-{probe}{suffix}", "message": message}


def write(folder: Path, name: str, lines: list[dict]) -> None:
    (folder / name).write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_the_main_grid_is_as_published_and_fine_tunes_go_to_the_saved_by_grid(tmp_path: Path) -> None:
    write(tmp_path, "tf4_49_0.jsonl", [line("4.49.0", "forward", "pass", None, AS_PUBLISHED)])
    write(tmp_path, "tf5_0_0.jsonl", [line("5.0.0", "forward", "pass", None, ROUND_TRIP)])
    write(tmp_path, "tf5_0_0-cross.jsonl", [line("5.0.0", "forward", "fail", "4.49.0", AS_PUBLISHED, "drifted"),
                                            line("5.0.0", "load", "fail", "4.52.4", CROSS_RELEASE, "unreadable")])
    group = next(g for g in build_grid(build_report([tmp_path])).groups if g.model == "qwen2")
    (row,) = group.rows
    assert {v: c.worst for v, c in row.cells.items()} == {"4.49.0": "pass", "5.0.0": "fail"}
    assert group.written_by == "4.49.0"
    assert group.cross is not None
    assert {pair: c.worst for pair, c in group.cross.cells.items()} == {("5.0.0", "5.0.0"): "pass",
                                                                      ("4.52.4", "5.0.0"): "fail"}


def test_the_upgrade_view_compares_as_published_cells_across_the_writer_and_a_reader(tmp_path: Path) -> None:
    write(tmp_path, "tf4_49_0.jsonl", [line("4.49.0", "forward", "pass", None, AS_PUBLISHED)])
    write(tmp_path, "tf5_0_0.jsonl", [line("5.0.0", "forward", "pass", None, ROUND_TRIP)])
    write(tmp_path, "tf5_0_0-cross.jsonl", [line("5.0.0", "forward", "fail", "4.49.0", AS_PUBLISHED, "drifted")])
    report = build_report([tmp_path])
    view = compare_releases(report, "4.49.0", "5.0.0")
    assert [c.after.message for c in view.breaks] == ["drifted"]
    assert not view.old_checkpoints  # the as-published cell is not counted again as a fine-tune problem
    sentence = dict(model_sentences(report))["qwen2"]
    assert "5.0.0" in sentence


def test_lines_written_before_the_checkpoint_field_keep_same_release_cells_as_the_main_grid(tmp_path: Path) -> None:
    write(tmp_path, "tf5_0_0.jsonl", [line("5.0.0", "forward", "pass", None, None)])
    write(tmp_path, "tf5_0_0-cross.jsonl", [line("5.0.0", "forward", "pass", "4.49.0", None)])
    group = next(g for g in build_grid(build_report([tmp_path])).groups if g.model == "qwen2")
    assert [set(r.cells) for r in group.rows] == [{"5.0.0"}]
    assert group.cross is not None and set(group.cross.cells) == {("4.49.0", "5.0.0")}


def test_check_says_drift_on_the_as_published_checkpoint_as_drift_not_as_a_break(tmp_path: Path) -> None:
    from reports.check_view import format_by_cause
    from reports.render_md import render_markdown

    drifted = {**line("5.0.0", "forward", "fail", "4.49.0", AS_PUBLISHED, "image+text logits differ from what "
                      "transformers 4.49.0 computed on this checkpoint (max diff 0.69, 0.21 relative); it loads cleanly"),
               "error_type": "Drift"}
    write(tmp_path, "tf4_49_0.jsonl", [line("4.49.0", "forward", "pass", None, AS_PUBLISHED)])
    write(tmp_path, "tf5_0_0-cross.jsonl", [drifted])
    report = build_report([tmp_path])
    text = format_by_cause(compare_releases(report, "4.49.0", "5.0.0"))
    assert "Drift when upgrading 4.49.0 -> 5.0.0: the as-published checkpoint loads cleanly" in text
    assert "forward: Drift: image+text logits differ" in text
    assert "Breaks when upgrading" not in text and "fails to use" not in text
    page = render_markdown(report)
    assert "## Grid: as published" in page and "**qwen2** (as published by 4.49.0)" in page


def test_a_writer_whose_build_breaks_leaves_a_note_its_readers_skip_with(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    import compat_tests.build_published as build
    from compat_tests.outcomes import CellSkipped, HarnessError
    from compat_tests.sources import saved_checkpoint

    def broken(entry: object) -> None:
        raise HarnessError("building the tiny checkpoint failed: NameError: name 'init_empty_weights' is not defined")

    monkeypatch.setenv("COMPAT_MATRIX_CACHE", str(tmp_path))
    monkeypatch.setattr(build, "resolve", broken)
    assert build.main(["--matrix", str(DEFAULT_MATRIX), "--models", "qwen3"]) == 1
    with pytest.raises(CellSkipped, match="init_empty_weights"):
        saved_checkpoint(MATRIX.model("qwen3"), transformers.__version__)


def test_check_cells_names_as_published_cells_by_their_grid_id(tmp_path: Path) -> None:
    from reports.diff import format_upgrade

    write(tmp_path, "tf4_49_0.jsonl", [line("4.49.0", "forward", "pass", None, AS_PUBLISHED)])
    write(tmp_path, "tf5_0_0-cross.jsonl", [line("5.0.0", "forward", "fail", "4.49.0", AS_PUBLISHED, "broke")])
    text = format_upgrade(compare_releases(build_report([tmp_path]), "4.49.0", "5.0.0"))
    assert "qwen2-smart-default-forward  pass -> fail" in text
