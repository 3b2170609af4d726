"""Where the run happens: the fingerprint written into every result line, and device/dtype.

Versions come from the installed packages' metadata, not from importing them: pytest's controller
writes lines for crashed cells and must not import torch for that.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from compat_matrix.spec.records import RECORDED_LIBRARIES
from compat_tests.needs import optional_packages

REPO = Path(__file__).resolve().parent.parent


@functools.cache
def git_commit() -> str | None:
    """Commit of compat-matrix that ran, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def pick_device(preference: str) -> tuple[str, Any]:
    """`cuda` with bf16 (fp16 where bf16 is unsupported) when asked or available, else `cpu` with fp32.

    COMPAT_MATRIX_DEVICE (auto, cpu, cuda) overrides matrix.yaml's settings.device for one run.
    """
    import torch

    preference = os.environ.get("COMPAT_MATRIX_DEVICE") or preference
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return "cpu", torch.float32
    if not torch.cuda.is_available():
        raise RuntimeError("matrix.yaml settings.device is 'cuda' but torch sees no CUDA device")
    return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def installed_version(package: str) -> str:
    """The installed version of `package` (as its `__version__` says), without importing it."""
    return importlib.metadata.version(package)


@functools.cache
def fingerprint(device: str) -> dict[str, Any]:
    """Versions and machine facts shared by every cell of this process (`device`: `unknown` where
    no cell ran, as in the controller's line for a crashed cell, which leaves `packages` empty:
    transformers' checks import torch in some releases)."""
    transformers = installed_version("transformers")
    gpu_name = None
    if device == "cuda":
        import torch

        gpu_name = torch.cuda.get_device_name(0)
    return {
        "transformers": transformers,
        "transformers_requested": os.environ.get("COMPAT_MATRIX_REQUESTED", transformers),
        "torch": installed_version("torch"),
        "python": platform.python_version(),
        "device": device,
        "gpu_name": gpu_name,
        "git_commit": git_commit(),
        "libraries": library_versions(),
        "packages": {} if device == "unknown" else optional_packages(),
    }


def library_versions() -> dict[str, str | None]:
    """Installed version of each of RECORDED_LIBRARIES (None when absent), read without importing them."""
    versions: dict[str, str | None] = {}
    for name in RECORDED_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def env_name() -> str:
    """Results file stem: the tox env name when tox runs us, else derived from the release."""
    return os.environ.get("COMPAT_MATRIX_ENV") or "tf" + installed_version("transformers").replace(".", "_")
