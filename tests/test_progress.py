"""The progress line reads only what the results file gained since, and starts over when it is rewritten."""

from __future__ import annotations

import io
import json
from pathlib import Path

from compat_matrix.run import runner


def append(path: Path, *statuses: str, torn: bool = False) -> None:
    with path.open("a") as handle:
        for status in statuses:
            handle.write(json.dumps({"cell_id": "x", "status": status, "expected": None}) + "\n")
        if torn:
            handle.write('{"cell_id": "half", "status": "fa')


def test_progress_counts_appended_lines_and_unexpected_failures(tmp_path: Path) -> None:
    results, printed = tmp_path / "tf4_57_6.jsonl", io.StringIO()
    run = runner.ReleaseRun("4.57.6", "tf4_57_6", results, tmp_path / "log")
    progress = runner.Progress(run, 5, printed)
    progress.update(force=True)  # no file yet
    append(results, "pass", "fail", torn=True)
    progress.update(force=True)
    assert (progress.count, progress.failures) == (2, 1) and progress.offset < results.stat().st_size
    with results.open("a") as handle:
        handle.write('il", "expected": null}\n')  # the line being written when it was read completes
    append(results, "error")
    progress.update(force=True)
    assert (progress.count, progress.failures) == (4, 3)
    results.write_text(json.dumps({"cell_id": "x", "status": "pass"}) + "\n")  # a resume rewrote it
    progress.update(force=True)
    assert (progress.count, progress.failures) == (1, 0)
    assert printed.getvalue().splitlines()[-1] == "[tf4_57_6] 1/5 cells done, 0 unexpected failure(s)"
