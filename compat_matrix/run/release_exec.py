"""Run one Python module inside a release's tox environment, its output in a log file.

What `compat-matrix drift` (recording) and the as-published cells (building the `written_by`
release's checkpoints) need from a release that the run itself may not test.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from compat_matrix.envs.tox_setup import tox_setup
from compat_matrix.run.runner import tox_command
from compat_matrix.spec.validate import load_matrix


def exec_in_release(matrix_file: Path, release: str, out: Path, module_args: list[str], log: Path) -> int:
    """`python -m <module_args>` in the release's environment (made when absent); the exit code."""
    setup = tox_setup(matrix_file, out, load_matrix(matrix_file, check_model_types=False).install)
    tox_args, extra_env = tox_command(release, setup.listed_envs())
    command = [*setup.tox("exec", *tox_args), "--", "python", "-m", *module_args]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as handle:
        return subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT, cwd=setup.root,
                               env={**os.environ, **extra_env, **setup.environ()})


def log_tail(log: Path, lines: int = 10) -> str:
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:]) if log.is_file() else ""
