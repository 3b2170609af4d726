"""Selecting cells by load profile, and by exact id: the CLI's selection reaches pytest unchanged,
so a release's run (bisect's above all) runs exactly the cells asked for and its progress counts them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from compat_matrix.run.runner import selection_args
from compat_matrix.spec.cells import Cell, select_cells
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix

REPO = Path(__file__).resolve().parent.parent
MATRIX = load_matrix(DEFAULT_MATRIX, check_model_types=False)


def test_profiles_select_only_their_cells_and_a_model_without_one_has_none() -> None:
    cells = select_cells(MATRIX, ["llama", "qwen2_5_vl"], ["smart"], ["forward"], profiles=["vlm_r1", "trainer"])
    assert [c.id for c in cells] == ["llama-smart-trainer-forward", "qwen2_5_vl-smart-vlm_r1-forward",
                                     "qwen2_5_vl-smart-trainer-forward"]


def test_an_unknown_profile_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown load_kwargs profile.*'vlm_r1'.*default, trainer"):
        select_cells(MATRIX, ["llama"], profiles=["vlm_r1"])


def test_a_product_selection_passes_filters_only(tmp_path: Path) -> None:
    cells = select_cells(MATRIX, ["llama"], ["smart", "explicit_class"], ["load", "forward"], profiles=["default"])
    args = selection_args(MATRIX, cells, None, tmp_path / "cells.txt")
    assert "--cm-cells" not in args and not (tmp_path / "cells.txt").exists()
    assert args[args.index("--cm-profiles") + 1] == "default"


def test_cells_that_are_no_product_of_filters_are_listed_by_id(tmp_path: Path) -> None:
    cells = [Cell("llama", "smart", "default", "forward"), Cell("qwen2", "explicit_class", "trainer", "load")]
    args = selection_args(MATRIX, cells, None, tmp_path / "cells.txt")
    assert args[args.index("--cm-cells") + 1] == str(tmp_path / "cells.txt")
    assert (tmp_path / "cells.txt").read_text().split() == [c.id for c in cells]


def collect(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["compat_tests.plugin"]\n')
    (tmp_path / "test_cells.py").write_text("from compat_tests.test_matrix import test_cell  # noqa: F401\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "COMPAT_MATRIX_ENV": "selection"}
    return subprocess.run([sys.executable, "-m", "pytest", str(tmp_path), "-p", "no:cacheprovider", "-p", "no:xdist",
                           "--rootdir", str(tmp_path), "--collect-only", "-q", "--cm-results", str(tmp_path / "results"),
                           *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)


def collected(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.rsplit("[", 1)[1].rstrip("]") for line in done.stdout.splitlines() if "::test_cell[" in line]


def test_the_plugin_collects_only_the_profiles_and_listed_cells_asked_for(tmp_path: Path) -> None:
    by_profile = collect(tmp_path, "--cm-models", "qwen2_5_vl", "--cm-strategies", "smart", "--cm-probes", "forward",
                         "--cm-profiles", "vlm_r1")
    assert collected(by_profile) == ["qwen2_5_vl-smart-vlm_r1-forward"], by_profile.stdout[-2000:]
    cells = [Cell("llama", "smart", "default", "forward"), Cell("qwen2", "explicit_class", "trainer", "load")]
    args = selection_args(MATRIX, cells, None, tmp_path / "cells.txt")
    listed = collect(tmp_path, *args)
    assert collected(listed) == [c.id for c in cells], listed.stdout[-2000:]


def test_a_listed_id_outside_the_selection_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "cells.txt").write_text("llama-smart-default-forward\nllama-smart-nonesuch-forward\n")
    done = collect(tmp_path, "--cm-models", "llama", "--cm-cells", str(tmp_path / "cells.txt"))
    assert done.returncode != 0 and "not in this matrix's selection, e.g. 'llama-smart-nonesuch-forward'" in done.stdout
