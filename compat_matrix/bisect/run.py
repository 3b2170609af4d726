"""`compat-matrix bisect`: real releases as the oracle of `bisect.search`, outcomes compared as the
upgrade view compares them, results kept per release for later invocations, output for people and machines.

An outcome is a cell's result line; two are the same when the status is the same and, for passing
cells, the upgrade view (`reports.diff`) sees no silent change in either direction (loaded class,
dtype, parameter count, missing keys, logit drift, API surface); for failing cells, when the cause is
the same: the signature the report groups one row per cause by (`reports.signature`), so a release
where a cell fails for another reason is a boundary too, and a number, path or address inside the
message never is.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from compat_matrix.bisect.search import Bisect, Boundary
from compat_matrix.envs.env_cache import cap_bytes, env_root, mark_used, prune
from compat_matrix.envs.release_sets import cache_root
from compat_matrix.envs.releases import env_name
from compat_matrix.run import runner
from compat_matrix.spec.cells import Cell
from compat_matrix.spec.layout import results_file, results_folder
from compat_matrix.spec.schema import Matrix
from reports.dependencies import dependency_change
from reports.diff import describe_silent, silent_changes, surface_losses
from reports.load import load_results
from reports.report import Cell as Result
from reports.signature import Signature, signature
from reports.status import ADAPTER_PROBES

PREPARE_AHEAD = 2
"""Environments made in the background at once, while a release is tested (2 cores: more only competes)."""

SERIAL_UP_TO = 4
"""Cells a release runs in pytest's own process (`-n 0`): a worker process would import torch and
transformers a second time, which costs more than it saves for a handful of cells."""

NOT_AN_OUTCOME_ERRORS = ("InstallError", "HarnessError")
"""The release could not be installed, or its run stopped before the cell: says nothing about it."""


def cause(result: Result) -> Signature | None:
    """The cause the report would group a failing cell under; None for a pass.

    Compared as a same-release cell's: a cross-release bisect's walk meets the writer's own cell (where
    writer and reader are one release), which must not read as another cause for that alone."""
    if result.status == "pass":
        return None
    if result.needs:
        return Signature("needs", "", result.needs)
    return signature(result.probe, result.error_type, result.message or "", False, (result.model, result.hub_id),
                     result.status, result.details.get("root"))


def same_outcome(a: Result, b: Result) -> bool:
    """Same status and, where both fail, the same cause; where both pass, no silent change the
    upgrade view would report either way."""
    if a.status != b.status:
        return False
    if a.status != "pass":
        return cause(a) == cause(b)
    return not (silent_changes(a, b) or silent_changes(b, a) or surface_losses(a, b) or surface_losses(b, a))


def says_something(result: Result | None) -> bool:
    """False for a missing line, a `skipped` cell (the network, a GPU) or an install failure; a cell that
    needs a package the environment lacks is an outcome: the release from which it needs it is a
    dependency change."""
    return (result is not None and (result.status != "skipped" or bool(result.needs))
            and result.error_type not in NOT_AN_OUTCOME_ERRORS)


def matrix_fingerprint(matrix: Matrix) -> str:
    """What decides a cell's outcome besides the release: the matrix without its expectations.

    `--record` edits only expectations, so results stay reusable after recording a boundary."""
    data = matrix.model_dump(mode="json")
    data.pop("expectations", None)
    for model in data["models"]:
        model.pop("expectations", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class ReleaseOracle:
    """Runs the cells a release has no stored result for (through tox, in a cached environment)."""

    def __init__(self, matrix: Matrix, matrix_file: Path, cells: dict[str, Cell], store: Path, runs: Path, workers: int,
                 reuse: bool = True, stream: TextIO = sys.stderr):
        self.matrix, self.matrix_file, self.cells, self.store, self.runs = matrix, matrix_file, cells, store, runs
        self.workers, self.reuse, self.stream = workers, reuse, stream
        self.cap = cap_bytes()
        self.unusable: dict[tuple[str, str], Result] = {}
        """Install failures of this invocation: kept out of the store so a later run tries again."""
        self.ran: list[str] = []
        self.reused: list[str] = []
        self.silent: dict[str, str] = {}
        """Why a release said nothing about a cell (its first such cell's status and message), by release."""
        self.preparing: dict[str, subprocess.Popen] = {}
        """Environments being made in the background, by release (`prepare`)."""
        self.pruning: threading.Thread | None = None
        self.lock = threading.Lock()
        self.file_locks: dict[tuple[str, bool], threading.Lock] = {}
        self.fresh: set[tuple[str, str]] = set()
        """(release, cell id) run by this invocation."""

    def stored(self, release: str, cross: bool = False) -> dict[str, Result]:
        """Kept results of `release`: its own checkpoints' cells, or (cross) those reading other releases'."""
        path = results_file(self.store, env_name(release), cross)
        if not path.is_file():
            return {}
        return {c.cell_id: c for c in load_results([path]).cells
                if (c.saved_by not in (None, c.transformers)) == cross}

    def __call__(self, release: str, cell_ids: list[str]) -> dict[str, Result | None]:
        return self.answer(release, cell_ids)

    def answer(self, release: str, cell_ids: list[str], saved_by: str | None = None) -> dict[str, Result | None]:
        """Results of `cell_ids` in `release` (stored, else run now); with `saved_by`, the ids are
        cross-release cells reading the checkpoints that release saved. Safe from several threads: one
        release's results file (and run folder) is worked on by one at a time, the next reusing its lines."""
        with self.lock:
            lock = self.file_locks.setdefault((release, saved_by is not None), threading.Lock())
        with lock:
            return self._answer(release, cell_ids, saved_by)

    def _answer(self, release: str, cell_ids: list[str], saved_by: str | None) -> dict[str, Result | None]:
        cross = saved_by is not None
        # without reuse, only what this invocation ran counts (another thread may have run it already)
        known = {c: r for c, r in self.stored(release, cross).items() if self.reuse or (release, c) in self.fresh}
        missing = [c for c in cell_ids if c not in known and (release, c) not in self.unusable]
        if missing:
            self._run(release, missing, saved_by)
            known = self.stored(release, cross)
            self.fresh.update((release, c) for c in missing)
        else:
            self.reused.append(release)
        answers: dict[str, Result | None] = {}
        for cell_id in cell_ids:
            result = known.get(cell_id) or self.unusable.get((release, cell_id))
            answers[cell_id] = result if says_something(result) else None
            if result is not None and answers[cell_id] is None:
                self.silent.setdefault(release, _why_silent(result))
        return answers

    def prepare(self, releases: list[str]) -> None:
        """Start making the environments of releases that may be tested next (up to PREPARE_AHEAD at once)."""
        for release in releases:
            running = [r for r, process in self.preparing.items() if process.poll() is None]
            if len(running) >= PREPARE_AHEAD:
                return
            env = env_name(release)
            if release in self.preparing or _env_made(env_root() / env) or (self.reuse and self._answered(release)):
                continue
            mark_used(env_root() / env)
            self._prune(keep=(env, *map(env_name, self.preparing)))
            self.preparing[release] = runner.prepare_env(self.matrix, self.matrix_file, release, self.runs / env,
                                                  env_root() / env, self.runs / env / "logs" / "prepare.log")

    def _prune(self, keep: tuple[str, ...]) -> None:
        """Make room for a new environment in a background thread: sizing every cached environment, and
        removing one, take seconds each on a busy disk, which the release's test need not wait for.
        The environments in `keep` and those used most recently (the ones bisect is about to use) stay."""
        if self.pruning is not None and self.pruning.is_alive():
            return
        self.pruning = threading.Thread(target=prune, args=(self.cap, keep), daemon=True)
        self.pruning.start()

    def _answered(self, release: str) -> bool:
        """Whether stored results already answer every cell here (no environment needed)."""
        known = self.stored(release)
        return bool(known) and all(c in known for c in self.cells)

    def _ready(self, release: str) -> None:
        """Wait for a background preparation of this release's environment, if one is under way."""
        process = self.preparing.pop(release, None)
        if process is not None:
            process.wait()

    def close(self) -> None:
        """Let environments still being made finish (a killed one would leave a half-made env to reuse)."""
        for release in list(self.preparing):
            self._ready(release)
        if self.pruning is not None:
            self.pruning.join()

    def _run(self, release: str, cell_ids: list[str], saved_by: str | None) -> None:
        env = env_name(release)
        cross = saved_by is not None
        env_dir = env_root() / env
        self._ready(release)
        if not _env_made(env_dir):
            self._prune(keep=(env, *map(env_name, self.preparing)))
        mark_used(env_dir)
        scratch = self.runs / env
        cells = [c for c in (self.cells.get(c) or Cell.from_id(c) for c in cell_ids) if c is not None]
        # xdist keeps a model's cells on one worker: one model gains nothing from a second
        one_model = len({(c.model, c.saved_by) for c in cells}) == 1
        workers = 0 if len(cells) <= SERIAL_UP_TO or one_model else self.workers
        run = runner.run_release(self.matrix, self.matrix_file, release, cells, scratch,
                          workers, stream=self.stream, saved_by=[saved_by] if saved_by else None, env_dir=env_dir)
        if run.interrupted:
            raise KeyboardInterrupt
        self.ran.append(release)
        for result in load_results([results_file(results_folder(scratch), env, cross)]).cells:
            if result.error_type in NOT_AN_OUTCOME_ERRORS:
                self.unusable[(release, result.cell_id)] = result
        keep = [line for line in run.lines if line.get("error_type") not in NOT_AN_OUTCOME_ERRORS]
        stored = results_file(self.store, env, cross)
        stored.parent.mkdir(parents=True, exist_ok=True)
        old = [line for line in runner.read_lines(stored) if line.get("cell_id") not in {k["cell_id"] for k in keep}]
        stored.write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in old + keep), encoding="utf-8")


@dataclass(frozen=True)
class CrossAxis:
    """Which side of a cross-release cell bisect walks: the reading release (`saved_by` fixed: which
    release first fails to read S's checkpoint?) or the writing one (`loaded_by` fixed: from which
    release on does L fail to read the checkpoint?). Exactly one of the two is set."""

    saved_by: str | None = None
    loaded_by: str | None = None

    @property
    def walks(self) -> str:
        """The expectation key the walked releases go into: `transformers` (reader) or `saved_by` (writer)."""
        return "transformers" if self.saved_by else "saved_by"

    def pair(self, release: str) -> tuple[str, str]:
        """(writer, reader) when the walked axis is at `release`."""
        return (self.saved_by, release) if self.saved_by else (release, self.loaded_by or "")

    def describe(self) -> str:
        return (f"the release reading checkpoints transformers {self.saved_by} saved" if self.saved_by
                else f"the release that saved the checkpoints transformers {self.loaded_by} reads")


class CrossReleaseOracle:
    """Cross-release cells as bisect's oracle, keyed by the cell without its `@writer`.

    The writer first builds its tiny checkpoints and adapters (the same-release `load` cell of each
    group, or the adapter_roundtrip cell itself: a result kept like any other); the reader then loads
    them. Where writer and reader are one release, the answer is that release's own cell (a
    checkpoint read by the release that saved it)."""

    def __init__(self, releases: ReleaseOracle, axis: CrossAxis):
        self.releases, self.axis = releases, axis

    def __call__(self, release: str, cell_ids: list[str]) -> dict[str, Result | None]:
        writer, reader = self.axis.pair(release)
        if writer == reader:
            return self.releases.answer(release, cell_ids)
        built = self.releases.answer(writer, sorted({_builder(c) for c in cell_ids}))
        # a writer that could not be installed, or skipped the build, says nothing about any reader
        readable = [c for c in cell_ids if built[_builder(c)] is not None]
        got = self.releases.answer(reader, [f"{c}@{writer}" for c in readable], saved_by=writer) if readable else {}
        return {c: got.get(f"{c}@{writer}") for c in cell_ids}


def _builder(cell_id: str) -> str:
    """The same-release cell that saves what a cross cell reads: its group's `load` for the checkpoint,
    the cell itself for an adapter (adapter_roundtrip saves it)."""
    cell = Cell.from_id(cell_id)
    assert cell is not None, cell_id
    return Cell(cell.model, cell.strategy, cell.profile, cell.probe if cell.probe in ADAPTER_PROBES else "load").id


def _why_silent(result: Result) -> str:
    """`skipped: needs a package ...` or `not installable: ...`, one line."""
    what = "not installable" if result.error_type == "InstallError" else result.status
    first = next((line.strip() for line in (result.message or "").splitlines() if line.strip()), "")
    return f"{what}: {first[:160]}" if first else what


def _env_made(env_dir: Path) -> bool:
    """tox records an environment's setup (`.tox-info.json`) once it is made."""
    return (env_dir / ".tox-info.json").is_file()




def store_folder(matrix: Matrix) -> Path:
    """Results kept across invocations, one file per release, for this matrix (expectations aside)."""
    return cache_root() / "bisect" / matrix_fingerprint(matrix) / "results"


@dataclass
class BisectRun:
    releases: list[str]
    boundaries: list[Boundary]
    seconds: float
    ran: list[str]
    reused: list[str]
    axis: CrossAxis | None = None
    """Set for cross-release cells: which side was walked, which was fixed."""
    silent: dict[str, str] = field(default_factory=dict)
    """Why each release that said nothing about some cell said nothing."""


def bisect_cells(matrix: Matrix, matrix_file: Path, cells: list[Cell], releases: list[str], runs: Path, workers: int,
                 exhaustive: bool = False, reuse: bool = True, stream: TextIO = sys.stderr,
                 axis: CrossAxis | None = None, jobs: int = 1) -> BisectRun:
    """Search every cell between releases[0] (A) and releases[-1] (B); each release's run (results, tox
    log) goes under `runs/<env>`. With `axis`, `cells` are read from checkpoints another release
    saved, and the releases walked are the readers or the writers (`CrossAxis`). `jobs` releases are
    tested at once (`Bisect`'s `parallel`)."""
    started = time.monotonic()
    by_id = {c.id: c for c in cells}
    oracle = ReleaseOracle(matrix, matrix_file, by_id, store_folder(matrix), runs, workers, reuse, stream)
    search: Bisect[str, Result] = Bisect(releases, CrossReleaseOracle(oracle, axis) if axis else oracle,
                                         same_outcome, exhaustive, prepare=oracle.prepare, parallel=jobs)
    try:
        boundaries = search.run(list(by_id))
    except KeyboardInterrupt:
        runner.STOP.set()  # the release runs of other threads stop too (Ctrl-C reaches the main thread only)
        raise
    finally:
        oracle.close()
    return BisectRun(releases, boundaries, time.monotonic() - started, oracle.ran, oracle.reused, axis, oracle.silent)


def describe_change(boundary: Boundary) -> str:
    """`pass -> fail (ValueError: ...)`; where both sides fail, both causes (`fail -> fail, another
    cause (OSError: ... -> AttributeError: ...)`); the silent changes of a cell that passes on both sides."""
    before, after = boundary.before, boundary.after
    if before is None or after is None:
        return ""
    requirement = dependency_change(before, after)
    if requirement is not None:
        return f"dependency change: {requirement.title()}"
    if before.status == after.status == "pass":
        changes = silent_changes(before, after) or silent_changes(after, before)
        return "; ".join(describe_silent(c) for c in changes) or "API surface changed"
    if "pass" not in (before.status, after.status) and cause(before) != cause(after):
        return f"{before.status} -> {after.status}, another cause ({_error(before, 200)} -> {_error(after, 200)})"
    failing = after if after.status != "pass" else before
    error = _error(failing, 300)
    return f"{before.status} -> {after.status}" + (f" ({'was ' if failing is before else ''}{error})" if error else "")


def _error(result: Result, chars: int) -> str:
    """`ValueError: the message` on one line, cut at `chars` characters of message."""
    message = " ".join((result.message or "").split())[:chars]
    return f"{result.error_type}: {message}" if result.error_type else message


def group_key(boundary: Boundary) -> tuple[Any, ...]:
    """Cells with one boundary and one change read as one group (failing sides by their cause, so a
    number or a model name in the message does not split a group); all unchanged or undecided cells as one."""
    if boundary.verdict in ("no change", "undecided"):
        return (boundary.verdict,)
    sides = [None if r is None else (r.status, cause(r)) for r in (boundary.before, boundary.after)]
    both_pass = all(side is not None and side[0] == "pass" for side in sides)
    return (boundary.verdict, boundary.last_good, boundary.first_bad, *sides,
            describe_change(boundary) if both_pass else "",
            tuple(boundary.changes) if boundary.verdict == "changes more than once" else ())


def grouped(boundaries: Iterable[Boundary]) -> list[list[Boundary]]:
    groups: dict[tuple[Any, ...], list[Boundary]] = {}
    for boundary in boundaries:
        groups.setdefault(group_key(boundary), []).append(boundary)
    return list(groups.values())


def format_text(run: BisectRun) -> str:
    a, b = run.releases[0], run.releases[-1]
    walked = f", walking {run.axis.describe()}" if run.axis else ""
    lines = [f"bisect {a} -> {b}{walked}: {len(run.releases)} releases in range, {len(run.ran)} run, "
             f"{len(run.reused)} answered from stored results, {run.seconds:.0f} s"]
    order = {"boundary": 0, "changes more than once": 1, "undecided": 2, "no change": 3}
    for group in sorted(grouped(run.boundaries), key=lambda g: order[g[0].verdict]):
        first = group[0]
        cells = ", ".join(str(b.cell) for b in group)
        if first.verdict == "no change":
            lines += ["", f"No change between {a} and {b} ({len(group)} cells)"]
            continue
        if first.verdict == "undecided":
            silent = [r for r in (a, b) if any(r in u.stepped_over for u in group)]
            lines += ["", f"Undecided ({len(group)} cells): {' and '.join(silent) or f'{a} or {b}'} says nothing",
                      *[f"  {r}: {run.silent.get(r, 'skipped or not installable')}" for r in silent], f"  cells: {cells}"]
            continue
        if first.verdict == "changes more than once":
            spans = ", ".join(f"{x} -> {y}" for x, y in first.changes)
            lines += ["", f"Changes more than once ({len(group)} cells): {spans}; run with --exhaustive for every change"]
        elif first.before and first.after and dependency_change(first.before, first.after):
            lines += ["", f"Dependency change from {first.first_bad} ({len(group)} cells; last without it "
                          f"{first.last_good}): not a break"]
        else:
            lines += ["", f"Last good {first.last_good}, first bad {first.first_bad} ({len(group)} cells)"]
        lines += [f"  what changed: {describe_change(first)}", f"  cells: {cells}",
                  f"  releases tested: {len(first.tested)} ({', '.join(first.tested)})"]
        if first.stepped_over:
            lines.append("  stepped over (skipped or not installable): " + ", ".join(
                f"{r} ({run.silent[r]})" if r in run.silent else r for r in first.stepped_over))
    return "\n".join(lines) + "\n"


def _outcome_json(result: Result | None) -> dict[str, Any] | None:
    if result is None:
        return None
    sig = cause(result)
    return {"status": result.status, "error_type": result.error_type, "message": result.message,
            "cause": None if sig is None else {"stage": sig.stage, "error_type": sig.error_type, "text": sig.text},
            "loaded_class": result.loaded_class, "dtype": result.dtype}


def to_json(run: BisectRun) -> dict[str, Any]:
    return {
        "good": run.releases[0], "bad": run.releases[-1], "releases": run.releases, "seconds": round(run.seconds, 1),
        "releases_run": run.ran, "releases_reused": run.reused, "silent": run.silent,
        "cross_release": {"walks": run.axis.walks, "saved_by": run.axis.saved_by, "loaded_by": run.axis.loaded_by}
        if run.axis else None,
        "cells": [{"cell_id": b.cell, "verdict": b.verdict, "last_good": b.last_good, "first_bad": b.first_bad,
                   "what_changed": describe_change(b), "before": _outcome_json(b.before), "after": _outcome_json(b.after),
                   "tested": b.tested, "stepped_over": b.stepped_over, "changes": [list(c) for c in b.changes]}
                  for b in run.boundaries],
    }
