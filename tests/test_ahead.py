"""The next release's environment is made while the current one runs (compat_matrix/run/ahead.py): before
its turn, with the trl/peft its cells need; a make that fails still leaves the release its error lines."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compat_matrix.cli import run as run_commands
from compat_matrix.envs.tox_setup import tox_setup
from compat_matrix.run import ahead, runner
from compat_matrix.spec.cells import Cell, select_cells
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix
from tests.test_joint_session import _args, _fake_tox

MATRIX = load_matrix(DEFAULT_MATRIX, check_model_types=False)

FAKE_TOX = """
import os, sys, time
from pathlib import Path
workdir, journal, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
env, args = os.environ["COMPAT_MATRIX_ENV_NAME"], sys.argv[4:]
with journal.open("a") as out:
    step = "train" if "exec" in args else "make" if "--notest" in args else "run"
    out.write(f"{step} {env} {os.environ.get('COMPAT_MATRIX_PROBES', '')}\\n")
if mode == "slow":
    time.sleep(60)
if mode == "fail":
    print("install_deps> uv pip install transformers")
    print("No solution found when resolving dependencies")
    sys.exit(1)
if step == "make":
    (workdir / env).mkdir(parents=True, exist_ok=True)
"""


def _fake_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str = "ok") -> Path:
    """tox is a script: it notes each call in a journal, and `--notest` makes the environment's folder."""
    journal, workdir = tmp_path / "journal", tmp_path / "tox"
    journal.write_text("")
    setup = argparse.Namespace(root=tmp_path, workdir=workdir, listed_envs=lambda: set(), environ=lambda: {},
                               tox=lambda *args: [sys.executable, "-c", FAKE_TOX, str(workdir), str(journal), mode, *args])
    for module in (ahead, runner):
        monkeypatch.setattr(module, "tox_setup", lambda *a, **k: setup)
    return journal


def _history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, releases: list[str],
             fake_tox: object | None = None) -> list[str]:
    import compat_matrix.run.published as published

    if fake_tox is not None:
        monkeypatch.setattr(runner, "_run_tox", fake_tox)
    monkeypatch.setattr(published, "build_writers", lambda *a, **k: None)
    monkeypatch.setattr(run_commands, "report_into", lambda *a: 0)
    args = _args(tmp_path / "out", models=["qwen2_5_vl_3b_hub", "qwen3"], probes=["load", "trl_grpo"])
    cells = select_cells(MATRIX, args.models, args.strategies, args.probes, profiles=args.profiles)
    code = run_commands._run(MATRIX, cells, releases, args)
    assert not ahead._MAKING, "no make outlives the run"
    return [str(code)]


def test_the_next_releases_environment_is_made_before_its_turn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = _fake_setup(tmp_path, monkeypatch)
    seen: dict[str, tuple[bool, bool, str]] = {}
    started: list[tuple[str, list[str], list[str]]] = []
    fake = _fake_tox(started)

    def watching(run: runner.ReleaseRun, *args: object, **kwargs: object) -> None:
        later = {"5.0.0": "tf5_1_0", "5.1.0": "tf5_2_0", "5.2.0": ""}[run.release]
        folder = tmp_path / "tox" / later
        seen[run.release] = ((tmp_path / "tox" / run.env).is_dir(), folder in ahead._MAKING, journal.read_text())
        fake(run, *args, **kwargs)

    assert _history(tmp_path, monkeypatch, ["5.0.0", "5.1.0", "5.2.0"], watching) == ["0"]
    assert seen["5.0.0"][:2] == (False, True), "the first release's own tox makes it; the second's is under way"
    assert seen["5.1.0"][:2] == (True, True) and "make tf5_1_0" in seen["5.1.0"][2]
    assert seen["5.2.0"][0] and f"train tf5_2_0 {','.join(sorted({'load', 'trl_grpo'}))}" in seen["5.2.0"][2], \
        "trl/peft for the probes its cells run (trl_grpo trains)"
    assert "tf5_0_0" not in journal.read_text(), "nothing before the first release"


def test_a_release_whose_make_ahead_failed_still_gets_its_error_lines(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted: every tox call fails as an uninstallable release does, the make-ahead of 5.1.0 included."""
    journal = _fake_setup(tmp_path, monkeypatch, "fail")
    assert _history(tmp_path, monkeypatch, ["5.0.0", "5.1.0"]) == ["0"]
    calls = journal.read_text().splitlines()
    assert sorted(c.split()[:2] for c in calls) == [["make", "tf5_1_0"], ["run", "tf5_0_0"], ["run", "tf5_1_0"]], \
        "made ahead (and failed, so no trl/peft), then 5.1.0's own tox tried again"
    from compat_matrix.spec.results_io import read_lines

    for name in ("tf5_1_0.jsonl", "tf5_1_0-cross.jsonl"):
        lines = read_lines(tmp_path / "out" / "results" / name)
        assert lines and all(x["status"] == "error" and x["error_type"] == "InstallError" for x in lines)
        assert all("No solution found" in x["message"] for x in lines), "the release's own log, not the make's"


def test_an_environment_still_being_made_is_stopped_with_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_setup(tmp_path, monkeypatch, "slow")
    cells = [Cell("qwen3", "smart", "default", "load", "4.51.3")]
    assert ahead.make_ahead(MATRIX, DEFAULT_MATRIX, "5.3.0", cells, tmp_path / "out")
    assert not ahead.make_ahead(MATRIX, DEFAULT_MATRIX, "5.3.0", cells, tmp_path / "out"), "one make per environment"
    [(process, _)] = ahead._MAKING.values()
    ahead.stop_ahead()
    assert process.poll() is not None and not ahead._MAKING


def test_nothing_is_made_for_a_present_environment_or_a_moving_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = _fake_setup(tmp_path, monkeypatch)
    (tmp_path / "tox" / "tf5_3_0").mkdir(parents=True)
    cells = [Cell("qwen3", "smart", "default", "load", "4.51.3")]
    assert not ahead.make_ahead(MATRIX, DEFAULT_MATRIX, "5.3.0", cells, tmp_path / "out")
    assert not ahead.make_ahead(MATRIX, DEFAULT_MATRIX, "latest", cells, tmp_path / "out")
    assert journal.read_text() == "" and not ahead._MAKING


def test_two_releases_environments_share_no_tox_folder(tmp_path: Path) -> None:
    """A release runs while the next one's environment is made: both are tox's `tfany`, and tox empties
    its log folder as it starts, so a shared `.tox/tfany/log` failed a release of a history run
    (FileNotFoundError). Read from tox itself (`tox config`): each release's folders are its own."""
    setup = tox_setup(DEFAULT_MATRIX, tmp_path, MATRIX.install)
    folders = {}
    for release in ("5.21.0", "5.22.0"):
        args, extra_env = runner.tox_command(release, setup.listed_envs())
        shown = subprocess.run(setup.tox("config", *args, "-k", "env_dir", "env_tmp_dir", "env_log_dir"),
                               capture_output=True, text=True, cwd=setup.root, timeout=120,
                               env={**os.environ, **extra_env, **setup.environ()})
        assert shown.returncode == 0, shown.stderr[-2000:]
        values = dict(line.split(" = ", 1) for line in shown.stdout.splitlines() if " = " in line)
        env_dir = Path(values["env_dir"])
        assert env_dir.name == "tf" + release.replace(".", "_")
        assert all(Path(values[key]).is_relative_to(env_dir) for key in ("env_tmp_dir", "env_log_dir")), values
        folders[release] = set(values.values())
    assert not folders["5.21.0"] & folders["5.22.0"]
