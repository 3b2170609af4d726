"""`run` and `check`: run the selected cells in each release's environment, then report, or compare two releases."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from compat_matrix.cli.common import (UsageProblem, cells_of, matrix_of, ready_to_run, release_set_of, releases_of,
                                      selection, storage, store_use)
from compat_matrix.cli.results import report_into
from compat_matrix.envs.release_sets import results_releases
from compat_matrix.envs.releases import SPECIAL, env_name
from compat_matrix.run.ahead import make_ahead, stop_ahead
from compat_matrix.spec.cells import AS_PUBLISHED, Cell, checkpoint_kind, select_cells
from compat_matrix.spec.layout import results_file, results_folder
from compat_matrix.spec.results_io import holding
from compat_matrix.spec.schema import Matrix, is_specifier
from reports.status import ADAPTER_PROBES

if TYPE_CHECKING:
    from compat_matrix.run.runner import ReleaseRun, StoreUse


def cmd_run(args: argparse.Namespace) -> int:
    matrix = matrix_of(args)
    cells = cells_of(matrix, args)
    out: Path = args.out
    earlier = tuple(results_releases(results_folder(out)))  # the report shows them too: neighbours over all
    release_set = release_set_of(matrix, args.transformers, args.pre, reported=earlier)
    releases = list(release_set.releases)
    if args.round_trip_only and args.cross_release:
        raise UsageProblem("--round-trip-only runs no cross-release cells: drop one of it and --cross-release")
    if args.published_only and (args.round_trip_only or args.cross_release):
        raise UsageProblem("--published-only runs the as-published cells alone: drop --round-trip-only and --cross-release")
    ready_to_run(out)
    with holding(results_folder(out.resolve())):  # another run on this folder finishes first (report included)
        (out / "release-set.json").write_text(json.dumps(release_set.to_json(), indent=1) + "\n", encoding="utf-8")
        return _run(matrix, cells, releases, args)


def _run(matrix: Matrix, cells: list[Cell], releases: list[str], args: argparse.Namespace) -> int:
    from compat_matrix.run.runner import run_release

    out: Path = args.out
    interrupted = False
    store = store_use(matrix, args)
    joint = set() if args.round_trip_only or args.cross_release else joint_releases(matrix, releases)
    deferred: dict[str, list[Cell]] = {}
    own_of = {r: [c for c in cells if _as_published(matrix, c, r)] if args.published_only else cells for r in releases}
    first = [r for r in releases if r not in joint]
    try:
        for release in releases:
            if release in joint:
                deferred[release] = own_of[release]  # run beside its as-published cells, in their pytest session
                continue
            _make_next(matrix, args, first, release, own_of)
            run = run_release(matrix, Path(args.matrix).resolve(), release, own_of[release], out.resolve(), args.workers,
                              resumed=args.resume, store=store)
            if run.interrupted:
                print(f"[{run.env}] interrupted: keeping the {len(run.lines)} cells that finished", file=sys.stderr)
                interrupted = True
                break
        if not interrupted and not args.round_trip_only:
            interrupted = _other_checkpoints(matrix, args, releases, out.resolve(), store, deferred)
    finally:
        stop_ahead()
    # judged against the matrix file this run used: the folder may also hold earlier runs' results
    extra = ["--expectations", str(args.matrix), "--release-set", str(out / "release-set.json")]
    extra += ["--fail-on-regression"] if args.fail_on_regression else []
    if args.baseline:
        extra += ["--baseline", str(args.baseline)]
    code = report_into(results_folder(out), out, extra)
    print(f"report: {out / 'report.md'}, {out / 'index.html'}, {out / 'report.json'}", file=sys.stderr)
    return 130 if interrupted else code


def _make_next(matrix: Matrix, args: argparse.Namespace, queue: list[str], release: str,
               cells_of_release: dict[str, list[Cell]]) -> None:
    """Before `release` runs, start making the environment of the one after it in `queue` (compat_matrix/run/ahead.py)."""
    later = queue[queue.index(release) + 1:]
    if later and cells_of_release.get(later[0]):
        make_ahead(matrix, Path(args.matrix).resolve(), later[0], cells_of_release[later[0]], args.out.resolve())


def _as_published(matrix: Matrix, cell: Cell, release: str) -> bool:
    """Whether a release's own cell loads what users get from the hub (a hub or local entry, a tiny one
    in its `written_by` release), not a checkpoint the release saved itself."""
    return checkpoint_kind(matrix.model(cell.model), None, release) == AS_PUBLISHED


def joint_releases(matrix: Matrix, releases: list[str]) -> set[str]:
    """The releases whose own cells may wait for their as-published cells' pytest session (one start,
    not two): their own cells write no checkpoint another release's cells read (no model is
    `written_by` them) and their name does not move (`latest`'s installed version names the
    as-published cells). Not with `--cross-release`: every release's own checkpoints are read there."""
    writers = {entry.written_by for entry in matrix.models if entry.written_by}
    return {r for r in releases if r not in writers and r not in SPECIAL}


def _other_checkpoints(matrix: Matrix, args: argparse.Namespace, releases: list[str], out: Path,
                       store: StoreUse | None = None, deferred: dict[str, list[Cell]] | None = None) -> bool:
    """Each release loads the as-published checkpoints (its models' `written_by` release wrote them,
    built first where the run does not test that release and a cell that reads them is not stored)
    and, with `--cross-release`, the tiny checkpoints every other release saved; True when interrupted.
    A release in `deferred` runs its own cells (the value) in the same pytest session (`run_joint`)."""
    from compat_matrix.run.published import build_writers, writers_to_build
    from compat_matrix.run.runner import installed_release, run_joint, run_release, stored

    deferred = deferred or {}

    matrix_file = Path(args.matrix).resolve()
    installed = {r: installed_release(results_file(results_folder(out), env_name(r))) for r in releases}
    selections = {}
    for release in releases:
        others = sorted({v for r, v in installed.items() if v and r != release and v != installed[release]})
        cross = others if args.cross_release and others else None
        cells = select_cells(matrix, args.models, args.strategies, args.probes, saved_by=cross, profiles=args.profiles,
                             published_in=installed[release] or release)
        selections[release] = (cross, cells)
    writers = writers_to_build(matrix, args.models, {v for v in installed.values() if v})
    if store is not None and writers:
        needed = set()
        for release, (_, cells) in selections.items():
            found = stored(matrix, matrix_file, installed[release] or release, cells, out, None, store, sys.stderr,
                           env_name(release))
            kept = {line["cell_id"] for line in found.lines} if found else set()
            needed |= {(c.saved_by, c.model) for c in cells if c.id not in kept}
        writers = {w: [m for m in models if (w, m) in needed] for w, models in writers.items()}
        writers = {w: models for w, models in writers.items() if models}
    adapter_writers = [c for c in select_cells(matrix, args.models, args.strategies, args.probes, profiles=args.profiles)
                       if c.probe in ADAPTER_PROBES]
    build_writers(matrix_file, writers, out, writer_cells=adapter_writers, store=store)
    resumed = getattr(args, "resume", False)
    work = {r: [*deferred.get(r, []), *cells] for r, (_, cells) in selections.items()}
    queue = [r for r in selections if work[r]]
    try:
        for release, (cross, cells) in selections.items():
            if release in queue:
                _make_next(matrix, args, queue, release, work)
            own, published_in = deferred.get(release), installed[release] or release
            mine: ReleaseRun | None = None
            if own is not None and cells:  # deferred releases run no cross-release cells (joint_releases)
                mine, run = run_joint(matrix, matrix_file, release, own, cells, out, args.workers, published_in,
                                      resumed=resumed, store=store)
            elif own is not None:
                mine = run = run_release(matrix, matrix_file, release, own, out, args.workers, resumed=resumed, store=store)
            elif cells:
                run = run_release(matrix, matrix_file, release, cells, out, args.workers, saved_by=cross, resumed=resumed,
                                  published_in=published_in, store=store)
            else:
                continue
            if mine is not None and mine.interrupted:
                print(f"[{mine.env}] interrupted: keeping the {len(mine.lines)} cells that finished", file=sys.stderr)
            if run.interrupted:
                return True
    finally:
        stop_ahead()  # an interrupted or failed run leaves none behind
    return False


def _complete(path: Path, cells: list[Cell]) -> bool:
    from compat_matrix.spec.results_io import read_lines

    return {c.id for c in cells} <= {line.get("cell_id") for line in read_lines(path)}


def cmd_check(args: argparse.Namespace) -> int:
    matrix = matrix_of(args)
    cells = cells_of(matrix, args)
    if any(is_specifier(r) for r in (args.from_release, args.to_release)):
        raise UsageProblem("check compares two releases: give --from and --to as exact releases (e.g. 4.57.6), "
                           "not specifiers; `compat-matrix bisect` searches a range")
    releases = releases_of(matrix, [args.from_release, args.to_release])
    ready_to_run(args.out)
    with holding(results_folder(args.out.resolve())):  # another run on this folder finishes first
        return _check(matrix, cells, releases, args)


def _check(matrix: Matrix, cells: list[Cell], releases: list[str], args: argparse.Namespace) -> int:
    from compat_matrix.judge.expectations import MatrixExpectations
    from compat_matrix.run.runner import run_release
    from reports.build import build_report
    from reports.check_view import format_check
    from reports.diff import compare_releases, format_upgrade, upgrade_exit_code

    out: Path = args.out.resolve()
    store = store_use(matrix, args)
    for release in releases:
        results = results_file(results_folder(out), env_name(release))
        if args.reuse and _complete(results, cells):
            print(f"[{env_name(release)}] reusing {results}", file=sys.stderr)
            continue
        run = run_release(matrix, Path(args.matrix).resolve(), release, cells, out, args.workers, store=store)
        if run.interrupted:
            return 130
    if _other_checkpoints(matrix, args, releases, out, store):
        return 130
    files = [results_file(results_folder(out), env_name(r), cross) for r in releases for cross in (False, True)]
    # the matrix this check loaded (read_expectations would parse the file again: ~1.3 s of a stored check)
    report = build_report([p for p in files if p.is_file()], expectations=MatrixExpectations(matrix, str(args.matrix)))
    try:
        view = compare_releases(report, args.from_release, args.to_release)
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None
    drift = ""
    if args.drift:
        from compat_matrix.run.drift import adjacent, record_all
        from reports.drift import format_drift

        models = [m for m in dict.fromkeys(c.model for c in cells)]
        records = record_all(matrix, Path(args.matrix).resolve(), models, releases, out, reuse=args.reuse, store=store)
        drift = format_drift(adjacent(records, models), releases[0], releases[1], everything=args.all or args.cells)
    if args.cells:
        print(format_upgrade(view) + ("\n" + drift if drift else ""))
    else:
        print(format_check(view, drift, everything=args.all), end="")
    return upgrade_exit_code(view)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run the selected cells in each release's tox env and build the report")
    run.add_argument("--transformers", nargs="+",
                     help="releases, any on the package index, or PEP 440 specifiers such as '>=5.0,<5.6' "
                          "(every final release in range; default: matrix.yaml's)")
    run.add_argument("--pre", action="store_true", help="specifiers also match pre-releases")
    selection(run)
    run.add_argument("--cross-release", action="store_true",
                     help="then load every release's tiny checkpoints and adapters in every other release (load, forward, adapter_roundtrip)")
    run.add_argument("--round-trip-only", action="store_true",
                     help="only the checkpoints each release writes itself, not the as-published ones (the nightly's "
                          "release jobs; its cross-release job runs those)")
    run.add_argument("--published-only", action="store_true",
                     help="only the as-published cells (the checkpoints users get from the hub: what the history, "
                          "pins and the support table read), not the checkpoints each release saves itself; about "
                          "half the cells of the default matrix")
    run.add_argument("--baseline", type=Path, help="previous report.json to find regressions against")
    run.add_argument("--fail-on-regression", action="store_true", help="exit 1 when the report has regressions")
    run.add_argument("--resume", action="store_true",
                     help="continue a run that was killed: keep the lines in --out and run only the cells without one")
    storage(run)
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="what changes when upgrading transformers from one release to another")
    check.add_argument("--from", dest="from_release", required=True, help="the release you are on")
    check.add_argument("--to", dest="to_release", required=True, help="the release you want")
    selection(check)
    check.add_argument("--no-reuse", dest="reuse", action="store_false", help="re-run even when results exist")
    check.add_argument("--no-cross-release", dest="cross_release", action="store_false",
                       help="skip loading each release's checkpoints in the other")
    check.add_argument("--cells", action="store_true", help="list every cell that changes, not one line per cause")
    check.add_argument("--all", action="store_true",
                       help="every cause of every section, cross-release failures the release's own cells share, "
                            "and every drift comparison (default: what fits a screen, the rest counted)")
    storage(check)
    check.set_defaults(func=cmd_check)

    check.add_argument("--no-drift", dest="drift", action="store_false",
                       help="skip comparing what the two releases compute on the as-published checkpoints")
