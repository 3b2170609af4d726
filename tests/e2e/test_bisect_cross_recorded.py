"""After scripts/test.sh's cross-release bisect: which writing release's llama checkpoint 4.57.6 first
fails to read (writers 4.57.6 .. 5.1.0, smart, load), and the saved_by range --record wrote.

Skipped (with the reason) when no such run is named (--cross-bisect-dir).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix


@pytest.fixture(scope="module")
def bisect_dir(pytestconfig: pytest.Config) -> Path:
    folder = pytestconfig.getoption("--cross-bisect-dir")
    if not folder:
        pytest.skip("no --cross-bisect-dir given: scripts/test.sh passes the folder of the cross-release bisect it ran")
    return Path(folder)


@pytest.fixture(scope="module")
def found(bisect_dir: Path) -> dict[str, Any]:
    return json.loads((bisect_dir / "bisect.json").read_text(encoding="utf-8"))


def test_the_first_writer_whose_checkpoint_4_57_6_cannot_read_is_5_0_0(found: dict[str, Any]) -> None:
    assert found["cross_release"] == {"walks": "saved_by", "saved_by": None, "loaded_by": "4.57.6"}
    [cell] = found["cells"]
    assert cell["cell_id"] == "llama-smart-default-load"
    assert (cell["verdict"], cell["last_good"], cell["first_bad"]) == ("boundary", "4.57.6", "5.0.0")
    assert (cell["before"]["status"], cell["after"]["status"]) == ("pass", "fail")
    assert "TokenizersBackend" in cell["what_changed"], cell["what_changed"]


def test_record_narrowed_the_writers_range_and_nothing_else(bisect_dir: Path) -> None:
    recorded = (bisect_dir / "matrix.yaml").read_text(encoding="utf-8").splitlines()
    original = DEFAULT_MATRIX.read_text(encoding="utf-8").splitlines()
    changed = [(a, b) for a, b in zip(original, recorded) if a != b]
    assert len(recorded) == len(original) and len(changed) == 1, changed
    assert changed[0][1].strip().startswith('saved_by: ">=5.0.0"  # bisect '), changed
    matrix = load_matrix(bisect_dir / "matrix.yaml")
    entry = matrix.model("llama")
    expectation = matrix.expectation_for(entry, "4.57.6", "smart", "load", "default", "5.0.0")
    assert expectation is not None and expectation.status == "fail" and expectation.saved_by == ">=5.0.0"
    assert matrix.expectation_for(entry, "4.57.6", "smart", "load", "default", "4.57.6") != expectation
