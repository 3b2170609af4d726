"""The as-published cells of a run: each release loads the checkpoint its model's `written_by`
release wrote (what `from_pretrained(<hub id>)` gives users), with every probe.

A `written_by` release the run does not test builds its checkpoints first, in its own environment
(made when absent, as `compat-matrix drift` does), and saves its adapters (its selected
`adapter_roundtrip` cells, whose results are not kept); its other cells are not run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence, TextIO

from compat_matrix.spec.cells import Cell

from compat_matrix.envs.releases import env_name
from compat_matrix.run.release_exec import exec_in_release, log_tail
from compat_matrix.spec.layout import build_log
from compat_matrix.spec.schema import Matrix


def writers_to_build(matrix: Matrix, models: list[str] | None, installed: set[str]) -> dict[str, list[str]]:
    """{written_by release: its models} for the selected tiny models whose writer the run did not install."""
    writers: dict[str, list[str]] = {}
    for entry in matrix.models:
        if entry.source == "tiny" and entry.written_by and entry.written_by not in installed and (
                not models or entry.key in models):
            writers.setdefault(entry.written_by, []).append(entry.key)
    return writers


def build_writers(matrix_file: Path, writers: dict[str, list[str]], out: Path, stream: TextIO = sys.stderr,
                  writer_cells: Sequence[Cell] = ()) -> None:
    """Each writer release builds its models' checkpoints, and runs those models' `writer_cells` (the
    selected adapter_roundtrip cells: they save the adapters the readers' cells load); one that cannot
    leaves its readers' cells `skipped` ("has saved no checkpoint"), and says so here with its log."""
    for release, models in writers.items():
        log = build_log(out, env_name(release))
        cells = [c.id for c in writer_cells if c.model in models]
        adapters = f" and {len(cells)} adapter(s)" if cells else ""
        print(f"[{env_name(release)}-build] as-published checkpoints{adapters} of {', '.join(models)} (written_by "
              f"{release}; log: {log})", file=stream, flush=True)
        code = exec_in_release(matrix_file, release, out, ["compat_tests.build_published", "--matrix", str(matrix_file),
                                                           "--models", ",".join(models), "--cells", ",".join(cells)], log)
        if code:
            print(f"[{env_name(release)}-build] exit {code}: the cells reading these checkpoints say what is "
                  f"missing\n{log_tail(log)}", file=stream, flush=True)
