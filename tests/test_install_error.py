"""A release whose environment cannot be installed still reports every selected cell, as `error`
with the install error, and the run goes on (planted: a release that is on no package index)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from compat_matrix.run.runner import REPO, run_release, tox_available
from compat_matrix.spec.cells import select_cells
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix

pytestmark = pytest.mark.slow


def test_an_uninstallable_release_gets_an_error_line_per_cell(tmp_path: Path) -> None:
    if not tox_available():
        pytest.skip("tox is not installed in this interpreter (the unit tox env has it: tox -e unit)")
    matrix = load_matrix(DEFAULT_MATRIX, check_model_types=False)
    cells = select_cells(matrix, ["llama"], ["smart"], ["load", "forward"])
    progress = io.StringIO()
    try:
        run = run_release(matrix, DEFAULT_MATRIX, "9999.0.1", cells, tmp_path, workers=1, stream=progress)
    finally:
        shutil.rmtree(REPO / ".tox" / "tf9999_0_1", ignore_errors=True)
    assert run.exit_code != 0
    assert [line["cell_id"] for line in run.lines] == [c.id for c in cells]
    for line in run.lines:
        assert line["status"] == "error" and line["error_type"] == "InstallError"
        assert "could not be set up" in line["message"] and "9999.0.1" in line["message"]
        assert line["transformers"] == "9999.0.1" and line["env"] == "tf9999_0_1"
    assert f"[tf9999_0_1] {len(cells)}/{len(cells)} cells done" in progress.getvalue()
