"""Peak memory of one probe: CUDA max allocated on a GPU, the process's peak RSS on CPU.

Reset before each probe so each cell reports its own peak, not the worker's lifetime high-water mark.
On CPU the peak RSS (VmHWM) is reset through /proc/self/clear_refs (Linux >= 4.0); where that is
refused, the value falls back to the process-lifetime peak.
"""

from __future__ import annotations

import re
import resource
import sys
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_RESET_PEAK_RSS = "5"
"""Writing this to clear_refs resets VmHWM to the current RSS (see proc(5))."""


def reset_peak_memory(device: str) -> None:
    """Start a new peak-memory window for `device` (`cpu`, `cuda`, `cuda:N`)."""
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        _CLEAR_REFS.write_text(_RESET_PEAK_RSS)
    except OSError:
        pass


def peak_memory_mb(device: str) -> float | None:
    """Peak memory in MiB since the last reset; None when it cannot be read."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        match = re.search(r"^VmHWM:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        match = None
    if match:
        return int(match.group(1)) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
