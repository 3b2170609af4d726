"""Make the next release's environment while the current release's cells run (a run over many releases).

A new release's environment (tox --notest through uv, then trl/peft: `install_training`) took 6-14 s
of a history run's minute per release, with the cores mostly idle (downloads, links, a resolver).
`make_ahead` starts it in the background, in its own session (its tox temp and log folders are its
environment's, `runner.tox_command`: two tox runs of `tfany` must not share them); whatever touches that environment first (`wait_ahead`: the store's
version lookup, the release's own tox run) waits for it. Nothing is decided here: a make that fails
leaves the release's own tox run to try again and fail as before, its `error` lines quoting its log.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from compat_matrix.envs.releases import SPECIAL, env_name
from compat_matrix.envs.tox_setup import tox_setup
from compat_matrix.spec.layout import log_file

if TYPE_CHECKING:
    from compat_matrix.spec.cells import Cell
    from compat_matrix.spec.schema import Matrix

_MAKING: dict[Path, tuple[subprocess.Popen, str]] = {}
"""Environment folder -> the process making it, and the release's label."""


def env_folder(matrix: Matrix, matrix_file: Path, release: str, out: Path) -> Path:
    """Where the run keeps a release's environment (`tox_command` without an env_dir)."""
    return tox_setup(matrix_file, out, matrix.install).workdir / env_name(release)


def make_ahead(matrix: Matrix, matrix_file: Path, release: str, cells: list[Cell], out: Path) -> bool:
    """Start making `release`'s environment, with the trl/peft its `cells` need, unless it exists (or
    is being made, or its name moves: `latest` upgrades in its own run); True when started."""
    from compat_matrix.run.runner import tox_command, training_environ

    folder = env_folder(matrix, matrix_file, release, out)
    if release in SPECIAL or folder in _MAKING or folder.exists():
        return False
    setup = tox_setup(matrix_file, out, matrix.install)
    tox_args, extra_env = tox_command(release, setup.listed_envs())
    make = setup.tox(*tox_args, "--notest")
    train = setup.tox("exec", *tox_args, "--", "python", "-m", "compat_matrix.envs.install_training")
    log = log_file(out, f"{env_name(release)}-setup")
    log.parent.mkdir(parents=True, exist_ok=True)
    environ = {**os.environ, **extra_env, **setup.environ(), **training_environ(matrix, matrix_file, cells)}
    with log.open("w", encoding="utf-8") as stream:
        process = subprocess.Popen(["sh", "-c", f"{shlex.join(make)} && {shlex.join(train)}"], stdout=stream,
                                   stderr=subprocess.STDOUT, cwd=setup.root, env=environ, start_new_session=True)
    _MAKING[folder] = (process, env_name(release))
    return True


def wait_ahead(folder: Path, stream: TextIO = sys.stderr) -> None:
    """Wait for the environment in `folder` when it is being made ahead (returns at once otherwise)."""
    making = _MAKING.pop(folder, None)
    if making is None:
        return
    process, label = making
    if process.poll() is None:
        print(f"[{label}] waiting for its environment, made while the previous release ran", file=stream, flush=True)
    process.wait()


def stop_ahead() -> None:
    """Stop every environment still being made (the run ends, or was interrupted): none outlives its run."""
    while _MAKING:
        _, (process, _) = _MAKING.popitem()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
