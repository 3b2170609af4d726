"""Fault injection: each test plants one fault and checks that nothing is lost.

| fault | planted by | what must hold |
| --- | --- | --- |
| truncated weights / edited config in the tiny-checkpoint cache | editing the cached files | detected by content hash, rebuilt identical, a line says so |
| a checkpoint being built by another process | holding its build lock | the second waits, says for what, then uses the whole folder |
| disk full while writing a results line | `results_io._os_write` fails half-way | clear error; the lines before stay whole and valid |
| controller SIGKILLed mid-release | SIGKILL to the whole process tree | `run --resume` runs only the cells without a line; same report |
| two runs sharing cache and results folder | starting a second run during the first | the second waits, saying so; no torn or doubled line |
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from filelock import FileLock

from compat_matrix.spec import results_io
from compat_matrix.spec.cells import select_cells
from compat_matrix.spec.results_io import ResultsNotWritten, ResultsWriter, read_lines
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix
from tests.test_results_file import REPO, run_matrix

MATRIX = load_matrix(DEFAULT_MATRIX, check_model_types=False)


def build_llama(root: Path):  # type: ignore[no-untyped-def]
    from compat_tests.tiny import checkpoint

    entry = MATRIX.model("llama")
    assert entry.recipe is not None
    checkpoint._BUILT.clear()  # as a new process would: open the folder from disk
    return checkpoint.build_checkpoint("llama", entry.recipe, entry.modality, cache_root=root)


def truncate_weights(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def edit_config(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 1
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("damage", [truncate_weights, edit_config], ids=["truncated-weights", "edited-config"])
def test_a_damaged_cached_checkpoint_is_detected_and_rebuilt(damage, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    from compat_tests.tiny.checkpoint import CheckpointRebuilt, content_hashes

    built = build_llama(tmp_path)
    before = content_hashes(built.path)
    damage(built.path)
    with pytest.warns(CheckpointRebuilt, match="changed since it was built"):
        again = build_llama(tmp_path)
    assert content_hashes(again.path) == before  # rebuilt byte for byte
    assert "rebuilding it" in capfd.readouterr().err
    build_llama(tmp_path)  # whole again: opens without a rebuild (pytest.warns would not be needed)


def test_a_checkpoint_being_built_elsewhere_is_waited_for(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    built = build_llama(tmp_path)
    lock = FileLock(f"{built.path.parent / ('.' + built.path.name)}.lock")
    lock.acquire()  # another process is building it
    opened: list[object] = []
    reader = threading.Thread(target=lambda: opened.append(build_llama(tmp_path)))
    reader.start()
    time.sleep(1.0)
    assert not opened, "the folder was used while another process held its build lock"
    lock.release()
    reader.join(timeout=60)
    assert opened and "waiting for tiny checkpoint" in capfd.readouterr().err


def fail_after(lines: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills during line `lines + 1`: part of it is written, then ENOSPC."""
    real = results_io._os_write
    calls = {"n": 0}

    def write(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] > lines:
            real(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(results_io, "_os_write", write)


def test_disk_full_cuts_the_torn_line_and_keeps_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tf.jsonl"
    writer = ResultsWriter(path, fresh=True)
    fail_after(2, monkeypatch)
    writer.write({"cell_id": "a"})
    writer.write({"cell_id": "b"})
    with pytest.raises(ResultsNotWritten, match=r"No space left on device.*2 line\(s\) this run wrote before stay valid"):
        writer.write({"cell_id": "c", "message": "x" * 1000})
    writer.close()
    assert [json.loads(raw) for raw in path.read_text().splitlines()] == [{"cell_id": "a"}, {"cell_id": "b"}]


DISK_FULL_PLANT = '''
import errno
from compat_matrix.spec import results_io
real, calls = results_io._os_write, {"n": 0}
def write(fd, data):
    calls["n"] += 1
    if calls["n"] > 2:
        real(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")
    return real(fd, data)
results_io._os_write = write
'''


def test_disk_full_during_a_run_stops_it_with_a_clear_error(tmp_path: Path) -> None:
    done = run_matrix(tmp_path, DISK_FULL_PLANT, "-p", "no:xdist")
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    assert "No space left on device" in done.stdout + done.stderr and "2 line(s)" in done.stdout + done.stderr
    lines = [json.loads(raw) for raw in (tmp_path / "results" / "planted.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(line["status"] == "pass" for line in lines)


def test_the_cli_says_what_to_do_when_results_cannot_be_written(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from compat_matrix.cli import main
    from compat_matrix.run import runner

    def full(*args: object, **kwargs: object) -> object:
        raise ResultsNotWritten(errno.ENOSPC, "cannot write results to x.jsonl (No space left on device); the 4 "
                                "line(s) this run wrote before stay valid")

    monkeypatch.setattr(runner, "run_release", full)
    code = main(["run", "--transformers", "latest", "--models", "llama", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 3 and "No space left on device" in err and "--resume" in err and "Traceback" not in err


def test_resume_keeps_whole_lines_and_drops_placeholders_and_torn_ones(tmp_path: Path) -> None:
    path = tmp_path / "tf.jsonl"
    ran = {"cell_id": "a", "status": "pass", "details": {}}
    placeholder = {"cell_id": "b", "status": "error", "details": {results_io.PLACEHOLDER: True}}
    path.write_text(json.dumps(ran) + "\n" + json.dumps(placeholder) + "\n" + '{"cell_id": "c", "sta')
    assert results_io.resume(path) == {"a"}
    assert read_lines(path) == [ran] and path.read_text().endswith("\n")


MODELS, STRATEGIES, PROBES = ["llama", "qwen2_vl"], ["explicit_class", "smart"], ["load", "forward", "generate", "surface"]
SLICE = ["--transformers", "4.57.6", "--models", *MODELS, "--strategies", *STRATEGIES, "--probes", *PROBES,
         "--round-trip-only", "-n", "1"]
"""Two models x two strategies x every load profile x the probes that need no trainer, in one release's
own checkpoints, one worker: enough cells to kill mid-release, and no as-published writers' environments
or TRL import (those made each run of this slice take minutes)."""
CELLS = len(select_cells(MATRIX, MODELS, STRATEGIES, PROBES))

VOLATILE = {"timestamp", "duration_s", "peak_memory_mb", "details", "message", "git_commit", "origin"}
"""Fields that differ between two runs of the same cell (times, measured memory, warnings' wording,
the results file's folder)."""


def cli_process(out: Path, *extra: str, cache: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "compat_matrix.cli", "run", *SLICE, "--no-store", "--out", str(out), *extra],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COMPAT_MATRIX_CACHE": str(cache)}, start_new_session=True)


def wait_for_lines(path: Path, count: int, timeout: float = 600) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(read_lines(path)) >= count:
            return len(read_lines(path))
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {count} lines")


def cells_of(out: Path) -> dict[str, dict]:
    report = json.loads((out / "report.json").read_text())
    return {c["cell_id"]: {k: v for k, v in c.items() if k not in VOLATILE} for c in report["cells"]}


def needs_tox() -> None:
    from compat_matrix.run.runner import tox_available

    if not tox_available():
        pytest.skip("tox is not installed in this interpreter (the unit tox env has it: tox -e unit)")


@pytest.mark.slow
def test_resume_after_sigkill_runs_only_the_missing_cells_and_reports_the_same(tmp_path: Path) -> None:
    needs_tox()
    cache = tmp_path / "cache"
    whole = cli_process(tmp_path / "whole", cache=cache)
    assert whole.wait(timeout=900) == 0, whole.stderr.read()[-3000:] if whole.stderr else ""

    killed_out = tmp_path / "killed"
    results = killed_out / "results" / "tf4_57_6.jsonl"
    killed = cli_process(killed_out, cache=cache)
    wait_for_lines(results, 3)
    tree = [killed.pid, *(c.pid for c in psutil.Process(killed.pid).children(recursive=True))]
    for pid in tree:  # the machine loses the run: controller, tox, pytest and its workers at once
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    killed.wait()
    kept = read_lines(results)
    assert 3 <= len(kept) < CELLS, f"{len(kept)} lines at the kill: the release was not cut mid-way"

    resumed = cli_process(killed_out, "--resume", cache=cache)
    _, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err[-3000:]
    assert f"resuming: {len(kept)} of {CELLS} cells already have a line" in err
    after = read_lines(results)
    assert after[: len(kept)] == kept  # finished cells were not run again (same lines, same timestamps)
    assert sorted(line["cell_id"] for line in after) == sorted(cells_of(tmp_path / "whole"))
    assert cells_of(killed_out) == cells_of(tmp_path / "whole")


@pytest.mark.slow
def test_two_runs_sharing_cache_and_results_wait_for_each_other(tmp_path: Path) -> None:
    needs_tox()
    cache, out = tmp_path / "cache", tmp_path / "shared"
    first = cli_process(out, cache=cache)
    wait_for_lines(out / "results" / "tf4_57_6.jsonl", 1)
    second = cli_process(out, cache=cache)
    _, first_err = first.communicate(timeout=900)
    _, second_err = second.communicate(timeout=900)
    assert first.returncode == 0 and second.returncode == 0, first_err[-2000:] + second_err[-2000:]
    assert f"waiting for {out.resolve() / 'results'}: another run is writing it" in second_err
    assert cells_of(out)  # the first run's report was built from its own lines before the second began
    raw = (out / "results" / "tf4_57_6.jsonl").read_text().splitlines()
    lines = [json.loads(line) for line in raw]  # every line whole
    assert sorted(line["cell_id"] for line in lines) == sorted(set(line["cell_id"] for line in lines))
    assert len(lines) == CELLS and all(line["status"] != "error" for line in lines)
