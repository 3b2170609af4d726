"""torchvision in a release environment: from COMPAT_MATRIX_TORCH_INDEX alone, matching the installed
torch, and never beside a local CPU wheel with no index (PyPI's builds need PyPI's CUDA torch)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from compat_matrix.envs import install_vision


@pytest.fixture
def pip_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], str]]:
    calls: list[tuple[list[str], str]] = []

    def run(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        constraints = Path(command[command.index("--constraint") + 1]).read_text()
        calls.append((command, constraints))
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found for torchvision")

    monkeypatch.setattr(install_vision.subprocess, "run", run)
    monkeypatch.setattr(install_vision, "installed", lambda package: {"torch": "2.13.0+cpu"}.get(package))
    return calls


def test_without_a_torch_index_nothing_is_installed(pip_calls: list, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("COMPAT_MATRIX_TORCH_INDEX", raising=False)
    assert install_vision.main() == 0 and pip_calls == []
    assert "no COMPAT_MATRIX_TORCH_INDEX" in capsys.readouterr().out


def test_the_torch_index_alone_gives_torchvision_with_torch_held(pip_calls: list, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COMPAT_MATRIX_TORCH_INDEX", "https://download.pytorch.org/whl/cpu")
    assert install_vision.main() == 0  # a failed install leaves the environment as it was
    [(command, constraints)] = pip_calls
    assert command[command.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    assert "--extra-index-url" not in command and command[-1] == "torchvision"
    assert constraints == "torch==2.13.0+cpu\n"
    assert "none on https://download.pytorch.org/whl/cpu fits torch 2.13.0+cpu" in capsys.readouterr().out
