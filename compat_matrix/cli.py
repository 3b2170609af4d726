"""`compat-matrix`: validate, list, plan, run, check, drift, history, report, store, prefetch.

Exit codes: 0 ok; 1 regressions or breaking changes found (where asked for); 2 bad input;
3 results could not be written (disk full: the lines written before stay valid, `run --resume`
continues from them); 130 interrupted (what finished is kept and reported).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from packaging.version import Version

from compat_matrix.spec.cells import AS_PUBLISHED, CROSS_RELEASE_PROBES, Cell, checkpoint_kind, select_cells
from compat_matrix.spec.layout import results_file, results_folder
from compat_matrix.envs.release_sets import (ReleaseIndex, ReleaseSetError, ResolvedSet, is_version, print_resolved, span,
                                        resolve)
from compat_matrix.envs.releases import SPECIAL, UnknownRelease, check_releases, env_name
from compat_matrix.spec.results_io import ResultsNotWritten, holding
from compat_matrix.spec.schema import Matrix, is_specifier
from compat_matrix.spec.validate import DEFAULT_MATRIX, MatrixError, load_matrix
from reports.status import ADAPTER_PROBES
from reports.version import VERSION, generator

if TYPE_CHECKING:
    from compat_matrix.bisect.run import CrossAxis
    from compat_matrix.run.runner import StoreUse
    from compat_matrix.run.store import Keys, Store
    from reports.report import Report

DEFAULT_OUT = Path("compat-report")


class UsageProblem(Exception):
    """Wrong arguments: the message lists what exists."""


def _matrix(args: argparse.Namespace, check_model_types: bool = False) -> Matrix:
    """The matrix; model types are checked by `validate` (and in each release's env), not on every command."""
    return load_matrix(args.matrix, check_model_types=check_model_types)


def _cells(matrix: Matrix, args: argparse.Namespace) -> list[Cell]:
    try:
        return select_cells(matrix, args.models, args.strategies, args.probes, profiles=args.profiles)
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None


def _require_tox() -> None:
    """Release environments are tox environments: without tox no cell could run, so say so before any."""
    from compat_matrix.run.runner import tox_available

    if not tox_available():
        raise UsageProblem(f"tox is not installed in the Python that runs compat-matrix ({sys.executable}), and every "
                           f"release runs in a tox environment: install it with `{sys.executable} -m pip install "
                           "'tox>=4.20'` (installing compat-matrix with pip brings it)")


def find_matrix(cwd: Path) -> Path:
    """`matrix.yaml` in `cwd` or the nearest folder above it; in a source checkout, its own."""
    for folder in (cwd, *cwd.parents):
        if (folder / "matrix.yaml").is_file():
            return folder / "matrix.yaml"
    if DEFAULT_MATRIX.is_file():
        return DEFAULT_MATRIX
    raise UsageProblem(f"no matrix.yaml in {cwd} or any folder above it: pass --matrix FILE, or write one here "
                       "with `compat-matrix init`")


def _ready_to_run(out: Path) -> None:
    """Refuse a run that could not keep its results: no tox, bad environment variables, an unwritable --out."""
    from compat_matrix.run.env_vars import environment_problems

    _require_tox()
    problems = environment_problems()
    if problems:
        raise UsageProblem("\n".join(problems))
    try:
        results_folder(out).mkdir(parents=True, exist_ok=True)
        probe = results_folder(out) / ".writable"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageProblem(f"--out {out}: cannot write results there ({exc.strerror or exc}); pick a writable folder") from None


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} workers: at least 1")
    return number


def _release_set(matrix: Matrix, requested: list[str] | None, pre: bool = False) -> ResolvedSet:
    """`--transformers` or matrix.yaml's list, specifiers expanded, exact releases checked on the index.

    The index is asked at most once (and not at all for `latest`/`main`-only lists); what a
    specifier expanded to is printed before anything runs."""
    index = ReleaseIndex()
    try:
        resolved = resolve(list(requested or matrix.transformers), index, pre=pre)
        exact = [r for r in resolved.releases if r not in SPECIAL]
        versions = tuple(r for r in exact if is_version(r))
        if versions:
            answer = index.answer(f"the releases {', '.join(versions)}", must_have=versions)
            check_releases(exact, answer.versions)
            resolved = replace(resolved, index_releases=span(answer.versions, versions, pre))
        else:
            check_releases(exact)
    except (ReleaseSetError, UnknownRelease) as exc:
        raise UsageProblem(str(exc)) from None
    print_resolved(resolved)
    return resolved


def _releases(matrix: Matrix, requested: list[str] | None, pre: bool = False) -> list[str]:
    return list(_release_set(matrix, requested, pre).releases)


def cmd_validate(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.path or args.matrix, check_model_types=True, check_files=True)
    print(f"{args.path or args.matrix}: valid ({len(matrix.models)} models, {len(matrix.transformers)} releases, "
          f"{matrix.count_cells()} cells per release)")
    return 0


def _matrix_or_the_packaged_one(cwd: Path) -> Path:
    """`list` where there is no matrix.yaml yet: the matrix compat-matrix ships (what `init` starts from)."""
    try:
        return find_matrix(cwd)
    except UsageProblem:
        from compat_matrix.init.scaffold import TEMPLATES

        print("no matrix.yaml here or above: the matrix compat-matrix ships (`compat-matrix init` writes yours)",
              file=sys.stderr)
        return TEMPLATES / "known-models.yaml"


def cmd_list(args: argparse.Namespace) -> int:
    matrix = _matrix(args)
    print("releases:   " + ", ".join(matrix.transformers))
    print("strategies: " + ", ".join(matrix.strategy_names))
    print("probes:     " + ", ".join(matrix.probe_names))
    print("models:")
    for entry in matrix.models:
        profiles = ", ".join(entry.load_kwargs)
        print(f"  {entry.key:<20} {entry.modality:<11} {entry.source:<6} {entry.hub_id}  [load_kwargs: {profiles}]")
    per_release = matrix.count_cells()
    print(f"cells: {per_release} per release x {len(matrix.transformers)} releases = {per_release * len(matrix.transformers)}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    matrix = _matrix(args)
    requested = list(args.transformers or matrix.transformers)
    if any(is_specifier(r) for r in requested):
        releases = _releases(matrix, requested, args.pre)
    else:
        releases = requested
        unknown = [r for r in releases if r not in SPECIAL and r not in matrix.transformers]
        if unknown and not args.no_index_check:
            _releases(matrix, unknown)
    if args.with_main and "main" not in releases:
        releases.append("main")
    print(json.dumps({"include": [{"release": r, "env": env_name(r)} for r in releases]}))
    return 0


def _report(results: Path, out: Path, extra: list[str]) -> int:
    return cmd_report([str(results), "--out", str(out), *extra])


def cmd_run(args: argparse.Namespace) -> int:
    matrix = _matrix(args)
    cells = _cells(matrix, args)
    release_set = _release_set(matrix, args.transformers, args.pre)
    releases = list(release_set.releases)
    out: Path = args.out
    if args.round_trip_only and args.cross_release:
        raise UsageProblem("--round-trip-only runs no cross-release cells: drop one of it and --cross-release")
    if args.published_only and (args.round_trip_only or args.cross_release):
        raise UsageProblem("--published-only runs the as-published cells alone: drop --round-trip-only and --cross-release")
    _ready_to_run(out)
    with holding(results_folder(out.resolve())):  # another run on this folder finishes first (report included)
        (out / "release-set.json").write_text(json.dumps(release_set.to_json(), indent=1) + "\n", encoding="utf-8")
        return _run(matrix, cells, releases, args)


def _store(matrix: Matrix, args: argparse.Namespace) -> StoreUse | None:
    """The results store this run reads (unless --fresh) and adds to; None with --no-store."""
    from compat_matrix.run.runner import StoreUse
    from compat_matrix.run.store import Keys, Store, default_store

    if args.no_store:
        return None
    return StoreUse(Store(args.store or default_store()), Keys(matrix), fresh=args.fresh)


def _run(matrix: Matrix, cells: list[Cell], releases: list[str], args: argparse.Namespace) -> int:
    from compat_matrix.run.runner import run_release

    out: Path = args.out
    interrupted = False
    store = _store(matrix, args)
    for release in releases:
        own = [c for c in cells if _as_published(matrix, c, release)] if args.published_only else cells
        run = run_release(matrix, Path(args.matrix).resolve(), release, own, out.resolve(), args.workers,
                          resumed=args.resume, store=store)
        if run.interrupted:
            print(f"[{run.env}] interrupted: keeping the {len(run.lines)} cells that finished", file=sys.stderr)
            interrupted = True
            break
    if not interrupted and not args.round_trip_only:
        interrupted = _other_checkpoints(matrix, args, releases, out.resolve(), store)
    # judged against the matrix file this run used: the folder may also hold earlier runs' results
    extra = ["--expectations", str(args.matrix), "--release-set", str(out / "release-set.json")]
    extra += ["--fail-on-regression"] if args.fail_on_regression else []
    if args.baseline:
        extra += ["--baseline", str(args.baseline)]
    code = _report(results_folder(out), out, extra)
    print(f"report: {out / 'report.md'}, {out / 'index.html'}, {out / 'report.json'}", file=sys.stderr)
    return 130 if interrupted else code


def _as_published(matrix: Matrix, cell: Cell, release: str) -> bool:
    """Whether a release's own cell loads what users get from the hub (a hub or local entry, a tiny one
    in its `written_by` release), not a checkpoint the release saved itself."""
    return checkpoint_kind(matrix.model(cell.model), None, release) == AS_PUBLISHED


def _other_checkpoints(matrix: Matrix, args: argparse.Namespace, releases: list[str], out: Path,
                       store: StoreUse | None = None) -> bool:
    """Each release loads the as-published checkpoints (its models' `written_by` release wrote them,
    built first where the run does not test that release and a cell that reads them is not stored)
    and, with `--cross-release`, the tiny checkpoints every other release saved; True when interrupted."""
    from compat_matrix.run.published import build_writers, writers_to_build
    from compat_matrix.run.runner import installed_release, run_release, stored

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
    build_writers(matrix_file, writers, out, writer_cells=adapter_writers)
    for release, (cross, cells) in selections.items():
        if not cells:
            continue
        run = run_release(matrix, matrix_file, release, cells, out, args.workers, saved_by=cross,
                          resumed=getattr(args, "resume", False), published_in=installed[release] or release, store=store)
        if run.interrupted:
            return True
    return False


def _complete(path: Path, cells: list[Cell]) -> bool:
    from compat_matrix.spec.results_io import read_lines

    return {c.id for c in cells} <= {line.get("cell_id") for line in read_lines(path)}


def cmd_check(args: argparse.Namespace) -> int:
    matrix = _matrix(args)
    cells = _cells(matrix, args)
    if any(is_specifier(r) for r in (args.from_release, args.to_release)):
        raise UsageProblem("check compares two releases: give --from and --to as exact releases (e.g. 4.57.6), "
                           "not specifiers; `compat-matrix bisect` searches a range")
    releases = _releases(matrix, [args.from_release, args.to_release])
    _ready_to_run(args.out)
    with holding(results_folder(args.out.resolve())):  # another run on this folder finishes first
        return _check(matrix, cells, releases, args)


def _check(matrix: Matrix, cells: list[Cell], releases: list[str], args: argparse.Namespace) -> int:
    from compat_matrix.judge.expectations import read_expectations
    from compat_matrix.run.runner import run_release
    from reports.build import build_report
    from reports.check_view import format_by_cause
    from reports.diff import compare_releases, format_upgrade, upgrade_exit_code

    out: Path = args.out.resolve()
    store = _store(matrix, args)
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
    report = build_report([p for p in files if p.is_file()],
                          expectations=read_expectations(Path(args.matrix)))
    try:
        view = compare_releases(report, args.from_release, args.to_release)
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None
    print(format_upgrade(view) if args.cells else format_by_cause(view, everything=args.all))
    if args.drift:
        from compat_matrix.run.drift import adjacent, record_all
        from reports.drift import format_drift

        models = [m for m in dict.fromkeys(c.model for c in cells)]
        records = record_all(matrix, Path(args.matrix).resolve(), models, releases, out, reuse=args.reuse, store=store)
        print(format_drift(adjacent(records, models), releases[0], releases[1], everything=args.all or args.cells))
    return upgrade_exit_code(view)


def _drift_models(matrix: Matrix, models: list[str] | None) -> list[str]:
    keys = [m.key for m in matrix.models]
    unknown = sorted(set(models or ()) - set(keys))
    if unknown:
        raise UsageProblem(f"unknown model(s) {unknown}; known: {', '.join(keys)}")
    return [k for k in keys if not models or k in models]


def cmd_drift(args: argparse.Namespace) -> int:
    from compat_matrix.run.drift import adjacent, record_all
    from reports.drift import drift_table

    matrix = _matrix(args)
    models = _drift_models(matrix, args.models)
    releases = _releases(matrix, args.transformers)
    if len(releases) < 2:
        raise UsageProblem("drift compares releases: name at least two (--transformers A B ...)")
    out: Path = args.out.resolve()
    _require_tox()
    records = record_all(matrix, Path(args.matrix).resolve(), models, releases, out, reuse=args.reuse,
                         store=_store(matrix, args))
    comparisons = adjacent(records, models)
    table = drift_table(comparisons)
    (out / "drift" / "drift.md").write_text(table, encoding="utf-8")
    print("\n".join(c.describe() for c in comparisons))
    print(f"\ntable: {out / 'drift' / 'drift.md'}", file=sys.stderr)
    return 1 if args.fail_on_drift and any(c.status == "drift" for c in comparisons) else 0


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    """`name=package.module:function` arguments as {name: callable}."""
    pairs = {}
    for value in values or ():
        name, sep, target = value.partition("=")
        if not sep or not name or not target:
            raise UsageProblem(f"--{what} {value!r}: write NAME=package.module:function, e.g. my_loader=mypkg.models:load")
        pairs[name] = target
    return pairs


def cmd_init(args: argparse.Namespace) -> int:
    from compat_matrix.init import scaffold

    folder = Path(args.dir)
    matrix_text = scaffold.render_matrix(args.models or [], args.install or [], _pairs(args.strategy, "strategy"),
                                         _pairs(args.probe, "probe"))
    installed = args.package or scaffold.installed_from()
    if args.standalone:
        workflow = scaffold.render_standalone(installed)
    else:
        try:
            repository = args.workflow_repo or scaffold.source_repository()
        except RuntimeError as exc:
            raise UsageProblem(str(exc)) from None
        release = f"compat-matrix=={VERSION}"
        workflow = scaffold.render_caller(repository, f"v{VERSION}", None if installed == release else installed)
    files = {Path("matrix.yaml"): matrix_text, scaffold.WORKFLOW_PATH: workflow}
    try:
        written = scaffold.write_files(folder, files, args.force)
    except FileExistsError as exc:
        raise UsageProblem(f"{exc} already exist(s); pass --force to overwrite") from None
    for path in written:
        print(f"wrote {path}")
    try:
        load_matrix(folder / "matrix.yaml", check_model_types=False)
    except MatrixError as exc:  # a hub entry the hub could not pin: the user fills in the commit
        print(f"before the first run, fill in:\n{exc}", file=sys.stderr)
    print("next: compat-matrix validate && compat-matrix run --transformers 4.57.6 latest", file=sys.stderr)
    return 0


def cmd_report(argv: list[str]) -> int:
    from compat_matrix.judge.expectations import read_expectations
    from reports.cli import main as report_main

    return report_main(argv, read_expectations)


def _cross_axis(args: argparse.Namespace, matrix: Matrix) -> CrossAxis | None:
    """`--cross-release` with exactly one of `--saved-by` (walk the readers) or `--loaded-by` (walk the writers)."""
    from compat_matrix.bisect.run import CrossAxis

    fixed = {"--saved-by": args.saved_by, "--loaded-by": args.loaded_by}
    given = {name: value for name, value in fixed.items() if value}
    if not args.cross_release:
        if given:
            raise UsageProblem(f"{', '.join(given)} is for cross-release cells: add --cross-release")
        return None
    if len(given) != 1:
        raise UsageProblem("--cross-release walks one side of a checkpoint: give --saved-by S (which reading release "
                           "first differs on S's checkpoints) or --loaded-by L (from which writing release L differs), "
                           "not both, not neither")
    [(name, value)] = given.items()
    if not is_version(value):
        raise UsageProblem(f"{name} {value!r}: give an exact release such as 5.0.0")
    _releases(matrix, [value])
    return CrossAxis(saved_by=args.saved_by, loaded_by=args.loaded_by)


def cmd_bisect(args: argparse.Namespace) -> int:
    """First release where each selected cell takes B's outcome (see compat_matrix/bisect/search.py)."""
    from compat_matrix.bisect.record import proposals as proposals_for, record, snippet, unsplit
    from compat_matrix.bisect.run import bisect_cells, format_text, grouped, to_json
    from compat_matrix.envs.env_cache import EnvCacheError
    from compat_matrix.envs.release_sets import between

    matrix = _matrix(args)
    axis = _cross_axis(args, matrix)
    cells = _cells(matrix, args)
    if axis:
        # cross-release cells (tiny models; CROSS_RELEASE_PROBES), keyed without the writer, which bisect may walk
        fixed = axis.saved_by or axis.loaded_by or ""
        cells = [replace(c, saved_by=None) for c in select_cells(matrix, args.models, args.strategies, args.probes,
                                                                    saved_by=[fixed], profiles=args.profiles)]
        if not cells:
            raise UsageProblem("no cross-release cells in this selection: they exist for tiny models and the "
                               f"{', '.join(CROSS_RELEASE_PROBES)} probes only")
    for name, value in (("--good", args.good), ("--bad", args.bad)):
        if not is_version(value):
            raise UsageProblem(f"{name} {value!r}: give an exact release such as 4.57.6 (bisect walks the index between two)")
    _releases(matrix, [args.good, args.bad])
    try:
        span = between(args.good, args.bad, ReleaseIndex(), pre=args.pre)
        run_ = bisect_cells(matrix, Path(args.matrix).resolve(), cells,
                            span if Version(args.good) < Version(args.bad) else span[::-1], args.out.resolve() / "bisect",
                            args.workers, exhaustive=args.exhaustive, reuse=args.reuse, axis=axis, jobs=args.jobs)
    except (ReleaseSetError, EnvCacheError) as exc:
        raise UsageProblem(str(exc)) from None
    except KeyboardInterrupt:
        print("bisect interrupted: results so far are stored and reused next time", file=sys.stderr)
        return 130
    by_id = {c.id: c for c in cells}
    proposals = [p for g in grouped(run_.boundaries) for p in proposals_for(matrix, g, by_id, len(g[0].tested), axis)]
    if args.json:
        print(json.dumps(to_json(run_) | {"expectations": list(dict.fromkeys(snippet(p) for p in proposals))}, indent=1))
    else:
        print(format_text(run_))
    if args.record and proposals:
        original = Path(args.matrix).read_text(encoding="utf-8")
        changes = record(Path(args.matrix), proposals)
        try:
            load_matrix(args.matrix)
        except MatrixError as exc:
            Path(args.matrix).write_text(original, encoding="utf-8")
            raise UsageProblem(f"recording would make {args.matrix} invalid, left unchanged:\n{exc}") from None
        print("\n".join(f"recorded in {args.matrix}: {c}" for c in changes), file=sys.stderr)
    elif proposals and not args.json:
        print("Expectations to paste into matrix.yaml (or run with --record):\n")
        print("\n".join(dict.fromkeys(snippet(p) for p in proposals)))  # groups sharing an expectation: once
    for note in dict.fromkeys(n for g in grouped(run_.boundaries) for n in unsplit(matrix, g, by_id, axis)):
        print(f"not recorded: {note}", file=sys.stderr)
    return 0


def cmd_pins(args: argparse.Namespace) -> int:
    """The releases where every selected cell passes, as a specifier, from a report or results."""
    from compat_matrix.judge.pins import pin

    source: Path = args.source
    report = _source_report(args)
    wanted = {"model": args.models, "strategy": args.strategies, "probe": args.probes, "load_kwargs": args.profiles}
    chosen = [c for c in report.cells if c.as_published
              and all(not values or getattr(c, key) in values for key, values in wanted.items())]
    if not chosen:
        raise UsageProblem(f"{'the results store' if args.from_store else source}: no cell matches the selection")
    outcomes: dict[str, bool] = {}
    for cell in chosen:
        if cell.status != "skipped":
            outcomes[cell.transformers] = outcomes.get(cell.transformers, True) and cell.status == "pass"
    try:
        index = list(ReleaseIndex().answer("the untested releases between tested ones").versions)
    except ReleaseSetError:
        index = None
    found = pin({r: ok for r, ok in outcomes.items() if is_version(r)}, index)
    if found is None:
        print(f"no tested release passes every selected cell ({len(chosen)} cells; tested: {', '.join(sorted(outcomes))})")
        return 1
    print(f"transformers{found.specifier}")
    print(f"  passes in: {', '.join(found.passing)}")
    if found.failing:
        print(f"  fails in:  {', '.join(found.failing)}")
    for gap in found.gaps:
        print(f"  {gap}")
    return 0


def _source_report(args: argparse.Namespace) -> Report:
    """The report `pins` and `history` read: `source`, or with --from-store every release the store holds."""
    if not args.from_store:
        return _report_of(args.source, args.matrix if args.func is cmd_history else None)
    from compat_matrix.run.store import Keys, Store, default_store
    from compat_matrix.run.store_report import write_store_results
    from reports.cli import read_release_set

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        if not write_store_results(Store(args.store or default_store()), Keys(_matrix(args)), out):
            raise UsageProblem("the results store has no cell this checkout can reuse; `compat-matrix run` fills it")
        report = _report_of(results_folder(out), args.matrix)
        return report.model_copy(update={"release_set": read_release_set(out / "release-set.json")})


def _report_of(source: Path, matrix_file: str | None = None) -> Report:
    """A report.json, or the report of a results folder (judged against `matrix_file`'s expectations, given one)."""
    from compat_matrix.judge.expectations import read_expectations
    from reports.build import build_report
    from reports.report import Report

    if not source.exists():
        raise UsageProblem(f"{source}: no such report.json or results folder; run `compat-matrix run` first")
    try:
        if source.suffix == ".json":
            return Report.read(source)
        return build_report([source], expectations=read_expectations(Path(matrix_file)) if matrix_file else None)
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None


def cmd_history(args: argparse.Namespace) -> int:
    """Each route's timeline over the report's releases, and the expectation ranges the data contradicts."""
    from compat_matrix.bisect.record import record
    from compat_matrix.judge.history_check import check_expectations
    from reports.history import history_markdown

    matrix = _matrix(args)
    report = _source_report(args)
    print("\n".join(history_markdown(report, min_releases=2)))
    wrong = check_expectations(matrix, report)
    print(f"\nExpectation ranges the history contradicts: {len(wrong)}")
    print("\n".join(d.describe() for d in wrong))
    proposals = [p for d in wrong if (p := d.proposal()) is not None]
    if args.record and proposals:
        original = Path(args.matrix).read_text(encoding="utf-8")
        changes = record(Path(args.matrix), proposals)
        try:
            load_matrix(args.matrix)
        except MatrixError as exc:
            Path(args.matrix).write_text(original, encoding="utf-8")
            raise UsageProblem(f"recording would make {args.matrix} invalid, left unchanged:\n{exc}") from None
        print("\n".join(f"recorded in {args.matrix}: {c}" for c in changes), file=sys.stderr)
    return 1 if wrong and not args.record else 0


def cmd_envs(args: argparse.Namespace) -> int:
    from compat_matrix.envs.env_cache import EnvCacheError, cap_bytes, describe, list_envs, prune

    try:
        cap = cap_bytes(args.max_gb)
    except EnvCacheError as exc:
        raise UsageProblem(str(exc)) from None
    if args.action == "prune":
        removed = prune(0 if args.all else cap)
        print("\n".join(f"removed {e.name} ({e.size / 1024**3:.2f} GB)" for e in removed) or "nothing to remove")
    print(describe(list_envs()) + f" (cap {cap / 1024**3:.1f} GB)")
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    from compat_matrix.run.store import Keys, Store, default_store, prune, summary

    store = Store(args.store or default_store())
    if args.report:
        return _store_report(store, Keys(_matrix(args)), args)
    if args.prune:
        before = store.size_bytes()
        for done in prune(store, Keys(_matrix(args))):
            if done.dropped or done.other_models:
                other = f", {done.other_models} of models this matrix.yaml does not list kept" if done.other_models else ""
                print(f"pruned {done.path}: dropped {done.dropped}, kept {done.kept}{other}")
        print(f"pruned {(before - store.size_bytes()) / 1024**2:.1f} MiB")
    summary(store, sys.stdout)
    return 0


def _store_report(store: Store, keys: Keys, args: argparse.Namespace) -> int:
    """The report (History section included) of every release the store holds, as a run's --out."""
    from compat_matrix.run.store_report import write_store_results

    out: Path = args.report
    results_folder(out).mkdir(parents=True, exist_ok=True)
    with holding(results_folder(out.resolve())):
        shutil.rmtree(results_folder(out), ignore_errors=True)  # only the store's lines: an earlier run's would mix in
        releases = write_store_results(store, keys, out)
        if not releases:
            raise UsageProblem(f"{store.root}: no stored cell this checkout can reuse; `compat-matrix run` fills the store")
        print(f"{len(releases)} stored releases: {', '.join(releases)}", file=sys.stderr)
        extra = ["--expectations", str(args.matrix), "--release-set", str(out / "release-set.json")]
        code = _report(results_folder(out), out, extra + (["--support-table"] if args.support_table else []))
    print(f"report: {out / 'report.md'}, {out / 'index.html'}, {out / 'report.json'}; "
          f"`compat-matrix pins {out / 'report.json'}` and `compat-matrix history {out / 'report.json'}` read it", file=sys.stderr)
    return code


def cmd_prefetch(args: argparse.Namespace) -> int:
    from compat_matrix.run.prefetch import Patience, prefetch

    matrix = _matrix(args)
    keys = set(args.models or [m.key for m in matrix.models])
    unknown = keys - {m.key for m in matrix.models}
    if unknown:
        raise UsageProblem(f"unknown model(s) {sorted(unknown)}; known: {', '.join(m.key for m in matrix.models)}")
    patience = Patience(timeout_s=args.timeout, tries=args.tries, wait_s=args.retry_wait)
    return prefetch([m for m in matrix.models if m.key in keys], patience)


def _split(values: list[str] | None) -> list[str] | None:
    """Accept both `--models a b` and `--models a,b`; a specifier's commas (`>=5.0,<5.6`) are its own."""
    if not values:
        return None
    return [v for value in values for v in ([value] if is_specifier(value) else value.split(",")) if v]


def cmd_repro(args: argparse.Namespace) -> int:
    from compat_matrix.repro.command import ReproProblem, cmd_repro as repro
    from compat_matrix.repro.script import NoTemplate

    try:
        return repro(args, _matrix(args))
    except (ReproProblem, NoTemplate) as exc:
        raise UsageProblem(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="compat-matrix", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=generator())
    parser.add_argument("--matrix", help="matrix file (default: matrix.yaml in the current folder or the nearest above)")
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser("validate", help="check matrix.yaml; exit 0, or 2 with every problem")
    validate.add_argument("path", nargs="?", help="matrix file (default: --matrix)")
    validate.set_defaults(func=cmd_validate)

    sub.add_parser("list", help="releases, models, strategies, probes and the number of cells").set_defaults(func=cmd_list)

    plan = sub.add_parser("plan", help="the per-release job matrix as JSON (for GitHub Actions)")
    plan.add_argument("--transformers", nargs="+", help="releases or PEP 440 specifiers (default: matrix.yaml's)")
    plan.add_argument("--with-main", action="store_true", help="add transformers' git main (the nightly can reach it)")
    plan.add_argument("--no-index-check", action="store_true", help="do not look releases up on the package index")
    plan.add_argument("--pre", action="store_true", help="specifiers also match pre-releases")
    plan.set_defaults(func=cmd_plan)

    def selection(p: argparse.ArgumentParser) -> None:
        p.add_argument("--models", nargs="+", help="model keys (default: all)")
        p.add_argument("--strategies", nargs="+", help="strategies (default: matrix.yaml's)")
        p.add_argument("--probes", nargs="+", help="probes (default: matrix.yaml's)")
        p.add_argument("--profiles", nargs="+", help="load_kwargs profiles (default: every profile of each model)")
        p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: compat-report)")
        p.add_argument("-n", "--workers", type=_positive, default=2, help="pytest-xdist workers per release (default: 2)")

    def storage(p: argparse.ArgumentParser) -> None:
        p.add_argument("--store", type=Path, help="results store folder (default: COMPAT_MATRIX_STORE, else "
                                                  "~/.cache/compat-matrix/store; docs/history.md)")
        p.add_argument("--fresh", action="store_true", help="run every cell, reusing nothing stored (what runs is stored)")
        p.add_argument("--no-store", action="store_true", help="neither read nor add to the results store")

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

    drift = sub.add_parser("drift", help="what releases compute differently on the same as-published checkpoints, "
                                         "and the first module where it differs")
    drift.add_argument("--transformers", nargs="+", help="releases, compared each with the next (default: matrix.yaml's)")
    drift.add_argument("--models", nargs="+", help="model keys (default: all)")
    drift.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder; records in <out>/drift/")
    drift.add_argument("--no-reuse", dest="reuse", action="store_false", help="re-record even when records exist")
    drift.add_argument("--fail-on-drift", action="store_true", help="exit 1 when two adjacent releases drift")
    storage(drift)
    drift.set_defaults(func=cmd_drift)

    bisect = sub.add_parser("bisect", help="the first release where each selected cell changes, between two releases")
    bisect.add_argument("--good", required=True, help="release A (its outcome is the 'good' one; may be the newer)")
    bisect.add_argument("--bad", required=True, help="release B: find the first release that does what B does")
    selection(bisect)
    bisect.add_argument("--cross-release", action="store_true",
                        help="cross-release cells (a checkpoint one release saved, another loads): with --saved-by or "
                             "--loaded-by, --good/--bad span the other side")
    bisect.add_argument("--saved-by", metavar="S",
                        help="with --cross-release: the checkpoints S saved; find the first reading release that differs")
    bisect.add_argument("--loaded-by", metavar="L",
                        help="with --cross-release: L reads; find the first writing release whose checkpoint L reads differently")
    bisect.add_argument("-j", "--jobs", type=_positive, default=2,
                        help="releases tested at once (default 2: a step is mostly one process importing torch; "
                             "two use two cores); 1 tests one after another")
    bisect.add_argument("--exhaustive", action="store_true", help="test every release in the range, list every change")
    bisect.add_argument("--pre", action="store_true", help="pre-releases between A and B too")
    bisect.add_argument("--json", action="store_true", help="the result as JSON on stdout")
    bisect.add_argument("--record", action="store_true",
                        help="write the exact ranges into matrix.yaml (comments and layout kept); else print the YAML")
    bisect.add_argument("--no-reuse", dest="reuse", action="store_false", help="re-run releases with stored results")
    bisect.set_defaults(func=cmd_bisect)

    pins = sub.add_parser("pins", help="the transformers specifier where every selected cell passes, from a report")
    pins.add_argument("source", nargs="?", type=Path, default=DEFAULT_OUT / "report.json",
                      help="report.json or a results folder (default: compat-report/report.json)")
    pins.add_argument("--models", nargs="+", help="model keys (default: all)")
    pins.add_argument("--strategies", nargs="+", help="strategies (default: all)")
    pins.add_argument("--probes", nargs="+", help="probes (default: all)")
    pins.add_argument("--profiles", nargs="+", help="load_kwargs profiles (default: all)")
    pins.add_argument("--from-store", action="store_true",
                      help="read every release the results store holds (what a run of this checkout would reuse), "
                           "not a report")
    pins.add_argument("--store", type=Path, help="with --from-store: the store folder (default: COMPAT_MATRIX_STORE, "
                                                 "else ~/.cache/compat-matrix/store)")
    pins.set_defaults(func=cmd_pins)

    history = sub.add_parser("history", help="each route's timeline over a report's releases, and the matrix.yaml "
                                             "expectation ranges the data contradicts (--record corrects them)")
    history.add_argument("source", nargs="?", type=Path, default=DEFAULT_OUT / "report.json",
                         help="report.json or a results folder (default: compat-report/report.json)")
    history.add_argument("--record", action="store_true", help="write the ranges the data gives into matrix.yaml")
    history.add_argument("--from-store", action="store_true",
                      help="read every release the results store holds (what a run of this checkout would reuse), "
                           "not a report")
    history.add_argument("--store", type=Path, help="with --from-store: the store folder (default: COMPAT_MATRIX_STORE, "
                                                 "else ~/.cache/compat-matrix/store)")
    history.set_defaults(func=cmd_history)

    envs = sub.add_parser("envs", help="bisect's cached release environments: list, or prune to the size cap")
    envs.add_argument("action", nargs="?", choices=("list", "prune"), default="list")
    envs.add_argument("--max-gb", help="size cap in GB (default: COMPAT_MATRIX_ENV_CACHE_GB, else 5)")
    envs.add_argument("--all", action="store_true", help="with prune: remove every cached environment")
    envs.set_defaults(func=cmd_envs)

    init = sub.add_parser("init", help="write a commented matrix.yaml and .github/workflows/compat-matrix.yml here (or in DIR)")
    init.add_argument("dir", nargs="?", default=".", help="the repository to set up (default: the current folder)")
    init.add_argument("--models", nargs="+", help="hub ids to test (default: every model type the tool has a tiny recipe for)")
    init.add_argument("--install", nargs="+", help="requirements every release environment installs, e.g. '-e .' trl")
    init.add_argument("--strategy", action="append", help="a loader of your own: NAME=package.module:function (repeatable)")
    init.add_argument("--probe", action="append", help="a probe of your own: NAME=package.module:function (repeatable)")
    init.add_argument("--package", help="what the workflow pip-installs compat-matrix from (default: where this one came from)")
    init.add_argument("--standalone", action="store_true",
                      help="write the whole pipeline into the workflow (no call to compat-matrix's reusable workflow, "
                           "none of its fixes either)")
    init.add_argument("--workflow-repo", metavar="OWNER/NAME",
                      help="where the reusable workflow lives (default: the installed package's Source URL)")
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    init.set_defaults(func=cmd_init)

    store = sub.add_parser("store", help="what the results store holds: cells and drift records per release, size")
    store.add_argument("--store", type=Path, help="store folder (default: COMPAT_MATRIX_STORE, else ~/.cache/compat-matrix/store)")
    store.add_argument("--report", type=Path, metavar="OUT",
                       help="build the report of every stored release into OUT (report.md with its History, index.html, "
                            "report.json for `pins` and `history`), from the cells a run of this checkout would reuse")
    store.add_argument("--support-table", action="store_true", help="with --report: also OUT/support.md")
    store.add_argument("--prune", action="store_true",
                       help="drop the entries no run of this checkout can reuse: cells of other harness code, recipes or "
                            "settings, drift records of other drift code, entries stored again later (models this "
                            "matrix.yaml does not list are kept)")
    store.set_defaults(func=cmd_store)

    prefetch = sub.add_parser("prefetch", help="download `source: hub` checkpoints (needs the network)")
    prefetch.add_argument("--models", nargs="+", help="model keys (default: every hub entry)")
    prefetch.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for one hub answer (default: 10)")
    prefetch.add_argument("--tries", type=_positive, default=3, help="tries when the hub is busy (429, 5xx) or slow (default: 3)")
    prefetch.add_argument("--retry-wait", type=float, default=2.0,
                          help="seconds before the second try, doubling after (default: 2)")
    prefetch.set_defaults(func=cmd_prefetch)

    repro = sub.add_parser("repro", help="a self-contained script that reproduces one cell (or each cause of a report), "
                                         "and with --verify, proof that it does")
    repro.add_argument("cell", nargs="?", help="cell id as in report.json: model-strategy-profile-probe[@writer]")
    repro.add_argument("--release", help="the transformers release the cell fails in")
    repro.add_argument("--good", help="a release where it passes: --verify runs the script there too")
    repro.add_argument("--out", help="the script (default repro-<cell>-<release>.py); with --causes, a folder")
    repro.add_argument("--report", type=Path, help="report.json of a run that has the cell (else --verify runs the cell)")
    repro.add_argument("--causes", type=Path, help="report.json: one script per cause of its failures, into --out")
    repro.add_argument("--kinds", nargs="+", choices=["regression", "expected"], default=["regression", "expected"],
                       help="with --causes: which causes (default: both)")
    repro.add_argument("--verify", action="store_true",
                       help="run the script in the release's environment (and --good's); exit 1 unless it reproduces")
    repro.set_defaults(func=cmd_repro)

    sub.add_parser("report", help="merge results and render report.json/.md/index.html/JUnit (see `report -h`)",
                   add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["report"]:  # the report takes results files, not the matrix: its own parser
        return cmd_report(argv[1:])
    args = parser.parse_args(argv)
    for name in ("models", "strategies", "probes", "transformers", "profiles"):
        if hasattr(args, name):
            setattr(args, name, _split(getattr(args, name)))
    try:
        if args.matrix is None and args.func is cmd_list:
            args.matrix = str(_matrix_or_the_packaged_one(Path.cwd()))
        elif args.matrix is None and args.func is not cmd_init:
            args.matrix = str(find_matrix(Path.cwd()))
        return args.func(args)
    except MatrixError as exc:
        print(f"invalid matrix:\n{exc}", file=sys.stderr)
        return 2
    except UsageProblem as exc:
        print(f"compat-matrix: {exc}", file=sys.stderr)
        return 2
    except ResultsNotWritten as exc:
        print(f"compat-matrix: error: {exc.strerror}; free space, then `compat-matrix run --resume` continues",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
