"""compat-matrix as a published package: `python -m build` makes an sdist and a wheel that
`twine check` accepts, and the wheel, installed into a fresh venv, runs from an empty folder."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from reports.version import VERSION

REPO = Path(__file__).resolve().parent.parent
SHIPPED = ("compat_matrix/envs/tox.ini", "compat_matrix/envs/requirements/harness.txt", "compat_matrix/init/templates/matrix.yml",
           "compat_matrix/init/templates/nightly.yml", "compat_matrix/init/templates/known-models.yaml",
           "compat_tests/tiny/checkpoint.py", "compat_tests/tiny/tokenizer.py", "compat_tests/plugin.py",
           "reports/index_template.html", "reports/report.js")
"""What a user's run needs from the package: the tox configuration, what `init` writes, the tiny-model code, the page."""


def _run(*command: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    process = subprocess.run([str(c) for c in command], cwd=cwd, env=environ, capture_output=True, text=True, timeout=900)
    assert process.returncode == 0, f"{command}:\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}"
    return process


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for module in ("build", "twine"):
        if subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode:
            pytest.skip(f"{module} is not installed in this interpreter (requirements/dev.txt)")
    folder = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", folder, REPO)
    return folder


@pytest.mark.slow
def test_the_sdist_and_wheel_pass_twine_check_and_carry_what_a_run_needs(dist: Path) -> None:
    wheel, sdist = next(dist.glob(f"compat_matrix-{VERSION}-py3-none-any.whl")), next(dist.glob(f"compat_matrix-{VERSION}.tar.gz"))
    _run(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(SHIPPED) <= names, sorted(set(SHIPPED) - names)
    with tarfile.open(sdist) as archive:
        members = {m.name.split("/", 1)[1]: m for m in archive.getmembers() if "/" in m.name}
    assert all(members[name].isfile() for name in SHIPPED), "the sdist holds the files, not links into .github/"
    metadata = zipfile.ZipFile(wheel).read(f"compat_matrix-{VERSION}.dist-info/METADATA").decode()
    assert f"Version: {VERSION}\n" in metadata and "Project-URL: Source, https://github.com/" in metadata


@pytest.mark.slow
def test_the_installed_wheel_runs_from_an_empty_folder(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    python, tool = venv / "bin" / "python", venv / "bin" / "compat-matrix"
    _run(python, "-m", "pip", "install", "--quiet", next(dist.glob("*.whl")))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run(tool, "--version", cwd=empty).stdout.strip() == f"compat-matrix {VERSION}"
    listed = _run(tool, "list", cwd=empty)
    assert "no matrix.yaml here" in listed.stderr and "releases:" in listed.stdout and "qwen2_5_vl" in listed.stdout
    _run(tool, "init", "--models", "meta-llama/Llama-3.2-1B-Instruct", cwd=empty)
    call = yaml.safe_load((empty / ".github" / "workflows" / "compat-matrix.yml").read_text())["jobs"]["matrix"]
    source = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]["Source"]
    assert call["uses"] == f"{source.removeprefix('https://github.com/')}/.github/workflows/matrix.yml@v{VERSION}", \
        "init calls the workflow of the repository pyproject names as Source, at this version's tag"
    assert "package" not in call.get("with", {}), "a wheel from a file installs as the tag's release"
    assert "llama" in _run(tool, "list", cwd=empty).stdout
