"""After scripts/test.sh's bisect of qwen3_vl (explicit_class, load) from 4.52.4 to 4.57.6 with --record.

Skipped (with the reason) when no bisect run is named (--bisect-dir).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix


@pytest.fixture(scope="module")
def bisect_dir(pytestconfig: pytest.Config) -> Path:
    folder = pytestconfig.getoption("--bisect-dir")
    if not folder:
        pytest.skip("no --bisect-dir given: scripts/test.sh passes the folder of the bisect it ran")
    return Path(folder)


@pytest.fixture(scope="module")
def found(bisect_dir: Path) -> dict[str, Any]:
    return json.loads((bisect_dir / "bisect.json").read_text(encoding="utf-8"))


def test_qwen3_vl_loads_from_the_first_release_that_has_it(found: dict[str, Any]) -> None:
    [cell] = found["cells"]
    assert cell["cell_id"] == "qwen3_vl-explicit_class-default-load"
    assert cell["verdict"] == "boundary"
    assert (cell["before"]["status"], cell["after"]["status"]) == ("unsupported", "pass")
    # the releases on either side of the boundary are neighbours on the index: nothing untested between
    span = found["releases"]
    assert span.index(cell["first_bad"]) == span.index(cell["last_good"]) + 1
    # Qwen3-VL is new in 4.57.0, which is not on the index (yanked): the first 4.57 release there
    assert cell["first_bad"] == next(r for r in span if Version(r) >= Version("4.57"))
    assert len(cell["tested"]) < len(span) / 2, "a binary search, not every release"


def test_record_narrowed_the_expectation_and_kept_the_file_as_it_was(bisect_dir: Path, found: dict[str, Any]) -> None:
    [cell] = found["cells"]
    recorded = (bisect_dir / "matrix.yaml").read_text(encoding="utf-8")
    original = DEFAULT_MATRIX.read_text(encoding="utf-8")
    entry = load_matrix(bisect_dir / "matrix.yaml").model("qwen3_vl")
    assert entry.expectations[0].status == "unsupported" and entry.expectations[0].transformers == f"<{cell['first_bad']}"
    said = (bisect_dir / "bisect.err").read_text(encoding="utf-8")
    assert f"qwen3_vl: narrowed '<4.57" in said and f"-> '<{cell['first_bad']}'" in said, said[-2000:]
    line = f'transformers: "<{cell["first_bad"]}"  # bisect '
    [row] = [i for i, text in enumerate(recorded.splitlines()) if line in text]
    assert f"last good {cell['last_good']}, first bad {cell['first_bad']}" in recorded.splitlines()[row]
    others = [text for i, text in enumerate(recorded.splitlines()) if i != row]
    assert others == [text for i, text in enumerate(original.splitlines()) if i != row], "nothing else changed"


def test_each_release_ran_exactly_the_cells_asked_for(bisect_dir: Path) -> None:
    """Only the selected profile's cell runs: progress says 1/1 for every release, never 2/1."""
    said = (bisect_dir / "bisect.err").read_text(encoding="utf-8")
    counts = re.findall(r"^\[tf\S+\] (\d+)/(\d+) cells done", said, flags=re.M)
    assert counts and all(total == "1" and int(done) <= 1 for done, total in counts), said[-2000:]
