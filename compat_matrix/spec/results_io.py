"""Writing and resuming a results file so that a fault never loses or tears a line.

- One `os.write` per line on an `O_APPEND` descriptor: a killed writer leaves at most one torn
  last line, which readers skip and `resume` drops.
- A write that fails (disk full) is cut back to the last whole line and raises
  `ResultsNotWritten` naming the file and how many lines stay valid.
- One writer per file at a time (`holding`, an flock on `<file>.lock`): a second run sharing the
  folder waits and says so. The lock's descriptor can be handed to a child process, so a run
  whose controller was killed still holds it until its orphaned pytest has finished writing.
- `resume` keeps the lines of cells that finished and drops the runner's placeholders for cells
  that never ran, so a resumed run re-runs exactly those.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from os import write as _os_write  # the one call that touches the disk (fault tests plant errors here)
from pathlib import Path
from typing import Any, TextIO

LOCK_HELD_ENV = "COMPAT_MATRIX_RESULTS_LOCKED"
"""Set by `compat-matrix run` for pytest: the results file whose lock the run already holds."""

PLACEHOLDER = "filled_by_runner"
"""`details` key of the `error` line the runner writes for a cell the run never reached."""


class ResultsNotWritten(OSError):
    """A line could not be written (disk full, folder gone); the lines before it are intact."""


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Complete JSON lines of a results file (a line being written, or torn, is left out)."""
    if not path.is_file():
        return []
    lines = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(line, dict):
            lines.append(line)
    return lines


class ResultsWriter:
    """Appends one flushed JSON line per call; `fresh` empties the file first."""

    def __init__(self, path: Path, fresh: bool):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if fresh else 0), 0o644)
        self.lines = 0

    def write(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        start = os.lseek(self.fd, 0, os.SEEK_END)
        try:
            written = 0
            while written < len(data):
                written += _os_write(self.fd, data[written:])
        except OSError as exc:
            os.ftruncate(self.fd, start)  # no torn line stays behind
            raise ResultsNotWritten(exc.errno, f"cannot write results to {self.path} ({exc.strerror or exc}); the "
                                    f"{self.lines} line(s) this run wrote before stay valid") from exc
        self.lines += 1

    def close(self) -> None:
        os.close(self.fd)


@contextmanager
def holding(path: Path, stream: TextIO = sys.stderr) -> Iterator[int]:
    """Hold the results file's lock (yields its descriptor); when another run holds it, say so and wait.

    flock rather than the `filelock` package (used for the checkpoint cache): the descriptor must be
    passed on to the run's child process, which `filelock` does not expose."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for {path}: another run is writing it (lock {path}.lock)", file=stream, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _kept(path: Path) -> list[dict[str, Any]]:
    return [line for line in read_lines(path) if not (line.get("details") or {}).get(PLACEHOLDER)]


def finished(path: Path) -> set[str]:
    """Cell ids with a line of their own in `path` (the runner's placeholders do not count)."""
    return {str(line.get("cell_id")) for line in _kept(path)}


def resume(path: Path) -> set[str]:
    """Rewrite `path` with only the whole lines of cells that finished; their cell ids."""
    kept = _kept(path)
    if path.is_file():
        temporary = path.with_name(f".{path.name}.resume")
        temporary.write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in kept), encoding="utf-8")
        os.replace(temporary, path)
    return {str(line.get("cell_id")) for line in kept}
