"""A per-cell time limit inside the worker, so a hung cell still writes its own `error` line.

pytest-timeout stays as the backstop (thread method: it kills a worker stuck in C code, which the
controller then reports as a crashed cell). Its signal method is not used: armed before setup, it
could fire during a slow import in a fresh worker, where a bare `except:` may swallow it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class CellTimeout(Exception):
    """The cell ran past settings.cell_timeout_s."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise `CellTimeout` in this (main) thread after `seconds`; a no-op where SIGALRM is unavailable."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise CellTimeout(f"timed out after {seconds:g} s (settings.cell_timeout_s)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
