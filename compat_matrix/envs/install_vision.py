"""Install the torchvision that matches a release environment's torch, where the torch source offers it.

Only with COMPAT_MATRIX_TORCH_INDEX (the CPU or CUDA torch index, as on GitHub runners): that index
holds a torchvision built for each of its torch builds. PyPI's torchvision wheels are built against
PyPI's CUDA torch, so beside a local CPU wheel (no index set) none is installed, and the cells that
need it say `skipped: needs torchvision`. torch is held to the installed version by a constraint, so
only the matching torchvision fits; a failed install is printed and leaves the environment as it was
(its cells then say what they need). Run by tox (`commands_pre`), before trl and peft.

    python -m compat_matrix.envs.install_vision
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tempfile
from pathlib import Path

OUTPUT_TAIL = 1500
"""Characters of pip's output printed when the install fails."""


def installed(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def install_command(index: str, constraints: Path) -> list[str]:
    """pip install torchvision from the torch index alone (no other build of it), torch held as installed."""
    return [sys.executable, "-m", "pip", "install", "--quiet", "--index-url", index, "--constraint", str(constraints),
            "torchvision"]


def main() -> int:
    index = os.environ.get("COMPAT_MATRIX_TORCH_INDEX")
    torch = installed("torch")
    if installed("torchvision"):
        print(f"torchvision: {installed('torchvision')} (torch {torch})")
        return 0
    if not index:
        print("torchvision: not installed (no COMPAT_MATRIX_TORCH_INDEX: PyPI's builds need PyPI's CUDA torch; "
              "cells that need it are skipped, `needs torchvision`)")
        return 0
    with tempfile.TemporaryDirectory() as folder:
        constraints = Path(folder) / "installed.txt"
        constraints.write_text(f"torch=={torch}\n")
        done = subprocess.run(install_command(index, constraints), capture_output=True, text=True)
    if done.returncode != 0:
        print(f"torchvision: not installed, none on {index} fits torch {torch} "
              f"(pip: {(done.stdout + done.stderr)[-OUTPUT_TAIL:].strip()})")
        return 0
    print(f"torchvision: {installed('torchvision')} from {index} (torch {torch})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
