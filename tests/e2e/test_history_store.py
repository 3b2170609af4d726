"""After scripts/test.sh's history from the store: qwen2 over 4.49.0 and 4.50.0 run twice into an
empty store, then with 4.50.1 added. The second run reuses every cell and reports exactly the
first run's statuses; the third runs only 4.50.1.

Skipped (with the reason) when no such run is named (--history-dir).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from compat_matrix.run.store import FROM_STORE
from reports.report import Report

OLD, NEW = ("tf4_49_0", "tf4_50_0"), "tf4_50_1"
STARTED = re.compile(r"^\[(tf[\w-]+)\] (?:transformers [\d.]+|as-published checkpoints|checkpoints saved by).*: \d+ cells \(log:",
                     re.MULTILINE)
"""The runner's line when it starts tox for a release (`runner._run_tox`)."""


@pytest.fixture(scope="module")
def history_dir(pytestconfig: pytest.Config) -> Path:
    folder = pytestconfig.getoption("--history-dir")
    if not folder:
        pytest.skip("no --history-dir given: scripts/test.sh passes the folder of the history runs it made")
    return Path(folder)


def statuses(report: Report) -> dict[tuple[str, str], str]:
    return {(c.transformers, c.cell_id): c.status for c in report.cells}


def ran(history_dir: Path, name: str) -> set[str]:
    """The releases the run started tox for. A release that writes no as-published checkpoint runs its own
    and its as-published cells in one session, labelled `<env>-cross` (compat_matrix/run/joint_session.py)."""
    found = STARTED.findall((history_dir / f"{name}.err").read_text(encoding="utf-8"))
    return {stem.removesuffix("-cross") for stem in found}


def report(history_dir: Path, name: str) -> Report:
    return Report.read(history_dir / name / "report.json")


def test_the_first_run_ran_every_release(history_dir: Path) -> None:
    assert ran(history_dir, "first") >= {*OLD}
    assert all(not c.model_extra or FROM_STORE not in c.model_extra for c in report(history_dir, "first").cells)


def test_the_second_run_reuses_every_cell_and_reports_the_same_statuses(history_dir: Path) -> None:
    assert ran(history_dir, "second") == set()
    err = (history_dir / "second.err").read_text(encoding="utf-8")
    reused = re.findall(r"\] store: reused (\d+) of (\d+) cells", err)
    assert reused and all(a == b for a, b in reused), reused
    second = report(history_dir, "second")
    assert all(c.model_extra and c.model_extra.get(FROM_STORE) for c in second.cells)
    assert statuses(second) == statuses(report(history_dir, "first"))


def test_a_release_added_later_is_the_only_one_that_runs(history_dir: Path) -> None:
    assert ran(history_dir, "third") == {NEW}
    third, first = report(history_dir, "third"), statuses(report(history_dir, "first"))
    assert {k: v for k, v in statuses(third).items() if k in first} == first
    assert {c.transformers for c in third.cells} == {"4.49.0", "4.50.0", "4.50.1"}
    assert "## History" in (history_dir / "third" / "report.md").read_text(encoding="utf-8")
