"""What the commands share: the matrix and the chosen cells, release sets, the checks before a run,
the selection and store options."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from compat_matrix.envs.release_sets import (ReleaseIndex, ReleaseSetError, ResolvedSet, is_version, print_resolved,
                                             span, resolve)
from compat_matrix.envs.releases import SPECIAL, UnknownRelease, check_releases
from compat_matrix.spec.cells import Cell, select_cells
from compat_matrix.spec.layout import results_folder
from compat_matrix.spec.schema import Matrix, is_specifier
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix

if TYPE_CHECKING:
    from compat_matrix.run.runner import StoreUse

DEFAULT_OUT = Path("compat-report")


class UsageProblem(Exception):
    """Wrong arguments: the message lists what exists."""


def matrix_of(args: argparse.Namespace, check_model_types: bool = False) -> Matrix:
    """The matrix; model types are checked by `validate` (and in each release's env), not on every command."""
    return load_matrix(args.matrix, check_model_types=check_model_types)


def cells_of(matrix: Matrix, args: argparse.Namespace) -> list[Cell]:
    try:
        return select_cells(matrix, args.models, args.strategies, args.probes, profiles=args.profiles)
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None


def require_tox() -> None:
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


def ready_to_run(out: Path) -> None:
    """Refuse a run that could not keep its results: no tox, bad environment variables, an unwritable --out."""
    from compat_matrix.run.env_vars import environment_problems

    require_tox()
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


def positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} workers: at least 1")
    return number


def release_set_of(matrix: Matrix, requested: list[str] | None, pre: bool = False,
                   reported: tuple[str, ...] = ()) -> ResolvedSet:
    """`--transformers` or matrix.yaml's list, specifiers expanded, exact releases checked on the index.

    The index is asked at most once (and not at all for `latest`/`main`-only lists); what a
    specifier expanded to is printed before anything runs. `index_releases` spans `reported` too: the
    releases whose results the run's folder already holds, which its report shows beside the run's."""
    index = ReleaseIndex()
    try:
        resolved = resolve(list(requested or matrix.transformers), index, pre=pre)
        exact = [r for r in resolved.releases if r not in SPECIAL]
        versions = tuple(r for r in exact if is_version(r))
        if versions:
            answer = index.answer(f"the releases {', '.join(versions)}", must_have=versions)
            check_releases(exact, answer.versions)
            resolved = replace(resolved, index_releases=span(answer.versions, versions + reported, pre))
        else:
            check_releases(exact)
    except (ReleaseSetError, UnknownRelease) as exc:
        raise UsageProblem(str(exc)) from None
    print_resolved(resolved)
    return resolved


def releases_of(matrix: Matrix, requested: list[str] | None, pre: bool = False) -> list[str]:
    return list(release_set_of(matrix, requested, pre).releases)


def split(values: list[str] | None) -> list[str] | None:
    """Accept both `--models a b` and `--models a,b`; a specifier's commas (`>=5.0,<5.6`) are its own."""
    if not values:
        return None
    return [v for value in values for v in ([value] if is_specifier(value) else value.split(",")) if v]


def store_use(matrix: Matrix, args: argparse.Namespace) -> StoreUse | None:
    """The results store this run reads (unless --fresh) and adds to; None with --no-store."""
    from compat_matrix.run.runner import StoreUse
    from compat_matrix.run.store import Keys, Store, default_store

    if args.no_store:
        return None
    return StoreUse(Store(args.store or default_store()), Keys(matrix), fresh=args.fresh)


def selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", nargs="+", help="model keys (default: all)")
    p.add_argument("--strategies", nargs="+", help="strategies (default: matrix.yaml's)")
    p.add_argument("--probes", nargs="+", help="probes (default: matrix.yaml's)")
    p.add_argument("--profiles", nargs="+", help="load_kwargs profiles (default: every profile of each model)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: compat-report)")
    p.add_argument("-n", "--workers", type=positive, default=2, help="pytest-xdist workers per release (default: 2)")


def storage(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=Path, help="results store folder (default: COMPAT_MATRIX_STORE, else "
                                              "~/.cache/compat-matrix/store; docs/history.md)")
    p.add_argument("--fresh", action="store_true", help="run every cell, reusing nothing stored (what runs is stored)")
    p.add_argument("--no-store", action="store_true", help="neither read nor add to the results store")
