"""The CLI end to end on a two-release, two-model slice, through tox: per-release results, the
report, cross-release cells, and what `check` prints when upgrading."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from compat_matrix.envs.releases import env_name
from compat_matrix.run.drift import adjacent, read_records, record_file
from compat_matrix.run.runner import tox_available
from compat_matrix.spec.cells import select_cells
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix

REPO = Path(__file__).resolve().parent.parent
MODELS, STRATEGIES, PROBES = ["llama", "qwen2_vl"], ["auto_causal_lm", "explicit_class"], ["load", "forward"]
SLICE = ["--models", *MODELS, "--strategies", *STRATEGIES, "--probes", *PROBES]
NEW = "5.24.0"
"""A pinned 5.x release: an upstream release must never change what this test sees (`latest` is the nightly's)."""
CELLS = len(select_cells(load_matrix(DEFAULT_MATRIX, check_model_types=False), MODELS, STRATEGIES, PROBES))
"""The slice's cells per release: models x their load profiles x strategies x probes."""

pytestmark = pytest.mark.slow


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "compat_matrix.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=1800)


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    if not tox_available():
        pytest.skip("tox is not installed in this interpreter (the unit tox env has it: tox -e unit)")
    out = tmp_path_factory.mktemp("check")
    return cli("check", "--from", "4.57.6", "--to", NEW, *SLICE, "--out", str(out)), out


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_release_wrote_every_selected_cell(checked: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    done, out = checked
    for env in ("tf4_57_6", env_name(NEW)):
        results = lines(out / "results" / f"{env}.jsonl")
        assert len(results) == CELLS, done.stderr[-2000:]
        assert {r["transformers_requested"] for r in results} == {"4.57.6" if env == "tf4_57_6" else NEW}
    assert f"[tf4_57_6] {CELLS}/{CELLS} cells done" in done.stderr


def test_each_line_records_the_release_installed(checked: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, out = checked
    assert {r["transformers"] for r in lines(out / "results" / f"{env_name(NEW)}.jsonl")} == {NEW}


def test_both_directions_of_checkpoints_were_loaded(checked: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """Besides each other's fine-tunes, both load the as-published checkpoints, which the models'
    `written_by` releases (not among the two) built first in their own environments."""
    _, out = checked
    matrix = load_matrix(DEFAULT_MATRIX, check_model_types=False)
    writers = {matrix.model(m).written_by for m in MODELS}
    old_in_new = lines(out / "results" / f"{env_name(NEW)}-cross.jsonl")
    new_in_old = lines(out / "results" / "tf4_57_6-cross.jsonl")
    for read in (old_in_new, new_in_old):
        published = [r for r in read if r["checkpoint"] == "as_published"]
        assert len(published) == CELLS and {r["saved_by"] for r in published} == writers
        assert all(r["checkpoint"] == "cross_release" for r in read if r not in published)
    assert {r["saved_by"] for r in old_in_new} == {"4.57.6", *writers}
    assert len(new_in_old) == 2 * CELLS and all(r["saved_by"].startswith("5.") for r in new_in_old
                                                if r["checkpoint"] == "cross_release")
    assert all((out / "logs" / f"{env_name(w)}-build.log").is_file() for w in writers)


def test_check_prints_the_status_changes_worst_first(checked: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """Measured: in 5.x Qwen2-VL's forward refuses the inputs training code passes by hand (no
    mm_token_type_ids), and the explicit class refuses the trainer profile's use_cache=False (its load
    and, not run, its forward: 4.57 forwarded it to text_config); the VLM-R1 break (AutoModelForCausalLM)
    fails on both sides, so is no change."""
    done, out = checked
    text = done.stdout
    assert text.startswith(f"transformers 4.57.6 -> {NEW}"), text[:300]
    section = text.split("Breaks when upgrading", 1)[1].splitlines()
    breaks = "\n".join([section[0], *itertools.takewhile(lambda line: line.startswith("  "), section[1:])])
    assert "2 causes, 3 cells" in breaks  # one line per cause
    assert "qwen2_vl x explicit_class x forward · forward: ValueError" in breaks and "TypeError" in breaks
    assert "auto_causal_lm" not in breaks
    assert done.returncode == 1
    cells = cli("check", "--from", "4.57.6", "--to", NEW, *SLICE, "--out", str(out), "--cells")
    breaks = cells.stdout.split("Breaks when upgrading", 1)[1].split("\n\n", 1)[0]
    assert "qwen2_vl-explicit_class-default-forward  pass -> fail" in breaks and cells.returncode == 1
    assert "qwen2_vl-explicit_class-trainer-load  pass -> fail" in breaks and "use_cache" in breaks


def test_check_reports_no_drift_where_the_numbers_are_the_same(checked: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """End to end on real releases: both load the checkpoints 4.49.0 (their `written_by`) built;
    measured identical for Llama and Qwen2-VL between 4.57.6 and 5.x (5.x adds mm_token_type_ids), so
    neither is described, both are counted."""
    done, out = checked
    drift = done.stdout.split(f"Drift on the as-published checkpoints (4.57.6 -> {NEW}):", 1)[1]
    assert drift.strip().splitlines() == [
        "2 more models: 1 compute the same numbers (llama); 1 compute the same numbers, their processor giving "
        "other outputs (qwen2_vl) (--all describes them)"], drift
    records = {r: read_records(record_file(out, r)) for r in ("4.57.6", NEW)}
    compared = {c.model: c for c in adjacent(records, MODELS)}
    assert {m: c.status for m, c in compared.items()} == {"llama": "same", "qwen2_vl": "same"}
    assert "text-only logits identical" in compared["qwen2_vl"].describe()
    assert "image+text logits identical" in compared["qwen2_vl"].describe()
    assert (out / "drift" / "tf4_49_0.json").is_file()  # the writer recorded first, and built the checkpoint
