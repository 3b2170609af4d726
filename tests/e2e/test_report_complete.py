"""After `compat-matrix run`: the report exists in every format and holds every selected cell once.

Run by scripts/test.sh with --report-dir; skipped (with the reason) when no run is named.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from compat_matrix.envs.releases import env_name
from compat_matrix.spec.cells import select_cells
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix


@pytest.fixture(scope="module")
def report_dir(pytestconfig: pytest.Config) -> Path:
    folder = pytestconfig.getoption("--report-dir")
    if not folder:
        pytest.skip("no --report-dir given: scripts/test.sh passes the folder of the matrix run it made")
    return Path(folder)


@pytest.fixture(scope="module")
def releases(pytestconfig: pytest.Config) -> list[str]:
    return (pytestconfig.getoption("--releases") or "").split()


@pytest.fixture(scope="module")
def report(report_dir: Path) -> dict[str, Any]:
    return json.loads((report_dir / "report.json").read_text())


def test_every_format_was_written(report_dir: Path, releases: list[str]) -> None:
    for name in ("report.json", "report.md", "index.html"):
        assert (report_dir / name).stat().st_size > 0, name
    assert (report_dir / "report.md").stat().st_size < 2**20
    for release in releases:
        results = report_dir / "results" / f"{env_name(release)}.jsonl"
        assert results.is_file(), f"no results file for {release}"
    junit = sorted(report_dir.glob("junit-*.xml"))
    assert len(junit) == len(releases)
    for path in junit:
        ET.parse(path)


def _ids_by_env(report: dict[str, Any], cross: bool) -> dict[str, list[str]]:
    """Cell ids per env: same-release cells, or (`cross`) those loading another release's checkpoint."""
    by_env: dict[str, list[str]] = {}
    for cell in report["cells"]:
        if (cell.get("saved_by") is not None) == cross:
            by_env.setdefault(cell["env"], []).append(cell["cell_id"])
    return by_env


def test_every_cell_is_in_the_report_once_per_release(report: dict[str, Any], releases: list[str]) -> None:
    expected = {c.id for c in select_cells(load_matrix(DEFAULT_MATRIX))}
    assert not report["problems"], report["problems"]
    by_env = _ids_by_env(report, cross=False)
    assert sorted(by_env) == sorted(env_name(r) for r in releases)
    for env, ids in by_env.items():
        assert len(ids) == len(set(ids)), f"{env}: duplicate cells"
        assert set(ids) == expected, f"{env}: missing {sorted(expected - set(ids))[:5]}, extra {sorted(set(ids) - expected)[:5]}"


def test_each_release_loaded_the_as_published_and_every_other_releases_checkpoints(
        report: dict[str, Any], pytestconfig: pytest.Config) -> None:
    """Every release loads its models' as-published checkpoints (all probes), and with
    --cross-release every other release's fine-tunes (load, forward, adapter_roundtrip)."""
    cross = pytestconfig.getoption("--cross-release")
    matrix = load_matrix(DEFAULT_MATRIX)
    version_of = {cell["env"]: cell["transformers"] for cell in report["cells"] if cell.get("saved_by") is None}
    by_env = _ids_by_env(report, cross=True)
    for env, version in version_of.items():
        others = sorted(v for e, v in version_of.items() if e != env) if cross else None
        expected = {c.id for c in select_cells(matrix, saved_by=others, published_in=version)}
        ids = by_env.get(env, [])
        assert len(ids) == len(set(ids)) and set(ids) == expected, f"{env}: {sorted(set(ids) ^ expected)[:5]}"


def test_no_harness_errors_and_no_regressions(report: dict[str, Any]) -> None:
    errors = [f"{c['env']} {c['cell_id']}: {c['message'][:200]}" for c in report["cells"]
              if c["status"] == "error" and (c.get("expected") or {}).get("status") != "error"]
    assert not errors, "\n".join(errors[:20])
    assert not report["regressions"], [r.get("cell_id") for r in report["regressions"]][:20]
