"""matrix.yaml is the one source of truth: tox.ini must agree with it."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compat_matrix.envs.releases import env_name
from compat_matrix.envs.tox_setup import listed_envs
from compat_matrix.run.runner import tox_available
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix

TOX_INI = Path(__file__).resolve().parent.parent / "tox.ini"


def _tox() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(TOX_INI)
    return parser


def test_tox_envs_match_the_matrix_releases() -> None:
    wanted = {env_name(r) for r in load_matrix(DEFAULT_MATRIX).transformers}
    listed = listed_envs(TOX_INI)
    missing, extra = sorted(wanted - listed), sorted(listed - wanted)
    assert not missing, f"tox.ini env_list lacks {missing}: add them to env_list and give each a " \
                        f"'<env>: COMPAT_MATRIX_REQUESTED = <release>' line in [testenv] set_env"
    assert not extra, f"tox.ini lists {extra}, which matrix.yaml's transformers list does not: remove them or add the releases"


def test_each_listed_release_env_pins_its_release() -> None:
    set_env = _tox().get("testenv", "set_env")
    for release in load_matrix(DEFAULT_MATRIX).transformers:
        line = f"{env_name(release)}: COMPAT_MATRIX_REQUESTED = {release}"
        assert line in set_env, f"tox.ini [testenv] set_env needs the line '{line}'"


def without_description(tox: configparser.ConfigParser) -> list[str]:
    """The `[testenv...]` sections with no description of their own (`tox list` shows it for each env)."""
    return [s for s in tox.sections() if s.startswith("testenv") and not tox.get(s, "description", fallback="").strip()]


def test_a_section_without_its_description_is_named() -> None:
    planted = configparser.ConfigParser(interpolation=None)
    planted.read_string("[testenv]\ndescription = cells\n[testenv:unit]\ncommands = pytest\n[testenv:tfany]\ndescription =\n")
    assert without_description(planted) == ["testenv:unit", "testenv:tfany"]


def test_every_env_has_a_description_and_the_pass_env_the_issue_asks_for() -> None:
    tox = _tox()
    assert without_description(tox) == [], "give each [testenv...] section of tox.ini a description"
    pass_env = tox.get("testenv", "pass_env").split()
    assert {"HF_*", "CUDA_*", "PYTEST_*", "GITHUB_*"} <= set(pass_env)
    assert "torch==" in tox.get("testenv", "deps") and "2.13.0" in tox.get("testenv", "deps")


def _tox_set_env(environ: dict[str, str]) -> set[str]:
    """`tox config` of one release env under `environ` (uv and torch-index variables of this shell left out)."""
    if not tox_available():
        pytest.skip("tox is not installed in this interpreter (requirements/dev.txt)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "COMPAT_MATRIX_TORCH"))} | environ
    done = subprocess.run([sys.executable, "-m", "tox", "config", "-e", "tf5_0_0", "-k", "set_env", "runner"],
                          cwd=TOX_INI.parent, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return {line.strip() for line in done.stdout.splitlines()}


def test_release_envs_are_made_by_uv_with_the_local_torch_wheel_and_the_torch_index() -> None:
    """uv reads neither pip.conf nor PIP_*: without these two, the torch pin would come from PyPI (CUDA)."""
    config = _tox_set_env({"PIP_FIND_LINKS": "/opt/wheels", "COMPAT_MATRIX_TORCH_INDEX": "https://example.invalid/cu128"})
    assert {"runner = uv-venv-runner", "UV_FIND_LINKS=/opt/wheels", "UV_EXTRA_INDEX_URL=https://example.invalid/cu128"} <= config
    assert "UV_EXTRA_INDEX_URL=" in _tox_set_env({"PIP_FIND_LINKS": "/opt/wheels"}), "no torch index asked for: uv gets none"
