"""`bisect`: the first release where each selected cell changes, between two releases."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.version import Version

from compat_matrix.cli.common import UsageProblem, cells_of, matrix_of, positive, releases_of, selection
from compat_matrix.envs.release_sets import ReleaseIndex, ReleaseSetError, is_version, span
from compat_matrix.spec.cells import CROSS_RELEASE_PROBES, select_cells
from compat_matrix.spec.schema import Matrix
from compat_matrix.spec.validate import MatrixError, load_matrix

if TYPE_CHECKING:
    from compat_matrix.bisect.run import CrossAxis


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
    releases_of(matrix, [value])
    return CrossAxis(saved_by=args.saved_by, loaded_by=args.loaded_by)


def cmd_bisect(args: argparse.Namespace) -> int:
    """First release where each selected cell takes B's outcome (see compat_matrix/bisect/search.py)."""
    from compat_matrix.bisect.record import proposals as proposals_for, record, snippet, unsplit
    from compat_matrix.bisect.run import bisect_cells, format_text, grouped, to_json
    from compat_matrix.envs.env_cache import EnvCacheError
    from compat_matrix.envs.release_sets import between

    matrix = matrix_of(args)
    axis = _cross_axis(args, matrix)
    cells = cells_of(matrix, args)
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
    releases_of(matrix, [args.good, args.bad])
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


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    bisect.add_argument("-j", "--jobs", type=positive, default=2,
                        help="releases tested at once (default 2: a step is mostly one process importing torch; "
                             "two use two cores); 1 tests one after another")
    bisect.add_argument("--exhaustive", action="store_true", help="test every release in the range, list every change")
    bisect.add_argument("--pre", action="store_true", help="pre-releases between A and B too")
    bisect.add_argument("--json", action="store_true", help="the result as JSON on stdout")
    bisect.add_argument("--record", action="store_true",
                        help="write the exact ranges into matrix.yaml (comments and layout kept); else print the YAML")
    bisect.add_argument("--no-reuse", dest="reuse", action="store_false", help="re-run releases with stored results")
    bisect.set_defaults(func=cmd_bisect)
