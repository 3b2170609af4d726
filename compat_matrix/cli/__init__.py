"""`compat-matrix`: validate, list, plan, run, check, drift, history, report, store, prefetch.

One module per group of commands (each adds its parsers), put together here. Exit codes: 0 ok;
1 regressions or breaking changes found (where asked for); 2 bad input; 3 results could not be
written (disk full: the lines written before stay valid, `run --resume` continues from them);
130 interrupted (what finished is kept and reported).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from compat_matrix.cli import bisect, drift, envs, init, matrix, repro, results, run
from compat_matrix.cli.common import UsageProblem, find_matrix, split
from compat_matrix.spec.results_io import ResultsNotWritten
from compat_matrix.spec.validate import MatrixError
from reports.version import generator

GROUPS = (matrix, run, drift, bisect, results, envs, init, repro)
"""The command modules, in the order `--help` lists their commands."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="compat-matrix", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=generator())
    parser.add_argument("--matrix", help="matrix file (default: matrix.yaml in the current folder or the nearest above)")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["report"]:  # the report takes results files, not the matrix: its own parser
        return results.cmd_report(argv[1:])
    args = parser.parse_args(argv)
    for name in ("models", "strategies", "probes", "transformers", "profiles"):
        if hasattr(args, name):
            setattr(args, name, split(getattr(args, name)))
    try:
        if args.matrix is None and args.func is matrix.cmd_list:
            args.matrix = str(matrix.matrix_or_the_packaged_one(Path.cwd()))
        elif args.matrix is None and args.func is not init.cmd_init:
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
