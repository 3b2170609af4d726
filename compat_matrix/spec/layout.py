"""Where a run's files live: one function per name, so the harness, the runner and the CLI agree."""

from __future__ import annotations

import os
from pathlib import Path

CROSS_SUFFIX = "-cross"
"""Results of cross-release cells (a release loading checkpoints other releases saved)."""


def cache_root() -> Path:
    """Where tiny checkpoints and prefetch notes live: env COMPAT_MATRIX_CACHE, default ~/.cache/compat-matrix."""
    return Path(os.environ.get("COMPAT_MATRIX_CACHE") or Path.home() / ".cache" / "compat-matrix")


def hub_note(key: str) -> Path:
    """Why `compat-matrix prefetch` could not download a hub entry (read by its skipped cells)."""
    return cache_root() / "hub" / f"{key}.json"


def results_stem(env: str, cross: bool = False) -> str:
    """`tf4_57_6`, or `tf4_57_6-cross` for that release's cross-release cells."""
    return f"{env}{CROSS_SUFFIX}" if cross else env


def results_folder(out: Path) -> Path:
    """The folder of results lines under a run's output folder."""
    return out / "results"


def results_file(folder: Path, env: str, cross: bool = False) -> Path:
    """One release's results lines in a results folder."""
    return folder / f"{results_stem(env, cross)}.jsonl"


def log_file(out: Path, env: str, cross: bool = False) -> Path:
    """The tox log of one release's run under a run's output folder."""
    return out / "logs" / f"{results_stem(env, cross)}.log"


def cells_file(out: Path, env: str, cross: bool = False) -> Path:
    """The exact cell ids one release's run is limited to, when the model/strategy/profile/probe
    filters alone would select more (bisect's undecided cells)."""
    return out / "cells" / f"{results_stem(env, cross)}.txt"


def drift_file(out: Path, env: str) -> Path:
    """One release's drift records (`compat_tests.drift_record`) under a run's output folder."""
    return out / "drift" / f"{env}.json"


def build_log(out: Path, env: str) -> Path:
    """The log of one release building the as-published checkpoints it wrote (`written_by`)."""
    return out / "logs" / f"{env}-build.log"


def drift_log(out: Path, env: str) -> Path:
    """The log of one release's drift recording."""
    return out / "logs" / f"{env}-drift.log"
