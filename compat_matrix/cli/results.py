"""`report`, `pins`, `history`, `store`: reading results, a report or the results store."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from compat_matrix.cli.common import DEFAULT_OUT, UsageProblem, matrix_of
from compat_matrix.envs.release_sets import ReleaseIndex, ReleaseSetError, is_version
from compat_matrix.spec.layout import results_folder
from compat_matrix.spec.results_io import holding
from compat_matrix.spec.validate import MatrixError, load_matrix

if TYPE_CHECKING:
    from compat_matrix.run.store import Keys, Store
    from reports.report import Report, ReleaseSet


def cmd_report(argv: list[str]) -> int:
    from compat_matrix.judge.expectations import read_expectations
    from reports.cli import main as report_main

    return report_main(argv, read_expectations)


def report_into(results: Path, out: Path, extra: list[str]) -> int:
    return cmd_report([str(results), "--out", str(out), *extra])


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
        if not write_store_results(Store(args.store or default_store()), Keys(matrix_of(args)), out):
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
        report = build_report([source], expectations=read_expectations(Path(matrix_file)) if matrix_file else None)
        chosen = _release_set_beside(source)
        return report.model_copy(update={"release_set": chosen}) if chosen else report
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None


def _release_set_beside(source: Path) -> ReleaseSet | None:
    """The release-set.json of the run whose results folder (or --out) `source` is, as its own report
    reads it: without it the history calls no boundary exact (it did, for a run's results folder)."""
    from reports.cli import read_release_set

    for folder in (source, source.parent):
        if (folder / "release-set.json").is_file():
            return read_release_set(folder / "release-set.json")
    return None


def cmd_history(args: argparse.Namespace) -> int:
    """Each route's timeline over the report's releases, and the expectation ranges the data contradicts."""
    from compat_matrix.bisect.record import record
    from compat_matrix.judge.history_check import check_expectations
    from reports.history import history_markdown

    matrix = matrix_of(args)
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


def cmd_store(args: argparse.Namespace) -> int:
    from compat_matrix.run.store import Keys, Store, default_store, prune, summary

    store = Store(args.store or default_store())
    if args.report:
        return _store_report(store, Keys(matrix_of(args)), args)
    if args.prune:
        before = store.size_bytes()
        for done in prune(store, Keys(matrix_of(args))):
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
        code = report_into(results_folder(out), out, extra + (["--support-table"] if args.support_table else []))
    print(f"report: {out / 'report.md'}, {out / 'index.html'}, {out / 'report.json'}; "
          f"`compat-matrix pins {out / 'report.json'}` and `compat-matrix history {out / 'report.json'}` read it", file=sys.stderr)
    return code


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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

    sub.add_parser("report", help="merge results and render report.json/.md/index.html/JUnit (see `report -h`)",
                   add_help=False)
