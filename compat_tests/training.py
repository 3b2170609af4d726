"""Which training libraries this release environment has, and why one is missing.

`compat_matrix/envs/install_training.py` installs trl and peft beside each release and writes what it asked for
and what failed to `<env>/compat-matrix-training.json`; a probe that needs a missing one ends its
cell `unsupported` with that reason rather than failing the model.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import sys
from pathlib import Path
from types import ModuleType

from compat_tests.outcomes import CellUnsupported

REPORT = Path(sys.prefix) / "compat-matrix-training.json"


def install_error(package: str) -> str | None:
    """Why the installer could not put `package` here, or None (installed, or never attempted)."""
    try:
        report = json.loads(REPORT.read_text())
    except (OSError, ValueError):
        return None
    found = report.get(package) or {}
    error = found.get("error")
    return str(error) if error else None


def require(package: str) -> ModuleType:
    """Import `package`. Not installed: CellUnsupported with the installer's reason. Installed (its
    requirements accept this transformers) but the import raises: that error, so the cell fails."""
    try:
        importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        reason = install_error(package) or "not installed (compat_matrix/envs/install_training.py installs it into release environments)"
        raise CellUnsupported(f"{package} is not available beside this transformers release: {reason}") from None
    return importlib.import_module(package)
