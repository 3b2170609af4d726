"""Record drift in each release's environment, then compare the releases (`compat-matrix drift`).

The release in a model's `written_by` records first: it builds the as-published checkpoint that
every other release then loads. Records live in `<out>/drift/<env>.json`; comparisons are made
here, in plain Python (`reports.drift`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from compat_matrix.envs.releases import env_name
from compat_matrix.envs.tox_setup import tox_setup
from compat_matrix.run.release_exec import exec_in_release, log_tail
from compat_matrix.run.store import DRIFT, EnvFacts, env_facts, machine_device, storable
from compat_matrix.spec.layout import drift_file, drift_log
from compat_matrix.spec.records import now
from compat_matrix.spec.schema import Matrix
from compat_tests.drift_record import BUILD_ERROR
from reports.drift import DriftComparison, compare_records

if TYPE_CHECKING:
    from compat_matrix.run.runner import StoreUse


def record_file(out: Path, release: str) -> Path:
    return drift_file(out, env_name(release))


def read_records(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def record_release(matrix_file: Path, release: str, models: list[str], out: Path, stream: TextIO = sys.stderr) -> Path:
    """Run `compat_tests.drift_record` in the release's tox env; a run that writes nothing gets
    an `error` record per model (with the log's tail), so no model is silently left out."""
    path = record_file(out, release)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    log = drift_log(out, env_name(release))
    print(f"[{env_name(release)}-drift] recording {', '.join(models)} (log: {log})", file=stream, flush=True)
    code = exec_in_release(matrix_file, release, out, ["compat_tests.drift_record", "--matrix", str(matrix_file),
                                                       "--models", ",".join(models), "--out", str(path)], log)
    if not path.is_file():
        records = {key: {"model": key, "transformers": release, "status": "error",
                         "reason": f"the drift recording in {env_name(release)} wrote nothing (exit {code}): {log_tail(log)}"}
                   for key in models}
        path.write_text(json.dumps(records, sort_keys=True) + "\n", encoding="utf-8")
    return path


MACHINE_ERRORS = frozenset({"MemoryError", "OutOfMemoryError", "OSError", "TimeoutError", "CellTimeout"})
"""A tiny build that failed with one of these may succeed next time."""


def storable_record(record: dict[str, Any]) -> bool:
    """Whether the store keeps a drift record: every one but `error`s, except a tiny build this release
    could not do (`build_error`, the exception's type; not the machine's), which is as much this release's
    outcome as a record (llava in 4.45.0 failed on every check otherwise). It stays an `error`, with its reason."""
    if record.get("status") != "error":
        return True
    return bool(record.get(BUILD_ERROR)) and record.get(BUILD_ERROR) not in MACHINE_ERRORS


def writers_first(matrix: Matrix, models: list[str], releases: list[str]) -> list[str]:
    """`releases`, preceded by the `written_by` releases of `models` that are not among them."""
    writers = [e.written_by for e in matrix.models if e.key in models and e.written_by]
    extra = [w for w in dict.fromkeys(writers) if w not in releases]
    ordered = [r for r in releases if r in writers] + [r for r in releases if r not in writers]
    return extra + ordered


def record_all(matrix: Matrix, matrix_file: Path, models: list[str], releases: list[str], out: Path,
               reuse: bool = False, store: StoreUse | None = None) -> dict[str, dict[str, Any]]:
    """{release as given: {model: record}}; with `reuse`, a release whose record file has every model is not re-run;
    with `store`, only the models without a stored record under their current key are recorded (and then stored).
    A `written_by` release not among `releases` records only the models it writes (it runs to build their
    as-published checkpoints; its records are not compared): the others' records were thrown away, and a
    model its release cannot build cost an `error` record, never stored, on every call."""
    records = {}
    for release in writers_first(matrix, models, releases):
        wanted = models if release in releases else [m for m in models if matrix.model(m).written_by == release]
        existing = read_records(record_file(out, release))
        if not (reuse and set(wanted) <= {k for k, r in existing.items() if r.get("status") != "error"}):
            existing = _recorded(matrix, matrix_file, release, wanted, out, store)
        records[release] = existing
    return {release: records[release] for release in releases}


def _facts(matrix: Matrix, matrix_file: Path, release: str, out: Path) -> EnvFacts | None:
    folder = tox_setup(matrix_file, out, matrix.install).workdir / env_name(release)
    facts = env_facts(folder, machine_device(matrix))
    return facts if facts is not None and facts.transformers == release else None


def _recorded(matrix: Matrix, matrix_file: Path, release: str, models: list[str], out: Path,
              store: StoreUse | None, stream: TextIO = sys.stderr) -> dict[str, Any]:
    """The release's records: stored ones under their current key, the rest recorded now (and stored)."""
    if store is None or not storable(release):
        return read_records(record_release(matrix_file, release, models, out, stream))
    facts = _facts(matrix, matrix_file, release, out)
    kept = store.store.entries(release, DRIFT) if facts is not None and not store.fresh else {}
    found = {m: kept[k]["record"] for m in models if (k := store.keys.drift(m, facts)) in kept} if facts else {}
    if found:
        print(f"[{env_name(release)}-drift] store: reused {len(found)} of {len(models)} records", file=stream, flush=True)
    missing = [m for m in models if m not in found]
    new = read_records(record_release(matrix_file, release, missing, out, stream)) if missing else {}
    facts = facts or _facts(matrix, matrix_file, release, out)  # the environment exists once a release recorded
    if facts is not None:
        store.store.add(release, ({"key": store.keys.drift(m, facts), "stored_at": now(), "record": r,
                                   "harness": store.keys.drift_code}
                                  for m, r in new.items() if storable_record(r)), DRIFT)
    records = {**found, **new}
    record_file(out, release).parent.mkdir(parents=True, exist_ok=True)
    record_file(out, release).write_text(json.dumps(records, sort_keys=True) + "\n", encoding="utf-8")
    return records


def adjacent(records: dict[str, dict[str, Any]], models: list[str]) -> list[DriftComparison]:
    """Each model's record compared with the one before it, in the order given; a release without
    a usable record gets its row (why), and the next one is compared with the last usable one."""
    comparisons = []
    for model in models:
        previous: dict[str, Any] | None = None
        for release in records:
            record = records[release].get(model)
            if record is None:
                continue
            if previous is not None:
                comparisons.append(compare_records(previous, record))
            if previous is None or record.get("status") == "ok":
                previous = record
    return comparisons
