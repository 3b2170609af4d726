"""`drift`: what releases compute differently on the same as-published checkpoints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from compat_matrix.cli.common import DEFAULT_OUT, UsageProblem, matrix_of, releases_of, require_tox, storage, store_use
from compat_matrix.spec.schema import Matrix


def _drift_models(matrix: Matrix, models: list[str] | None) -> list[str]:
    keys = [m.key for m in matrix.models]
    unknown = sorted(set(models or ()) - set(keys))
    if unknown:
        raise UsageProblem(f"unknown model(s) {unknown}; known: {', '.join(keys)}")
    return [k for k in keys if not models or k in models]


def cmd_drift(args: argparse.Namespace) -> int:
    from compat_matrix.run.drift import adjacent, record_all
    from reports.drift import drift_table

    matrix = matrix_of(args)
    models = _drift_models(matrix, args.models)
    releases = releases_of(matrix, args.transformers)
    if len(releases) < 2:
        raise UsageProblem("drift compares releases: name at least two (--transformers A B ...)")
    out: Path = args.out.resolve()
    require_tox()
    records = record_all(matrix, Path(args.matrix).resolve(), models, releases, out, reuse=args.reuse,
                         store=store_use(matrix, args))
    comparisons = adjacent(records, models)
    table = drift_table(comparisons)
    (out / "drift" / "drift.md").write_text(table, encoding="utf-8")
    print("\n".join(c.describe() for c in comparisons))
    print(f"\ntable: {out / 'drift' / 'drift.md'}", file=sys.stderr)
    return 1 if args.fail_on_drift and any(c.status == "drift" for c in comparisons) else 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    drift = sub.add_parser("drift", help="what releases compute differently on the same as-published checkpoints, "
                                         "and the first module where it differs")
    drift.add_argument("--transformers", nargs="+", help="releases, compared each with the next (default: matrix.yaml's)")
    drift.add_argument("--models", nargs="+", help="model keys (default: all)")
    drift.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder; records in <out>/drift/")
    drift.add_argument("--no-reuse", dest="reuse", action="store_false", help="re-record even when records exist")
    drift.add_argument("--fail-on-drift", action="store_true", help="exit 1 when two adjacent releases drift")
    storage(drift)
    drift.set_defaults(func=cmd_drift)
