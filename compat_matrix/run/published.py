"""The as-published cells of a run: each release loads the checkpoint its model's `written_by`
release wrote (what `from_pretrained(<hub id>)` gives users), with every probe.

A `written_by` release the run does not test builds its checkpoints first, in its own environment
(made when absent, as `compat-matrix drift` does), and saves its adapters (its selected
`adapter_roundtrip` cells, whose results are not kept); its other cells are not run. With the
store, a model whose build is stored and intact is not built again (`compat_matrix/run/builds.py`):
a release with nothing left to build is not started.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, TextIO

from compat_matrix.spec.cells import Cell

from compat_matrix.envs.releases import env_name
from compat_matrix.run.release_exec import exec_in_release, log_tail
from compat_matrix.spec.layout import build_log
from compat_matrix.spec.schema import Matrix

if TYPE_CHECKING:
    from compat_matrix.run.runner import StoreUse
    from compat_matrix.run.store import EnvFacts


def writers_to_build(matrix: Matrix, models: list[str] | None, installed: set[str]) -> dict[str, list[str]]:
    """{written_by release: its models} for the selected tiny models whose writer the run did not install."""
    writers: dict[str, list[str]] = {}
    for entry in matrix.models:
        if entry.source == "tiny" and entry.written_by and entry.written_by not in installed and (
                not models or entry.key in models):
            writers.setdefault(entry.written_by, []).append(entry.key)
    return writers


def build_writers(matrix_file: Path, writers: dict[str, list[str]], out: Path, stream: TextIO = sys.stderr,
                  writer_cells: Sequence[Cell] = (), store: StoreUse | None = None) -> None:
    """Each writer release builds its models' checkpoints, and runs those models' `writer_cells` (the
    selected adapter_roundtrip cells: they save the adapters the readers' cells load); one that cannot
    leaves its readers' cells `skipped` ("has saved no checkpoint"), and says so here with its log.
    With `store`, models whose build is stored (and still in the cache) are skipped, and finished builds stored."""
    for release, models in writers.items():
        label = f"{env_name(release)}-build"
        by_model = {m: [c for c in writer_cells if c.model == m] for m in models}
        models = _not_stored(release, models, by_model, matrix_file, out, store, stream, label)
        if not models:
            continue
        log = build_log(out, env_name(release))
        cells = [c.id for c in writer_cells if c.model in models]
        adapters = f" and {len(cells)} adapter(s)" if cells else ""
        print(f"[{label}] as-published checkpoints{adapters} of {', '.join(models)} (written_by "
              f"{release}; log: {log})", file=stream, flush=True)
        outputs = log.with_name(f"{env_name(release)}-build-outputs.json")
        outputs.unlink(missing_ok=True)
        code = exec_in_release(matrix_file, release, out, ["compat_tests.build_published", "--matrix", str(matrix_file),
                                                           "--models", ",".join(models), "--cells", ",".join(cells),
                                                           "--outputs", str(outputs)], log)
        if code:
            print(f"[{label}] exit {code}: the cells reading these checkpoints say what is "
                  f"missing\n{log_tail(log)}", file=stream, flush=True)
        if store is not None:
            from compat_matrix.run.builds import keep_builds

            keep_builds(store.store, store.keys, release, by_model, _facts(release, matrix_file, out, store), outputs)


def _facts(release: str, matrix_file: Path, out: Path, store: StoreUse) -> EnvFacts | None:
    from compat_matrix.envs.tox_setup import tox_setup
    from compat_matrix.run.store import env_facts, machine_device

    matrix = store.keys.matrix
    return env_facts(tox_setup(matrix_file, out, matrix.install).workdir / env_name(release), machine_device(matrix))


def _not_stored(release: str, models: list[str], by_model: dict[str, list[Cell]], matrix_file: Path, out: Path,
                store: StoreUse | None, stream: TextIO, label: str) -> list[str]:
    """The models whose build the store does not hold (all of them without a store, or with --fresh)."""
    if store is None or store.fresh:
        return models
    from compat_matrix.run.builds import plan

    planned = plan(store.store, store.keys, release, models, by_model, _facts(release, matrix_file, out, store))
    if planned.reused:
        print(f"[{label}] store: reused {len(planned.reused)} of {len(models)} builds (stored "
              f"{min(planned.reused.values())}); {len(planned.to_build)} to build", file=stream, flush=True)
    return planned.to_build
