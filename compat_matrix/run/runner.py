"""Run the matrix for several releases through tox, one release at a time, with visible progress.

Releases run one after another: each already spreads its cells over the cores with xdist. A
release whose environment cannot be installed, or whose run stops early, still gets a line for
every selected cell (`error`, with the reason), so the report never silently loses cells.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from compat_matrix.envs.releases import env_name
from compat_matrix.spec.cells import Cell, select_cells
from compat_matrix.spec.layout import cells_file, log_file, results_file, results_folder
from compat_matrix.spec.records import FINGERPRINT_KEYS, RECORDED_LIBRARIES, cell_record
from compat_matrix.spec.results_io import LOCK_HELD_ENV, PLACEHOLDER, ResultsWriter, finished, holding, read_lines
from compat_matrix.spec.schema import Matrix
from compat_matrix.run.store import (CELLS, Keys, Reuse, Store, env_facts, keep, machine_device, reusable, storable,
                                 unverified_lines)
from compat_matrix.envs.tox_setup import tox_setup
from compat_matrix.run.ahead import wait_ahead

REPO = Path(__file__).resolve().parents[2]
STOP = threading.Event()
"""Set: every release run in progress stops as on Ctrl-C. Only the main thread receives Ctrl-C; bisect
runs releases in threads and sets this for them."""
PROGRESS_EVERY_S = 5.0
JOINT_PLUGIN = "compat_matrix.run.joint_session"
"""The pytest plugin that runs a release's own cells in the session of its as-published ones (`run_joint`)."""
OWN_CELLS_ENV = "COMPAT_MATRIX_OWN_CELLS"
"""For that plugin: a file of the own cell ids the session also runs, one a line, in run order."""
OWN_LOCK_HELD_ENV = "COMPAT_MATRIX_OWN_LOCK_HELD"
"""For that plugin: the own results file whose lock the runner holds (as LOCK_HELD_ENV for the other)."""


@dataclass
class ReleaseRun:
    """What happened to one release: where its lines are, and how the run ended."""

    release: str
    env: str
    results: Path
    log: Path
    exit_code: int | None = None
    interrupted: bool = False
    lines: list[dict] = field(default_factory=list)


def tox_command(release: str, listed_envs: set[str], env_dir: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """The tox call for a release: its own env when tox.ini lists it, else `tfany` in its own dir
    (`env_dir`, e.g. bisect's environment cache, else `.tox/<env>`)."""
    env = env_name(release)
    extra_env = {"COMPAT_MATRIX_REQUESTED": release, "COMPAT_MATRIX_ENV_NAME": env}
    if env in listed_envs and env_dir is None:
        return ["-e", env], extra_env
    # tox's own temp and log folders go with the env too: several `tfany` envs are made or run at once
    # (bisect's candidates; a run's next release made ahead), and tox empties its log folder as it starts
    # (one shared `.tox/tfany/log` failed a history run's release: FileNotFoundError in ensure_empty_dir)
    folder = str(env_dir) if env_dir is not None else f"{{work_dir}}/{env}"
    return ["-e", "tfany", "-x", f"testenv:tfany.env_dir={folder}", "-x", f"testenv:tfany.env_tmp_dir={folder}/.tox-tmp",
            "-x", f"testenv:tfany.env_log_dir={folder}/.tox-log"], extra_env


@dataclass(frozen=True)
class StoreUse:
    """How a run uses the results store: reads it unless `fresh`, and always adds what it ran."""

    store: Store
    keys: Keys
    fresh: bool = False


def prepare_env(matrix: Matrix, matrix_file: Path, release: str, out: Path, env_dir: Path | None, log: Path) -> subprocess.Popen:
    """Start making a release's environment in `env_dir` (tox --notest) without waiting: bisect makes the
    next candidates' environments while it tests the current release. A run in the same env_dir must
    wait for this process first."""
    setup = tox_setup(matrix_file, out, matrix.install)
    tox_args, extra_env = tox_command(release, setup.listed_envs(), env_dir)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as stream:
        return subprocess.Popen(setup.tox(*tox_args, "--notest"), stdout=stream, stderr=subprocess.STDOUT, cwd=setup.root,
                                env={**os.environ, **extra_env, **setup.environ()}, start_new_session=True)


def installed_release(results: Path) -> str | None:
    """The transformers version a release's run actually installed (`latest` resolved), from its lines."""
    return next((line["transformers"] for line in read_lines(results) if line.get("device") != "unknown"), None)


def _unexpected(line: dict) -> bool:
    expected = (line.get("expected") or {}).get("status")
    return line.get("status") in ("fail", "error") and expected != line.get("status")


class Progress:
    """Prints `[env] done/total cells, N unexpected failures` as the results file grows, every
    PROGRESS_EVERY_S at most, reading only the lines appended since (the controller polls twice a
    second: parsing the whole file each time cost as much CPU as a release's cells on 2 cores)."""

    def __init__(self, run: ReleaseRun, total: int, stream: TextIO):
        self.run, self.total, self.stream = run, total, stream
        self.last_count, self.last_time, self.last_read = -1, 0.0, 0.0
        self.offset, self.count, self.failures = 0, 0, 0

    def _read_new(self) -> None:
        try:
            with self.run.results.open("rb") as handle:
                if os.fstat(handle.fileno()).st_size < self.offset:  # rewritten (a resume keeps whole lines only)
                    self.offset, self.count, self.failures = 0, 0, 0
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return
        whole = data[: data.rfind(b"\n") + 1]
        for raw in whole.splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict):
                self.count += 1
                self.failures += _unexpected(line)
        self.offset += len(whole)

    def done(self, lines: list[dict]) -> None:
        """The last line, from the file's lines as read once at the end."""
        self.count, self.failures = len(lines), sum(_unexpected(line) for line in lines)
        print(f"[{self.run.results.stem}] {self.count}/{self.total} cells done, {self.failures} unexpected failure(s)",
              file=self.stream, flush=True)

    def update(self, force: bool = False) -> None:
        if not force and time.monotonic() - self.last_read < PROGRESS_EVERY_S:
            return
        self.last_read = time.monotonic()
        self._read_new()
        if not force and self.count == self.last_count:
            return
        self.last_count, self.last_time = self.count, time.monotonic()
        print(f"[{self.run.results.stem}] {self.count}/{self.total} cells done, {self.failures} unexpected failure(s)",
              file=self.stream, flush=True)


def run_release(matrix: Matrix, matrix_file: Path, release: str, cells: list[Cell], out: Path, workers: int,
                stream: TextIO = sys.stderr, saved_by: list[str] | None = None, env_dir: Path | None = None,
                resumed: bool = False, published_in: str | None = None, store: StoreUse | None = None) -> ReleaseRun:
    """Run `cells` for one release through tox; fill in an `error` line for any cell left without one.

    With `saved_by`, the cells are cross-release ones (`select_cells(..., saved_by=...)`): this
    release loads the checkpoints those releases saved; with `published_in` (the version the release
    installed), the as-published cells (`select_cells(..., published_in=...)`) too; lines go to
    `<env>-cross.jsonl`. With
    `env_dir`, the release's environment lives there (bisect's throwaway ones).
    With `resumed`, cells that already have a line keep it and are not run again; with `store`,
    cells stored under their current key are copied in and not run either (a resumed pytest keeps
    them), and the lines that ran are stored. Whoever writes
    the results file holds its lock (pytest's controller, then this function for the missing
    cells' lines): a second run sharing the folder waits, saying what for.
    """
    env = env_name(release)
    cross = bool(saved_by) or bool(published_in)
    run = ReleaseRun(release, env, results_file(results_folder(out), env, cross), log_file(out, env, cross))
    run.log.parent.mkdir(parents=True, exist_ok=True)
    wait_ahead(env_dir or tox_setup(matrix_file, out, matrix.install).workdir / env, stream)  # made ahead: finish first
    with holding(run.results, stream) as lock:  # another run writing this file (or its orphaned tox) finishes first
        part = _Part.open(run, cells, matrix, matrix_file, out, env_dir, resumed, store, stream)
        if part.left:
            _run_tox(run, matrix, matrix_file, out, part.left, workers, stream, saved_by, part.resumed, lock, env_dir,
                     published_in)
        part.close(matrix, store, stream)
    Progress(run, len(cells), stream).done(run.lines)
    return run


def run_joint(matrix: Matrix, matrix_file: Path, release: str, own: list[Cell], cells: list[Cell], out: Path,
              workers: int, published_in: str, stream: TextIO = sys.stderr, resumed: bool = False,
              store: StoreUse | None = None) -> tuple[ReleaseRun, ReleaseRun]:
    """A release's `own` cells and its as-published `cells` (`published_in`) in one tox and pytest start.

    Each kind keeps its file, store use and `error` lines as `run_release` gives them (the own cells'
    lines in `<env>.jsonl`, the others in `<env>-cross.jsonl`); only the pytest session is shared
    (`compat_matrix.run.joint_session`), and its log is `<env>-cross.log`. A kind with nothing left
    to run (stored, or resumed) leaves the session to the other alone. For a release whose own cells
    write no checkpoint another release's cells read (not a `written_by` release): the caller decides.
    """
    env = env_name(release)
    folder = results_folder(out)
    mine = ReleaseRun(release, env, results_file(folder, env), log_file(out, env))
    rest = ReleaseRun(release, env, results_file(folder, env, True), log_file(out, env, True))
    rest.log.parent.mkdir(parents=True, exist_ok=True)
    wait_ahead(tox_setup(matrix_file, out, matrix.install).workdir / env, stream)  # made ahead: finish first
    with holding(mine.results, stream) as own_lock, holding(rest.results, stream) as lock:
        own_part = _Part.open(mine, own, matrix, matrix_file, out, None, resumed, store, stream)
        part = _Part.open(rest, cells, matrix, matrix_file, out, None, resumed, store, stream)
        if own_part.left and part.left:
            mine.log = rest.log  # one session, one log (a failed setup's error lines quote it)
            _run_tox(rest, matrix, matrix_file, out, part.left, workers, stream, None, part.resumed or own_part.resumed,
                     lock, None, published_in, joined=_Joined(mine, own_part.left, own_lock))
        elif own_part.left:
            _run_tox(mine, matrix, matrix_file, out, own_part.left, workers, stream, None, own_part.resumed, own_lock, None)
        elif part.left:
            _run_tox(rest, matrix, matrix_file, out, part.left, workers, stream, None, part.resumed, lock, None,
                     published_in)
        own_part.close(matrix, store, stream)
        part.close(matrix, store, stream)
    Progress(mine, len(own), stream).done(mine.lines)
    Progress(rest, len(cells), stream).done(rest.lines)
    return mine, rest


@dataclass
class _Part:
    """One results file of a release's run, between taking its lock and giving it back: what is left to run."""

    run: ReleaseRun
    cells: list[Cell]
    left: list[Cell]
    unverified: set[str]
    resumed: bool

    @classmethod
    def open(cls, run: ReleaseRun, cells: list[Cell], matrix: Matrix, matrix_file: Path, out: Path,
             env_dir: Path | None, resumed: bool, store: StoreUse | None, stream: TextIO) -> _Part:
        """Keep (resumed) or clear the file, copy the stored lines in; the cells still without a line."""
        done = finished(run.results) if resumed else set()
        if not resumed:
            run.results.unlink(missing_ok=True)
        unverified = unverified_lines(run.results, store.keys.identity(), done if resumed else None) if store else set()
        left = [c for c in cells if c.id not in done]
        if resumed:
            print(f"[{run.results.stem}] resuming: {len(cells) - len(left)} of {len(cells)} cells already have a line",
                  file=stream, flush=True)
        reused = store is not None and bool(left) and _reuse(run, matrix, matrix_file, out, left, env_dir, store, stream)
        if reused:
            finished_now = finished(run.results)
            left = [c for c in left if c.id not in finished_now]
        return cls(run, cells, left, unverified, resumed or reused)

    def close(self, matrix: Matrix, store: StoreUse | None, stream: TextIO) -> None:
        """`error` lines for the cells without one (unless interrupted), then store what ran."""
        run = self.run
        if not run.interrupted:
            _fill_missing(run, matrix, self.cells)
        run.lines = read_lines(run.results)  # read once: storing, the last progress line and the caller use it
        if store is not None:
            keep(store.store, store.keys, matrix, [line for line in run.lines if line.get("cell_id") not in self.unverified])
            if self.unverified:
                print(f"[{run.results.stem}] store: {len(self.unverified)} resumed line(s) not stored: an earlier run "
                      "wrote them with other harness code or matrix.yaml models/settings (or before this was "
                      "recorded); `--fresh` reruns them", file=stream, flush=True)


def stored(matrix: Matrix, matrix_file: Path, release: str, cells: list[Cell], out: Path, env_dir: Path | None,
           store: StoreUse, stream: TextIO, label: str) -> Reuse | None:
    """The stored lines of `cells` in `release` (None: nothing to look up). The key needs the
    environment's library versions: an environment not made yet is made first (tox --notest),
    unless the store has nothing for this release."""
    if store.fresh or not storable(release) or not cells or not store.store.file(release, CELLS).is_file():
        return None
    env = env_name(release)
    folder = env_dir or tox_setup(matrix_file, out, matrix.install).workdir / env
    wait_ahead(folder, stream)  # its versions once made, not half-way
    device = machine_device(matrix)
    facts = env_facts(folder, device)
    if facts is None:
        print(f"[{label}] making the environment to read its versions (the store has cells for {release})",
              file=stream, flush=True)
        prepare_env(matrix, matrix_file, release, out, env_dir, log_file(out, f"{env}-setup")).wait()
        facts = env_facts(folder, device)
    if facts is None or facts.transformers != release:
        return None
    return reusable(store.store, store.keys, matrix, cells, release, facts, env)


def _reuse(run: ReleaseRun, matrix: Matrix, matrix_file: Path, out: Path, cells: list[Cell], env_dir: Path | None,
           store: StoreUse, stream: TextIO) -> bool:
    """Copy the stored lines of `cells` into the results file, saying how many and from when; True when any."""
    found = stored(matrix, matrix_file, run.release, cells, out, env_dir, store, stream, run.results.stem)
    if found is None:
        why = "--fresh" if store.fresh else f"nothing stored for {run.release}" if storable(run.release) else \
            f"'{run.release}' moves: its lines are stored under the release it installs"
        print(f"[{run.results.stem}] store: {why} ({len(cells)} to run)", file=stream, flush=True)
        return False
    print(f"[{run.results.stem}] {found.describe(len(cells))}", file=stream, flush=True)
    if not found.lines:
        return False
    writer = ResultsWriter(run.results, fresh=False)
    try:
        for line in found.lines:
            writer.write(line)
    finally:
        writer.close()
    return True


def selection_args(matrix: Matrix, cells: list[Cell], saved_by: list[str] | None, listing: Path,
                   published_in: str | None = None) -> list[str]:
    """pytest options selecting exactly `cells`: the model/strategy/profile/probe filters (and the
    as-published cells of the release `published_in`), plus a file of cell ids (written to
    `listing`) when those filters alone would select more, as bisect's undecided cells often would
    (cells of other profiles or probes, run for nothing)."""
    chosen = {"--cm-models": {c.model for c in cells}, "--cm-strategies": {c.strategy for c in cells},
              "--cm-profiles": {c.profile for c in cells}, "--cm-probes": {c.probe for c in cells}}
    args = [part for option, values in chosen.items() for part in (option, ",".join(sorted(values)))]
    if saved_by:
        args += ["--cm-saved-by", ",".join(saved_by)]
    if published_in:
        args.append("--cm-published")
    broad = select_cells(matrix, chosen["--cm-models"], chosen["--cm-strategies"], chosen["--cm-probes"], saved_by,
                         chosen["--cm-profiles"], published_in)
    if {c.id for c in broad} != {c.id for c in cells}:
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("".join(f"{c.id}\n" for c in cells), encoding="utf-8")
        args += ["--cm-cells", str(listing)]
    return args


def training_environ(matrix: Matrix, matrix_file: Path, cells: list[Cell]) -> dict[str, str]:
    """What compat_matrix.envs.install_training reads: trl/peft only where a probe trains, peft where a
    profile has an adapter, and the matrix file (its trl/peft pins)."""
    return {"COMPAT_MATRIX_PROBES": ",".join(sorted({c.probe for c in cells})),
            "COMPAT_MATRIX_ADAPTERS": "1" if any(matrix.model(c.model).load_kwargs[c.profile].adapter for c in cells) else "",
            "COMPAT_MATRIX_FILE": str(matrix_file)}


@dataclass(frozen=True)
class _Joined:
    """A release's own cells riding along in the session of its as-published cells (`run_joint`)."""

    run: ReleaseRun
    cells: list[Cell]
    lock: int


def _run_tox(run: ReleaseRun, matrix: Matrix, matrix_file: Path, out: Path, left: list[Cell], workers: int,
             stream: TextIO, saved_by: list[str] | None, resumed: bool, lock: int, env_dir: Path | None,
             published_in: str | None = None, joined: _Joined | None = None) -> None:
    """pytest in the release's tox env, for the cells `left` (and `joined`'s, written to their own file);
    tox inherits the results locks, so a tox orphaned by a killed controller keeps them until its pytest
    has finished writing."""
    release = run.release
    setup = tox_setup(matrix_file, out, matrix.install)
    tox_args, extra_env = tox_command(release, setup.listed_envs(), env_dir)
    pytest_args = ["--cm-matrix", str(matrix_file), "--cm-results", str(run.results.parent),
                   *selection_args(matrix, left, saved_by, cells_file(out, run.env, bool(saved_by) or bool(published_in)),
                                   published_in)]
    everything = [*left, *(joined.cells if joined else [])]
    joint_env: dict[str, str] = {}
    if joined is not None:
        listing = cells_file(out, run.env)
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("".join(f"{c.id}\n" for c in joined.cells), encoding="utf-8")
        pytest_args += ["-p", JOINT_PLUGIN]
        joint_env = {OWN_CELLS_ENV: str(listing), OWN_LOCK_HELD_ENV: str(joined.run.results.resolve())}
    if resumed:
        pytest_args.append("--cm-resume")
    command = setup.tox(*tox_args, "--", *pytest_args)
    environ = {**os.environ, **extra_env, **setup.environ(), "COMPAT_MATRIX_WORKERS": str(workers),
               **training_environ(matrix, matrix_file, everything), LOCK_HELD_ENV: str(run.results.resolve()), **joint_env}
    for name in (OWN_CELLS_ENV, OWN_LOCK_HELD_ENV):
        if name not in joint_env:
            environ.pop(name, None)
    what = " and ".join(filter(None, ["as-published checkpoints" if published_in else "",
                                      f"checkpoints saved by {', '.join(saved_by)}" if saved_by else ""]))
    what = what or f"transformers {release}"
    print(f"[{run.results.stem}] {what}: {len(left)} cells (log: {run.log})", file=stream, flush=True)
    progresses = [Progress(run, len(left) + len(read_lines(run.results)), stream)]
    if joined is not None:
        print(f"[{joined.run.results.stem}] transformers {release}: {len(joined.cells)} cells, in the same pytest "
              f"session (log: {run.log})", file=stream, flush=True)
        progresses.append(Progress(joined.run, len(joined.cells) + len(read_lines(joined.run.results)), stream))
    runs = [run, *([joined.run] if joined else [])]
    locks = (lock, *((joined.lock,) if joined else ()))
    with run.log.open("a" if resumed else "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=setup.root, env=environ,
                                   start_new_session=True, pass_fds=locks)
        try:
            while process.poll() is None:
                if STOP.is_set():
                    raise KeyboardInterrupt
                for progress in progresses:
                    progress.update()
                time.sleep(0.5)
        except KeyboardInterrupt:
            for each in runs:
                each.interrupted = True
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    for each in runs:
        each.exit_code = process.returncode


def _log_tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(encoding="utf-8", errors="replace").strip().splitlines() if log.is_file() else []
    return "\n".join(text[-lines:])


def _fill_missing(run: ReleaseRun, matrix: Matrix, cells: list[Cell]) -> None:
    """Write an `error` line for each selected cell the run did not report."""
    done = {line.get("cell_id") for line in read_lines(run.results)}
    missing = [c for c in cells if c.id not in done]
    if not missing:
        return
    log_text = run.log.read_text(encoding="utf-8", errors="replace") if run.log.is_file() else ""
    setup_failed = not done and "commands[0]>" not in log_text
    reason = (f"the environment for transformers {run.release} could not be set up (tox exit {run.exit_code}):\n"
              if setup_failed else f"the run stopped before this cell (tox exit {run.exit_code}):\n") + _log_tail(run.log)
    fingerprint = _fingerprint_of(run, matrix)
    writer = ResultsWriter(run.results, fresh=False)
    try:
        for cell in missing:
            record = cell_record(matrix, cell, run.env, fingerprint)
            record.update(error_type="InstallError" if setup_failed else "HarnessError", message=reason[-4000:],
                          details={PLACEHOLDER: True})
            writer.write(record)
    finally:
        writer.close()


def _fingerprint_of(run: ReleaseRun, matrix: Matrix) -> dict[str, Any]:
    """The facts of a line for a cell that did not run: those of the release's cells that did (same
    environment: its installed transformers and libraries), on device `unknown`; when none ran, what
    the run asked for, and the libraries as null (the environment never ran a cell)."""
    ran = next((line for line in read_lines(run.results) if line.get("device") != "unknown"), None)
    if ran is not None:
        return {**{key: ran.get(key) for key in FINGERPRINT_KEYS}, "device": "unknown", "gpu_name": None}
    return {"transformers": run.release, "transformers_requested": run.release, "torch": matrix.torch,
            "python": sys.version.split()[0], "device": "unknown", "gpu_name": None, "git_commit": None,
            "libraries": dict.fromkeys(RECORDED_LIBRARIES), "packages": {}}


def tox_available() -> bool:
    """True when `python -m tox` works from this interpreter (how `run_release` calls it)."""
    return subprocess.run([sys.executable, "-m", "tox", "--version"], capture_output=True).returncode == 0
