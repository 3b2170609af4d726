"""Build the tiny checkpoints of the models whose `written_by` is the installed release: the
as-published checkpoints every other release's as-published cells load.

`compat-matrix run` calls it, through tox, in a `written_by` release the run does not test itself:
`python -m compat_tests.build_published --matrix matrix.yaml --models qwen2_vl,llava`. A model this
release cannot build leaves the builder's note (unsupported / skipped, with the reason) that the
readers' cells then report.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from compat_tests.outcomes import CellSkipped, CellUnsupported, HarnessError
from compat_tests.sources import resolve


def main(argv: Sequence[str] | None = None) -> int:
    from compat_matrix.validate import load_matrix

    parser = argparse.ArgumentParser(prog="python -m compat_tests.build_published", description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", required=True)
    parser.add_argument("--models", required=True, help="comma-separated model keys")
    args = parser.parse_args(argv)
    matrix = load_matrix(args.matrix, check_model_types=False)
    failed = 0
    for key in filter(None, args.models.split(",")):
        try:
            checkpoint = resolve(matrix.model(key))
            print(f"{key}: built {checkpoint.path}", file=sys.stderr)
        except (CellSkipped, CellUnsupported) as exc:
            print(f"{key}: not built ({type(exc).__name__}): {exc}", file=sys.stderr)
        except HarnessError as exc:
            failed += 1
            print(f"{key}: build failed: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
