"""`init`: a matrix.yaml and a workflow for another repository."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from compat_matrix.cli.common import UsageProblem
from compat_matrix.spec.validate import MatrixError, load_matrix
from reports.version import VERSION


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


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
