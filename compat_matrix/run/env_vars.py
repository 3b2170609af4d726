"""Environment variables a run reads, checked before anything starts: a bad value is one clear
error (exit 2) here, not a crash in every worker of every release later."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from packaging.version import InvalidVersion, Version

DEVICES = ("auto", "cpu", "cuda")


def _torch_pin(value: str) -> str | None:
    try:
        Version(value)
    except InvalidVersion:
        return "an exact torch version such as 2.13.0"
    return None


def _cache_folder(value: str) -> str | None:
    path = Path(value)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        return f"a folder (or a path where one can be made); {existing} is a file"
    return None


def _index_url(value: str) -> str | None:
    return None if value.startswith(("http://", "https://", "file://")) else "a package index URL (https://...)"


CHECKS = {
    "COMPAT_MATRIX_DEVICE": lambda v: None if v in DEVICES else f"one of {', '.join(DEVICES)}",
    "COMPAT_MATRIX_TORCH": _torch_pin,
    "COMPAT_MATRIX_CACHE": _cache_folder,
    "COMPAT_MATRIX_TORCH_INDEX": _index_url,
}
"""Variable -> what is wrong with a value (None when it is fine)."""


def environment_problems(environ: Mapping[str, str] = os.environ) -> list[str]:
    """One message per set variable with a value the harness cannot use, naming what it takes."""
    problems = []
    for name, check in CHECKS.items():
        value = environ.get(name)
        if value is None or value == "":
            continue
        wanted = check(value)
        if wanted:
            problems.append(f"environment variable {name}={value!r}: it takes {wanted}; fix or unset it")
    return problems
