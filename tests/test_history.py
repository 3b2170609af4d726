"""The history: each route's timeline with its boundaries and their causes, and matrix.yaml's
expectation ranges checked against it (listed where wrong, corrected by --record)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from compat_matrix.cli import run as run_commands
from compat_matrix.cli import main
from compat_matrix.judge.history_check import check_expectations, corrected_range
from compat_matrix.spec.cells import Cell
from compat_matrix.spec.records import cell_record
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix
from reports.build import build_report
from reports.history import timelines
from reports.report import ReleaseSet

MATRIX = load_matrix(DEFAULT_MATRIX, check_model_types=False)
RELEASES = ["4.56.0", "4.56.1", "4.56.2", "4.57.1", "4.57.2"]
UNKNOWN = "model_type 'qwen3_vl' is not known to transformers {release}"
"""qwen3_vl arrived in 4.57.0: matrix.yaml says `unsupported` for '<4.57.1'."""


def write_results(folder: Path, unknown_until: str) -> Path:
    """qwen3_vl explicit_class load+forward over RELEASES, `unsupported` up to `unknown_until`, then passing."""
    folder.mkdir(parents=True, exist_ok=True)
    for release in RELEASES:
        lines = []
        for probe in ("load", "forward"):
            cell = Cell("qwen3_vl", "explicit_class", "default", probe)
            line = cell_record(MATRIX, cell, f"tf{release}", {
                "transformers": release, "transformers_requested": release, "torch": "2.13.0", "python": "3.11.7",
                "device": "cpu", "gpu_name": None, "git_commit": None, "libraries": {}})
            unknown = RELEASES.index(release) <= RELEASES.index(unknown_until)
            line.update(status="unsupported" if unknown else "pass", error_type="UnknownModelType" if unknown else None,
                        message=UNKNOWN.format(release=release) if unknown else "", saved_by=None,
                        checkpoint="as_published")
            lines.append(json.dumps(line))
        (folder / f"tf{release}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def report_of(folder: Path, matrix_file: Path = DEFAULT_MATRIX):  # type: ignore[no-untyped-def]
    from compat_matrix.judge.expectations import read_expectations

    report = build_report([folder], expectations=read_expectations(matrix_file))
    return report.model_copy(update={"release_set": ReleaseSet(requested=(">=4.56,<4.58",), releases=tuple(RELEASES))})


def test_a_timeline_names_its_exact_boundary_and_its_cause(tmp_path: Path) -> None:
    report = report_of(write_results(tmp_path / "results", unknown_until="4.56.2"))
    [timeline] = [t for t in timelines(report) if t.model == "qwen3_vl"]
    assert timeline.routes == ("explicit_class · default",)
    assert timeline.spans() == [("unsupported", "4.56.0", "4.56.2"), ("pass", "4.57.1", "4.57.2")]
    [boundary] = timeline.boundaries
    assert (boundary.before, boundary.after, boundary.exact) == ("4.56.2", "4.57.1", True)
    assert "qwen3_vl" in boundary.why and "4.56.2/qwen3_vl-explicit_class-default-load" in boundary.cells


def test_a_range_the_history_agrees_with_is_not_listed(tmp_path: Path) -> None:
    report = report_of(write_results(tmp_path / "results", unknown_until="4.56.2"))
    assert [d for d in check_expectations(MATRIX, report) if "qwen3_vl" in d.models] == []


def test_a_range_too_wide_is_listed_with_its_wrong_releases_and_recorded(tmp_path: Path) -> None:
    matrix_file = tmp_path / "matrix.yaml"
    shutil.copy(DEFAULT_MATRIX, matrix_file)
    results = write_results(tmp_path / "results", unknown_until="4.56.0")  # passes from 4.56.1: '<4.57.1' is wrong there
    [found] = [d for d in check_expectations(MATRIX, report_of(results)) if "qwen3_vl" in d.models]
    assert found.expectation.transformers == "<4.57.1"
    assert found.wrong == ("4.56.1", "4.56.2") and found.corrected == "<4.56.1"
    assert "in range but no cell unsupported for its cause: 4.56.1-4.56.2" in found.describe()
    assert main(["--matrix", str(matrix_file), "history", str(results)]) == 1
    assert main(["--matrix", str(matrix_file), "history", str(results), "--record"]) == 0
    assert load_matrix(matrix_file).model("qwen3_vl").expectations[0].transformers == "<4.56.1"
    assert main(["--matrix", str(matrix_file), "history", str(results)]) == 0


def test_a_range_too_narrow_is_listed_where_the_same_cause_fails_outside_it(tmp_path: Path) -> None:
    results = write_results(tmp_path / "results", unknown_until="4.57.1")  # still unknown in 4.57.1
    [found] = [d for d in check_expectations(MATRIX, report_of(results)) if "qwen3_vl" in d.models]
    assert found.wrong == ("4.57.1",) and found.corrected == "<4.57.2"


def test_a_corrected_range_is_one_range_or_none() -> None:
    releases = ["1.0", "1.1", "1.2", "1.3"]
    assert corrected_range({"1.1", "1.2"}, releases) == ">=1.1,<1.3"
    assert corrected_range({"1.0", "1.1", "1.2", "1.3"}, releases) == ""
    assert corrected_range({"1.0", "1.2"}, releases) is None


def test_the_html_page_has_the_history_with_its_boundaries_and_links(tmp_path: Path) -> None:
    from reports.render_html import render_html

    report = report_of(write_results(tmp_path / "results", unknown_until="4.56.2"))
    page = render_html(report)
    section = page[page.index('<section id="history">'):]
    section = section[:section.index("</section>")]
    assert '<td><a href="#qwen3_vl">qwen3_vl</a></td><td>explicit_class · default</td>' in section
    assert "∅ 4.56.0–4.56.2</span> · <span class=\"s-pass\">✓ 4.57.1–4.57.2" in section
    assert "4.56.2 ∅ → 4.57.1 ✓ (exact)" in section
    assert '<a href="#qwen3_vl/explicit_class/default">4.56.2/qwen3_vl-explicit_class-default-load</a>' in section
    two = report.model_copy(update={"releases": report.releases[:2]})
    assert '<section id="history">' not in render_html(two)


def test_a_boundary_between_releases_listed_by_hand_is_exact_only_where_the_index_says_so(tmp_path: Path) -> None:
    """`--transformers 4.56.0 4.57.2` lists two releases with three between: not neighbours (claimed exact before)."""
    from reports.history import _neighbours

    report = report_of(write_results(tmp_path / "results", unknown_until="4.56.2"))
    listed = ReleaseSet(requested=("4.56.0", "4.56.2", "4.57.2"), releases=("4.56.0", "4.56.2", "4.57.2"))
    assert _neighbours(report.model_copy(update={"release_set": listed})) == set()
    indexed = listed.model_copy(update={"index_releases": tuple(RELEASES)})
    assert _neighbours(report.model_copy(update={"release_set": indexed})) == set(zip(RELEASES, RELEASES[1:]))


def test_the_store_report_covers_every_stored_release_and_leaves_other_code_out(
        tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from compat_matrix.envs.release_sets import ReleaseIndex
    from compat_matrix.run import store_report
    from compat_matrix.run.store import Keys, Store, keep
    from reports.cli import read_release_set

    results = write_results(tmp_path / "results", unknown_until="4.56.2")
    lines = [{**json.loads(text), "libraries": {"tokenizers": "0.22.1", "huggingface_hub": "1.2.1"}}
             for path in sorted(results.glob("*.jsonl")) for text in path.read_text().splitlines()]
    store, keys, stale = Store(tmp_path / "store"), Keys(MATRIX), Keys(MATRIX)
    stale._code = {probe: "an older harness" for probe in stale._code}
    keep(store, keys, MATRIX, [line for line in lines if line["transformers"] != "4.57.1"])
    keep(store, stale, MATRIX, [{**line, "status": "fail"} for line in lines if line["transformers"] == "4.57.1"])
    index = ReleaseIndex(tmp_path / "index.json", lambda: tuple(RELEASES))

    out = tmp_path / "out"
    assert store_report.write_store_results(store, keys, out, index) == ["4.56.0", "4.56.1", "4.56.2", "4.57.2"]
    report = build_report([out / "results"]).model_copy(update={"release_set": read_release_set(out / "release-set.json")})
    [timeline] = [t for t in timelines(report) if t.model == "qwen3_vl"]
    assert timeline.spans() == [("unsupported", "4.56.0", "4.56.2"), ("pass", "4.57.2", "4.57.2")]
    [boundary] = timeline.boundaries
    assert (boundary.before, boundary.after, boundary.exact) == ("4.56.2", "4.57.2", False)  # 4.57.1: stored by other code

    keep(store, keys, MATRIX, [line for line in lines if line["transformers"] == "4.57.1"])
    monkeypatch.setattr(store_report, "ReleaseIndex", lambda: index)
    assert main(["--matrix", str(DEFAULT_MATRIX), "history", "--from-store", "--store", str(store.root)]) == 0
    printed = capsys.readouterr().out
    assert "**qwen3\\_vl** explicit\\_class · default: 4.56.2 ➖ → 4.57.1 ✅ (exact)" in printed
    assert "Expectation ranges the history contradicts: 0" in printed


def test_published_only_runs_a_releases_own_cells_only_where_they_are_what_users_load(
        tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The history reads as-published cells: phi3 (written_by 4.49.0) runs its own cells in 4.49.0 only,
    the hub entry everywhere; the as-published cells of the other releases come after, as in every run.
    A release that writes no as-published checkpoint (5.0.0) runs its own cells with its as-published
    ones, in their pytest session (tests/test_joint_session.py): they wait for `_other_checkpoints`."""
    import argparse

    from compat_matrix.run import runner
    from compat_matrix.spec.cells import select_cells

    ran: dict[str, list[Cell]] = {}

    class Ran:
        interrupted, lines = False, []

    def fake_release(matrix, matrix_file, release, cells, *args, **kwargs):  # type: ignore[no-untyped-def]
        ran[release] = cells
        return Ran()

    def deferring(*args, **kwargs):  # type: ignore[no-untyped-def]
        ran.update(args[5])
        return False

    monkeypatch.setattr(runner, "run_release", fake_release)
    monkeypatch.setattr(run_commands, "_other_checkpoints", deferring)
    monkeypatch.setattr(run_commands, "report_into", lambda *args: 0)
    cells = select_cells(MATRIX, ["phi3", "qwen2_5_vl_3b_hub"], None, ["load"])
    args = argparse.Namespace(out=tmp_path, workers=1, resume=False, no_store=True, published_only=True,
                              round_trip_only=False, cross_release=False, matrix=str(DEFAULT_MATRIX),
                              fail_on_regression=False, baseline=None)
    assert run_commands._run(MATRIX, cells, ["4.49.0", "5.0.0"], args) == 0
    assert {c.model for c in ran["4.49.0"]} == {"phi3", "qwen2_5_vl_3b_hub"} and len(ran["4.49.0"]) == len(cells)
    assert {c.model for c in ran["5.0.0"]} == {"qwen2_5_vl_3b_hub"}


def test_as_published_cells_are_checked_against_the_ranges_too(tmp_path: Path) -> None:
    """A `--published-only` history has the as-published cells alone (`cell@written_by`): a range too wide
    is found from them as from same-release cells (they were left out, and the range looked right)."""
    results = write_results(tmp_path / "results", unknown_until="4.56.0")
    for path in results.glob("*.jsonl"):
        lines = [json.loads(text) for text in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({**line, "cell_id": f"{line['cell_id']}@4.55.0", "saved_by": "4.55.0"}) + "\n"
                                for line in lines))
    [found] = [d for d in check_expectations(MATRIX, report_of(results)) if "qwen3_vl" in d.models]
    assert found.wrong == ("4.56.1", "4.56.2") and found.corrected == "<4.56.1"


def test_a_release_whose_cells_were_all_skipped_does_not_contradict_a_range(tmp_path: Path) -> None:
    """A release stored in part (a hub entry skipped for the network, the rest still running) cannot say
    the failure is gone: it was listed as 'in range but no cell fails' before."""
    results = write_results(tmp_path / "results", unknown_until="4.57.2")  # unsupported everywhere: past '<4.57.1'
    skipped = results / "tf4.56.1.jsonl"
    skipped.write_text("".join(json.dumps({**json.loads(text), "status": "skipped", "error_type": None,
                                           "message": "needs the network"}) + "\n"
                               for text in skipped.read_text().splitlines()))
    [found] = [d for d in check_expectations(MATRIX, report_of(results)) if "qwen3_vl" in d.models]
    assert "4.56.1" not in found.releases and found.wrong == ("4.57.1", "4.57.2")


def test_a_probe_one_release_lacks_makes_no_boundary(tmp_path: Path) -> None:
    """The store keeps no `error` line: a release without a probe's cell must not look like a change."""
    results = write_results(tmp_path / "results", unknown_until="4.56.2")
    last = results / "tf4.57.2.jsonl"
    lines = [json.loads(text) for text in last.read_text().splitlines()]
    extra = {**lines[0], "cell_id": lines[0]["cell_id"].replace("-load", "-surface"), "probe": "surface",
             "status": "skipped", "message": "needs torchvision"}
    last.write_text("".join(json.dumps(line) + "\n" for line in [*lines, extra]))
    [timeline] = [t for t in timelines(report_of(results)) if t.model == "qwen3_vl"]
    assert timeline.spans() == [("unsupported", "4.56.0", "4.56.2"), ("pass", "4.57.1", "4.57.2")]
    assert len(timeline.boundaries) == 1


def planted_index(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A package index answer cached an hour ago: RELEASES, with a pre-release and a later release around them."""
    import time

    monkeypatch.setenv("COMPAT_MATRIX_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "index").mkdir(parents=True)
    versions = ["4.55.4", *RELEASES[:3], "4.57.0rc1", *RELEASES[3:], "4.57.3"]
    (tmp_path / "cache" / "index" / "transformers.json").write_text(
        json.dumps({"fetched_at": time.time() - 3600, "versions": versions}))


def test_the_history_of_a_runs_results_folder_reads_the_runs_release_set(
        tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """`compat-matrix history OUT/results` called 5.20.0 -> 5.20.1 'not adjacent on the index' (every
    boundary): it built the report without the run's release-set.json, which the run's own report reads."""
    planted_index(tmp_path, monkeypatch)
    monkeypatch.setattr(run_commands, "ready_to_run", lambda out: None)
    monkeypatch.setattr(run_commands, "_run", lambda *args: 0)
    out = tmp_path / "out"
    assert main(["--matrix", str(DEFAULT_MATRIX), "run", "--transformers", *RELEASES, "--models", "qwen3_vl",
                 "--out", str(out)]) == 0
    write_results(out / "results", unknown_until="4.56.2")
    capsys.readouterr()
    for source in (out / "results", out):
        assert main(["--matrix", str(DEFAULT_MATRIX), "history", str(source)]) == 0
        printed = capsys.readouterr().out
        assert "4.56.2 ➖ → 4.57.1 ✅ (exact)" in printed and "not adjacent" not in printed


def test_a_run_into_a_folder_with_an_earlier_runs_results_spans_both_on_the_index(
        tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Its report shows both runs' releases: the index span of the later run alone (4.57.1-4.57.2) made
    the earlier run's boundary 4.56.2 -> 4.57.1 'not adjacent'."""
    from reports.cli import read_release_set

    planted_index(tmp_path, monkeypatch)
    monkeypatch.setattr(run_commands, "ready_to_run", lambda out: None)
    monkeypatch.setattr(run_commands, "_run", lambda *args: 0)
    lines = write_results(tmp_path / "lines", unknown_until="4.56.2")
    out = tmp_path / "out"
    (out / "results").mkdir(parents=True)

    def ran(releases: list[str]) -> None:  # as a run names them: tf4_56_0.jsonl
        for release in releases:
            shutil.copy(lines / f"tf{release}.jsonl", out / "results" / f"tf{release.replace('.', '_')}.jsonl")

    ran(RELEASES[:3])
    assert main(["--matrix", str(DEFAULT_MATRIX), "run", "--transformers", "4.57.1", "4.57.2", "--models", "qwen3_vl",
                 "--out", str(out)]) == 0
    chosen = read_release_set(out / "release-set.json")
    assert chosen.releases == ("4.57.1", "4.57.2") and chosen.index_releases == tuple(RELEASES)
    ran(RELEASES[3:])
    report = build_report([out / "results"]).model_copy(update={"release_set": chosen})
    [timeline] = [t for t in timelines(report) if t.model == "qwen3_vl"]
    assert [(b.before, b.after, b.exact) for b in timeline.boundaries] == [("4.56.2", "4.57.1", True)]
