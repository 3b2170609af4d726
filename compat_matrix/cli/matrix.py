"""`validate`, `list`, `plan`: the matrix file, what it selects, and the nightly's job matrix."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from compat_matrix.cli.common import UsageProblem, find_matrix, matrix_of, releases_of
from compat_matrix.envs.releases import SPECIAL, env_name
from compat_matrix.spec.schema import is_specifier
from compat_matrix.spec.validate import load_matrix


def cmd_validate(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.path or args.matrix, check_model_types=True, check_files=True)
    print(f"{args.path or args.matrix}: valid ({len(matrix.models)} models, {len(matrix.transformers)} releases, "
          f"{matrix.count_cells()} cells per release)")
    return 0


def matrix_or_the_packaged_one(cwd: Path) -> Path:
    """`list` where there is no matrix.yaml yet: the matrix compat-matrix ships (what `init` starts from)."""
    try:
        return find_matrix(cwd)
    except UsageProblem:
        from compat_matrix.init.scaffold import TEMPLATES

        print("no matrix.yaml here or above: the matrix compat-matrix ships (`compat-matrix init` writes yours)",
              file=sys.stderr)
        return TEMPLATES / "known-models.yaml"


def cmd_list(args: argparse.Namespace) -> int:
    matrix = matrix_of(args)
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
    matrix = matrix_of(args)
    requested = list(args.transformers or matrix.transformers)
    if any(is_specifier(r) for r in requested):
        releases = releases_of(matrix, requested, args.pre)
    else:
        releases = requested
        unknown = [r for r in releases if r not in SPECIAL and r not in matrix.transformers]
        if unknown and not args.no_index_check:
            releases_of(matrix, unknown)
    if args.with_main and "main" not in releases:
        releases.append("main")
    print(json.dumps({"include": [{"release": r, "env": env_name(r)} for r in releases]}))
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
