"""A release's own cells in the pytest session of its as-published cells: one tox and pytest start
per release of a history run instead of two, each line still in its own file, stored and error-filled
as before (compat_matrix/run/joint_session.py, runner.run_joint, cli/run.py's joint_releases)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compat_matrix.cli import run as run_commands
from compat_matrix.run import joint_session, runner
from compat_matrix.run.store import FROM_STORE, Keys, Store, keep
from compat_matrix.spec.cells import Cell, select_cells
from compat_matrix.spec.records import cell_record
from compat_matrix.spec.results_io import ResultsWriter, read_lines
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix
from tests.test_store import line as stored_line

MATRIX = load_matrix(DEFAULT_MATRIX, check_model_types=False)
OWN = select_cells(MATRIX, ["qwen2_5_vl_3b_hub"], ["smart", "explicit_class"], ["load"], profiles=["default"])
PUBLISHED = select_cells(MATRIX, ["qwen3", "llama"], ["smart"], ["load", "forward"], profiles=["default"], published_in="5.0.0")


def line(cell: Cell, status: str = "pass", release: str = "5.0.0") -> dict:
    record = cell_record(MATRIX, cell, "tf" + release.replace(".", "_"), {
        "transformers": release, "transformers_requested": release, "torch": "2.13.0", "python": "3.11.7",
        "device": "cpu", "gpu_name": None, "git_commit": None,
        "libraries": {"tokenizers": "0.22.2", "huggingface_hub": "1.2.1", "trl": None, "peft": None, "accelerate": None}, "packages": {}})
    record.update(status=status, error_type=None, message="")
    return record


def test_the_plugin_names_agree_with_the_runner() -> None:
    assert (joint_session.OWN_CELLS_ENV, joint_session.OWN_LOCK_HELD_ENV) == (runner.OWN_CELLS_ENV, runner.OWN_LOCK_HELD_ENV)
    assert runner.JOINT_PLUGIN == joint_session.__name__


def test_a_line_is_routed_by_its_cell_id_with_or_without_xdists_group_suffix() -> None:
    own, published = "compat_tests/test_matrix.py::test_cell[llama-smart-default-load]", \
        "compat_tests/test_matrix.py::test_cell[llama-smart-default-load@4.45.0]"
    assert joint_session._is_own(own) is True and joint_session._is_own(own + "@llama") is True
    assert joint_session._is_own(published) is False and joint_session._is_own(published + "@llama@4.45.0") is False
    assert joint_session._is_own("tests/test_x.py::test_other") is None


def test_only_releases_whose_own_checkpoints_nobody_reads_are_joined() -> None:
    """A written_by release's own cells build what the others' as-published cells load: it runs them first."""
    writers = {entry.written_by for entry in MATRIX.models if entry.written_by}
    assert "4.49.0" in writers and "5.12.0" not in writers
    assert run_commands.joint_releases(MATRIX, ["4.49.0", "5.12.0", "latest", "5.24.0"]) == {"5.12.0", "5.24.0"}


def _fake_tox(started: list[tuple[str, list[str], list[str]]], status: str = "pass",  # type: ignore[no-untyped-def]
              facts: object = None):
    """`_run_tox` without tox: the lines pytest would write, each kind to its file; one entry per start."""

    def fake(run: runner.ReleaseRun, matrix: object, matrix_file: Path, out: Path, left: list[Cell], *args: object,
             joined: object = None, **kwargs: object) -> None:
        own = list(joined.cells) if joined is not None else []  # type: ignore[attr-defined]
        started.append((run.results.name, [c.id for c in left], [c.id for c in own]))
        for target, cells in ((run, left), *(((joined.run, own),) if joined is not None else ())):  # type: ignore[attr-defined]
            writer = ResultsWriter(target.results, fresh=False)
            for cell in cells:
                writer.write(line(cell, status, run.release) if facts is None else {**stored_line(cell, facts=facts), "status": status})
            writer.close()
        run.exit_code = 0

    return fake


def test_one_start_runs_both_kinds_and_each_line_lands_in_its_own_file(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[tuple[str, list[str], list[str]]] = []
    monkeypatch.setattr(runner, "_run_tox", _fake_tox(started))
    mine, rest = runner.run_joint(MATRIX, DEFAULT_MATRIX, "5.0.0", OWN, PUBLISHED, tmp_path, 1, "5.0.0")
    assert started == [("tf5_0_0-cross.jsonl", [c.id for c in PUBLISHED], [c.id for c in OWN])]
    assert [x["cell_id"] for x in read_lines(tmp_path / "results" / "tf5_0_0.jsonl")] == [c.id for c in OWN]
    assert [x["cell_id"] for x in read_lines(tmp_path / "results" / "tf5_0_0-cross.jsonl")] == [c.id for c in PUBLISHED]
    assert [x["cell_id"] for x in mine.lines] == [c.id for c in OWN] and len(rest.lines) == len(PUBLISHED)


def test_a_kind_the_store_holds_leaves_the_session_to_the_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stored own cells are copied in, as run_release does; pytest starts for the as-published ones alone,
    and what ran is stored."""
    from dataclasses import replace

    from tests.test_store import FACTS, fake_env

    facts = replace(FACTS, transformers="5.0.0")
    started: list[tuple[str, list[str], list[str]]] = []
    monkeypatch.setattr(runner, "_run_tox", _fake_tox(started, "fail", facts))
    store = runner.StoreUse(Store(tmp_path / "store"), Keys(MATRIX))
    keep(store.store, store.keys, MATRIX, [stored_line(c, facts=facts) for c in OWN])
    fake_env(tmp_path / "tox" / "tf5_0_0", facts)
    monkeypatch.setattr(runner, "tox_setup", lambda *a, **k: argparse.Namespace(workdir=tmp_path / "tox"))
    mine, rest = runner.run_joint(MATRIX, DEFAULT_MATRIX, "5.0.0", OWN, PUBLISHED, tmp_path / "out", 1, "5.0.0", store=store)
    assert [(name, own) for name, _, own in started] == [("tf5_0_0-cross.jsonl", [])]
    assert all(x.get(FROM_STORE) for x in mine.lines) and len(mine.lines) == len(OWN)
    assert {x["status"] for x in rest.lines} == {"fail"}
    assert len(store.store.entries("5.0.0")) == len(OWN) + len(PUBLISHED), "the as-published lines that ran are stored"


def _tox_that_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tox is a script here: it counts its starts and fails as an environment that cannot be installed does."""
    starts = tmp_path / "starts"
    script = f"open({str(starts)!r}, 'a').write('x'); print('install_deps> uv pip install transformers==5.0.0'); " \
             "print('No solution found when resolving dependencies'); raise SystemExit(1)"
    setup = argparse.Namespace(root=tmp_path, workdir=tmp_path / "tox", listed_envs=lambda: set(), environ=lambda: {},
                               tox=lambda *args: [sys.executable, "-c", script])
    monkeypatch.setattr(runner, "tox_setup", lambda *a, **k: setup)
    return starts


def test_an_environment_that_fails_gives_both_files_their_error_lines_from_one_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    starts = _tox_that_fails(tmp_path, monkeypatch)
    mine, rest = runner.run_joint(MATRIX, DEFAULT_MATRIX, "5.0.0", OWN, PUBLISHED, tmp_path / "out", 1, "5.0.0")
    assert starts.read_text() == "x", "one tox start for both kinds"
    assert [x["cell_id"] for x in mine.lines] == [c.id for c in OWN]
    assert [x["cell_id"] for x in rest.lines] == [c.id for c in PUBLISHED]
    for each in (*mine.lines, *rest.lines):
        assert each["status"] == "error" and each["error_type"] == "InstallError"
        assert "could not be set up" in each["message"] and "No solution found" in each["message"]


def _args(tmp_path: Path, **extra: object) -> argparse.Namespace:
    values: dict[str, object] = dict(out=tmp_path, workers=1, resume=False, no_store=True, published_only=True,
                                     round_trip_only=False, cross_release=False, matrix=str(DEFAULT_MATRIX),
                                     fail_on_regression=False, baseline=None, models=["phi3", "qwen2_5_vl_3b_hub"],
                                     strategies=["smart"], probes=["load"], profiles=["default"])
    values.update(extra)
    return argparse.Namespace(**values)


def test_a_history_run_starts_pytest_once_for_a_release_nobody_reads_and_twice_for_a_writer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """4.49.0 writes phi3's as-published checkpoint: its own cells run first, before any reader's; 5.0.0's
    own cells (the hub entry) run in its as-published cells' session. Before: two starts each."""
    import compat_matrix.run.published as published

    started: list[tuple[str, list[str], list[str]]] = []
    monkeypatch.setattr(runner, "_run_tox", _fake_tox(started))
    monkeypatch.setattr(published, "build_writers", lambda *a, **k: None)
    monkeypatch.setattr(run_commands, "report_into", lambda *a: 0)
    args = _args(tmp_path)
    cells = select_cells(MATRIX, args.models, args.strategies, args.probes, profiles=args.profiles)
    assert run_commands._run(MATRIX, cells, ["4.49.0", "5.0.0"], args) == 0
    assert [(name, len(left), len(own)) for name, left, own in started] == [
        ("tf4_49_0.jsonl", 2, 0), ("tf5_0_0-cross.jsonl", 1, 1)]
    assert sorted(p.name for p in (tmp_path / "results").glob("*.jsonl")) == [
        "tf4_49_0.jsonl", "tf5_0_0-cross.jsonl", "tf5_0_0.jsonl"]


def test_with_cross_release_every_release_runs_its_own_cells_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted: with --cross-release the others read each release's own checkpoints, so nothing is joined."""
    import compat_matrix.run.published as published

    started: list[tuple[str, list[str], list[str]]] = []
    monkeypatch.setattr(runner, "_run_tox", _fake_tox(started))
    monkeypatch.setattr(published, "build_writers", lambda *a, **k: None)
    monkeypatch.setattr(run_commands, "report_into", lambda *a: 0)
    args = _args(tmp_path, published_only=False, cross_release=True, models=["qwen2"])
    cells = select_cells(MATRIX, args.models, args.strategies, args.probes, profiles=args.profiles)
    assert run_commands._run(MATRIX, cells, ["5.0.0", "5.1.0"], args) == 0
    assert [name for name, _, own in started if not own] == [
        "tf5_0_0.jsonl", "tf5_1_0.jsonl", "tf5_0_0-cross.jsonl", "tf5_1_0-cross.jsonl"]


def test_an_interrupted_joint_session_stops_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import compat_matrix.run.published as published

    started: list[tuple[str, list[str], list[str]]] = []
    fake = _fake_tox(started)

    def interrupted(run: runner.ReleaseRun, *args: object, joined: object = None, **kwargs: object) -> None:
        fake(run, *args, joined=joined, **kwargs)
        run.interrupted = True
        if joined is not None:
            joined.run.interrupted = True  # type: ignore[attr-defined]

    monkeypatch.setattr(runner, "_run_tox", interrupted)
    monkeypatch.setattr(published, "build_writers", lambda *a, **k: None)
    monkeypatch.setattr(run_commands, "report_into", lambda *a: 0)
    args = _args(tmp_path, models=["qwen2_5_vl_3b_hub", "qwen3"])
    cells = select_cells(MATRIX, args.models, args.strategies, args.probes, profiles=args.profiles)
    assert run_commands._run(MATRIX, cells, ["5.0.0", "5.1.0"], args) == 130
    assert [name for name, _, _ in started] == ["tf5_0_0-cross.jsonl"], "5.1.0 never starts"
    assert "[tf5_0_0] interrupted: keeping the" in capsys.readouterr().err


@pytest.mark.slow
def test_the_plugin_routes_each_line_to_its_file_under_xdist(tmp_path: Path) -> None:
    """The real session, in this (unit) environment, one xdist worker: the hub entry's own cells (skipped,
    no hub here) beside as-published cells (whatever this machine's checkpoints give): every cell has its
    line in its own file and nowhere else. Planted: a cross-release id in the own listing is refused."""
    own = select_cells(MATRIX, ["qwen2_5_vl_3b_hub"], ["smart"], ["load"], profiles=["default"])
    listing = tmp_path / "own.txt"
    listing.write_text("".join(f"{c.id}\n" for c in own))
    results = tmp_path / "results"
    command = [sys.executable, "-m", "pytest", str(runner.REPO / "compat_tests"), "-p", "no:cacheprovider", "-q", "-n", "1",
               "-p", runner.JOINT_PLUGIN, "--cm-results", str(results), "--cm-models", "qwen2_5_vl_3b_hub,qwen3",
               "--cm-strategies", "smart", "--cm-probes", "load", "--cm-profiles", "default", "--cm-published"]
    environ = {**os.environ, runner.OWN_CELLS_ENV: str(listing), "HF_HUB_OFFLINE": "1", "COMPAT_MATRIX_ENV": "tfjoint"}
    done = subprocess.run(command, capture_output=True, text=True, cwd=runner.REPO, env=environ, timeout=600)
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    version = json.loads(subprocess.check_output([sys.executable, "-c", "import json, transformers; "
                                                  "print(json.dumps(transformers.__version__))"]))
    published = select_cells(MATRIX, ["qwen2_5_vl_3b_hub", "qwen3"], ["smart"], ["load"], profiles=["default"],
                             published_in=version)
    assert [x["cell_id"] for x in read_lines(results / "tfjoint.jsonl")] == [c.id for c in own]
    assert sorted(x["cell_id"] for x in read_lines(results / "tfjoint-cross.jsonl")) == sorted(c.id for c in published)
    listing.write_text("qwen3-smart-default-load@4.51.3\n")
    refused = subprocess.run(command, capture_output=True, text=True, cwd=runner.REPO, env=environ, timeout=600)
    assert refused.returncode == 4 and "is not an own cell id" in refused.stdout + refused.stderr
