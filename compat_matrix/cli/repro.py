"""`repro`: a self-contained script per failing cell, verified in its release."""

from __future__ import annotations

import argparse
from pathlib import Path

from compat_matrix.cli.common import UsageProblem, matrix_of


def cmd_repro(args: argparse.Namespace) -> int:
    from compat_matrix.repro.command import ReproProblem, cmd_repro as repro
    from compat_matrix.repro.script import NoTemplate

    try:
        return repro(args, matrix_of(args))
    except (ReproProblem, NoTemplate) as exc:
        raise UsageProblem(str(exc)) from None


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
