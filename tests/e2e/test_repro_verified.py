"""scripts/test.sh, after the e2e run: five causes of different kinds, each reproduced by its script in
its release and passing in the good one (`compat-matrix repro --verify` against the run's report); the
committed scripts that matrix.yaml links are what the command writes today; and a planted harness
failure (a broken forward probe) is reported as not reproduced."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "compat_matrix.cli"]

CASES = [
    # (kind, committed script, cell, release, good release)
    ("a loading route refused (VLM-R1)", "vlm_r1_auto_causal_lm.py", "qwen2_5_vl-auto_causal_lm-default-load", "4.57.6", None),
    ("a keyword argument refused", "use_cache_keyword_5x.py", "qwen2_vl-auto_image_text_to_text-trainer-load", "5.24.0", "4.57.6"),
    ("minimal inputs give other logits", "mm_token_type_ids_logits.py", "qwen2_5_vl-auto_image_text_to_text-default-forward",
     "5.24.0", "4.57.6"),
    ("a checkpoint another release wrote", "tokenizers_backend_5x_tokenizer.py", "llama-explicit_class-default-load@5.24.0",
     "4.57.6", "5.24.0"),
    ("a training-step check", "vision_lora_reentrant_checkpointing.py", "qwen2_vl-smart-lora_vision-grpo_step", "4.57.6", "5.24.0"),
]


@pytest.fixture(scope="module")
def report(pytestconfig: pytest.Config) -> Path:
    folder = pytestconfig.getoption("--report-dir")
    if not folder:
        pytest.skip("needs --report-dir (the output of scripts/test.sh's e2e run)")
    return Path(folder).resolve() / "report.json"


def repro(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "--matrix", str(ROOT / "matrix.yaml"), "repro", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=1200)


@pytest.mark.parametrize("kind, name, cell, release, good", CASES, ids=[c[0] for c in CASES])
def test_the_script_reproduces_the_cause_and_passes_on_the_good_release(
        report: Path, tmp_path: Path, kind: str, name: str, cell: str, release: str, good: str | None) -> None:
    out = tmp_path / name
    done = repro(cell, "--release", release, *(["--good", good] if good else []), "--report", str(report), "--verify",
                 "--out", str(out))
    print(done.stdout, done.stderr[-3000:])
    assert done.returncode == 0, f"{kind}: {done.stdout}{done.stderr[-3000:]}"
    assert f"reproduces in {release}" in done.stdout and (good is None or f"passes in {good}" in done.stdout)
    assert out.read_text() == (ROOT / "repro" / name).read_text(), f"repro/{name} is stale: rewrite it with the command above"


def test_the_vlm_r1_break_reproduces_in_the_other_release_too(report: Path, tmp_path: Path) -> None:
    """AutoModelForCausalLM maps no Qwen-VL config in any release: no good release, both fail alike."""
    done = repro("qwen2_5_vl-auto_causal_lm-default-load", "--release", "5.24.0", "--report", str(report), "--verify",
                 "--out", str(tmp_path / "vlm_r1.py"))
    assert done.returncode == 0 and "reproduces in 5.24.0" in done.stdout, done.stdout + done.stderr[-3000:]


def test_a_broken_probe_is_reported_as_not_reproduced(tmp_path: Path) -> None:
    """The harness with a planted bug (the forward probe's hand-passed inputs lose image_grid_thw) fails
    qwen2_vl's forward cell; the script, doing the probe's work right, passes: 'does NOT reproduce'."""
    python = ROOT / ".tox" / "tf4_57_6" / "bin" / "python"
    if not python.is_file():
        pytest.skip("needs the e2e run's 4.57.6 environment (.tox/tf4_57_6)")
    plant = tmp_path / "harness"
    plant.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD", "compat_tests", "compat_matrix", "loader", "reports",
                              "matrix.yaml"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(plant)], input=archive.stdout, check=True)
    inputs = plant / "compat_tests" / "tiny" / "inputs.py"
    text = inputs.read_text()
    assert '"image_grid_thw", ' in text
    inputs.write_text(text.replace('"image_grid_thw", ', "", 1))
    env = {**os.environ, "PYTHONPATH": str(plant), "COMPAT_MATRIX_ENV": "tf4_57_6", "HF_HUB_OFFLINE": "1"}
    subprocess.run([str(python), "-m", "pytest", str(plant / "compat_tests"), "-q", "-p", "no:cacheprovider",
                    "--cm-matrix", str(plant / "matrix.yaml"), "--cm-models", "qwen2_vl", "--cm-strategies", "explicit_class",
                    "--cm-profiles", "default", "--cm-probes", "forward", "--cm-results", str(tmp_path / "results")],
                   env=env, cwd=plant, capture_output=True, timeout=900)
    built = subprocess.run([*CLI, "report", str(tmp_path / "results" / "tf4_57_6.jsonl"), "--out", str(tmp_path / "report")],
                           capture_output=True, text=True, cwd=ROOT)
    assert (tmp_path / "report" / "report.json").is_file(), built.stderr
    done = repro("qwen2_vl-explicit_class-default-forward", "--release", "4.57.6", "--report",
                 str(tmp_path / "report" / "report.json"), "--verify", "--out", str(tmp_path / "forward.py"))
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    assert "does NOT reproduce: the script passes in 4.57.6" in done.stdout and "harness" in done.stdout
