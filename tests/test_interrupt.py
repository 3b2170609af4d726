"""Ctrl-C during `compat-matrix run`: the run stops, the cells that finished are kept and reported."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compat_matrix.run.runner import REPO, tox_available

pytestmark = pytest.mark.slow


def _ctrl_c_reaches_python() -> None:
    """A shell's background job (`cmd &`, as CI scripts often start a suite) inherits SIGINT ignored, and
    Python then never raises KeyboardInterrupt: the run would rightly finish every cell. A user's
    Ctrl-C comes from a terminal, where SIGINT has its default action; give the child that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_keeps_finished_cells_and_builds_the_report(tmp_path: Path) -> None:
    if not tox_available():
        pytest.skip("tox is not installed in this interpreter (the unit tox env has it: tox -e unit)")
    results = tmp_path / "results" / "tf4_57_6.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "compat_matrix.cli", "run", "--transformers", "4.57.6", "--models", "llama", "qwen2_vl",
         "--out", str(tmp_path), "-n", "1", "--no-store"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_ctrl_c_reaches_python)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and (not results.is_file() or len(results.read_text().splitlines()) < 3):
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 130, err[-2000:]
    kept = [json.loads(line) for line in results.read_text().splitlines()]
    assert 3 <= len(kept) < 2 * 6 * 5
    assert "interrupted: keeping the" in err
    report = json.loads((tmp_path / "report.json").read_text())
    assert {c["cell_id"] for c in report["cells"]} == {line["cell_id"] for line in kept}
