"""The results file under pytest-xdist: one line per cell written by the controller, and an
`error` line (with the reason) for a cell that hangs past its timeout or kills its worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from compat_matrix.spec.records import RECORDED_LIBRARIES

REPO = Path(__file__).resolve().parent.parent

PLANTS = '''
import os, signal, time
from compat_tests import probes

class Crash:
    name, mutates_model = "forward", False
    def run(self, ctx):
        os.kill(os.getpid(), signal.SIGKILL)

class Hang:
    name, mutates_model = "generate", False
    def run(self, ctx):
        time.sleep(120)

probes.PROBES["forward"] = Crash()
probes.PROBES["generate"] = Hang()
'''


def run_matrix(tmp_path: Path, conftest: str, *args: str) -> subprocess.CompletedProcess[str]:
    matrix = (REPO / "matrix.yaml").read_text().replace("cell_timeout_s: 120", "cell_timeout_s: 15")
    (tmp_path / "matrix.yaml").write_text(matrix)
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["compat_tests.plugin"]\n' + conftest)
    (tmp_path / "test_cells.py").write_text("from compat_tests.test_matrix import test_cell  # noqa: F401\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "COMPAT_MATRIX_ENV": "planted"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(tmp_path), "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "--cm-matrix", str(tmp_path / "matrix.yaml"), "--cm-results", str(tmp_path / "results"),
         "--cm-models", "llama", "--cm-strategies", "explicit_class", "--cm-probes", "load,forward,generate,grpo_step",
         "-k", "default", *args],  # the default load profile's cells only
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)


def lines(tmp_path: Path) -> dict[str, dict]:
    path = tmp_path / "results" / "planted.jsonl"
    return {r["cell_id"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_crash_and_hang_become_error_lines_and_the_other_cells_still_run(tmp_path: Path) -> None:
    done = run_matrix(tmp_path, PLANTS, "-n", "2")
    results = lines(tmp_path)
    assert sorted(results) == sorted(f"llama-explicit_class-default-{p}" for p in ("load", "forward", "generate", "grpo_step")), done.stdout[-3000:]
    crashed = results["llama-explicit_class-default-forward"]
    assert crashed["status"] == "error" and "crashed" in crashed["message"], crashed["message"]
    assert crashed["libraries"] == results["llama-explicit_class-default-load"]["libraries"]
    assert sorted(crashed["libraries"]) == sorted(RECORDED_LIBRARIES)
    hung = results["llama-explicit_class-default-generate"]
    assert hung["status"] == "error" and "timed out after 15 s" in hung["message"], hung["message"]
    assert hung["error_type"] == "CellTimeout" and hung["loaded_class"] == "LlamaForCausalLM"
    assert results["llama-explicit_class-default-load"]["status"] == "pass"
    assert results["llama-explicit_class-default-grpo_step"]["status"] == "pass"
    assert hung["transformers"] and hung["torch"] and hung["expected"] is None
    assert done.returncode == 1


def test_lines_written_before_a_killed_run_survive(tmp_path: Path) -> None:
    kill_controller = '''
import os, signal
from compat_tests import probes
class KillAll:
    name, mutates_model = "generate", False
    def run(self, ctx):
        os.kill(os.getpid(), signal.SIGKILL)
probes.PROBES["generate"] = KillAll()
'''
    run_matrix(tmp_path, kill_controller, "-p", "no:xdist")
    results = lines(tmp_path)
    assert list(results) == ["llama-explicit_class-default-load", "llama-explicit_class-default-forward"]
    assert all(r["status"] == "pass" for r in results.values())


def test_the_controller_writes_a_crash_line_without_importing_torch(tmp_path: Path) -> None:
    code = f'''
import gc, json, sys
from pathlib import Path
from types import SimpleNamespace
from compat_matrix.spec.cells import Cell
from compat_matrix.spec.validate import load_matrix
from compat_tests.plugin import ResultsRecorder, _MATRIX
config = SimpleNamespace(stash={{_MATRIX: load_matrix({str(REPO / "matrix.yaml")!r}, check_model_types=False)}})
recorder = ResultsRecorder(config, Path({str(tmp_path)!r}))
report = SimpleNamespace(longrepr="worker 'gw0' crashed while running", when="call")
record = recorder.crash_record(report, Cell("llama", "smart", "default", "forward"))
assert not {{"torch", "transformers"}} & set(sys.modules), sorted({{"torch", "transformers"}} & set(sys.modules))
assert gc.get_freeze_count() == 0
print(json.dumps(record))
'''
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), "COMPAT_MATRIX_ENV": "planted"})
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout)
    assert record["status"] == "error" and "crashed" in record["message"]
    assert record["device"] == "unknown" and record["transformers"] and record["torch"] and record["env"] == "planted"
