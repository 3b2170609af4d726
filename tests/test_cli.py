"""The CLI's cheap commands and its answers to wrong arguments (the runs are in test_cli_run.py)."""

from __future__ import annotations

import json

import pytest

from compat_matrix.cli import main
from compat_matrix.envs.releases import check_releases, nearest, UnknownRelease

AVAILABLE = ("5.1.0", "5.0.0", "4.57.6", "4.57.5", "4.56.2", "4.49.0")


def test_list_counts_cells(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "qwen2_5_vl" in out and "auto_vision2seq" in out and "cells: " in out


def test_plan_is_one_line_of_job_matrix_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert {"release": "latest", "env": "tflatest"} in plan["include"]
    assert {"release": "4.57.6", "env": "tf4_57_6"} in plan["include"]


def test_plan_takes_main(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--transformers", "main", "4.57.6"]) == 0
    assert json.loads(capsys.readouterr().out)["include"][0] == {"release": "main", "env": "tfmain"}


def test_unknown_release_names_the_nearest() -> None:
    with pytest.raises(UnknownRelease, match="4.99.0 is not on the package index; nearest: .*4.57.6, 5.0.0"):
        check_releases(["4.57.6", "4.99.0"], AVAILABLE)
    assert nearest("4.57.0", AVAILABLE, 4) == ["4.49.0", "4.56.2", "4.57.5", "4.57.6"]
    check_releases(["latest", "main", "4.49.0"], AVAILABLE)


@pytest.mark.parametrize(("argv", "says"), [
    (["run", "--models", "llama", "gpt9"], "unknown model ['gpt9']; this matrix has: llama"),
    (["run", "--strategies", "auto_magic"], "unknown strategy ['auto_magic']"),
    (["check", "--from", "4.57.6", "--to", "5.0.0", "--probes", "fly"], "unknown probe ['fly']"),
    (["prefetch", "--models", "gpt9"], "unknown model(s) ['gpt9']"),
])
def test_wrong_arguments_exit_2_listing_what_exists(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
