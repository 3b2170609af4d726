"""Build the tiny checkpoints of the models whose `written_by` is the installed release: the
as-published checkpoints every other release's as-published cells load; then run the given
same-release cells (`--cells`, the adapter_roundtrip ones: they save the adapters those cells read).

`compat-matrix run` calls it, through tox, in a `written_by` release the run does not test itself:
`python -m compat_tests.build_published --matrix matrix.yaml --models qwen2_vl,llava`. A model this
release cannot build leaves the builder's note (unsupported / skipped, with the reason) that the
readers' cells then report; an adapter it cannot save leaves the writer's note the same way.
With `--outputs FILE`, it writes there, per model, the files the readers' cells will look for and
whether its build and writer cells finished without `error` (`compat_matrix/run/builds.py` stores
those builds, so a later run does not start this release again for them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from compat_matrix.spec.schema import ModelEntry
from compat_tests.outcomes import CellSkipped, CellUnsupported, HarnessError
from compat_tests.sources import resolve


def _leave_note(entry: ModelEntry, reason: str) -> None:
    """The builder's note for a build that broke, so the readers' cells say why (`skipped`: the
    writer's failure, not theirs) instead of that the checkpoint was never built."""
    import json

    import transformers

    from compat_tests.tiny.checkpoint import cache_root, not_built_note, recipe_hash, tiny_folder

    assert entry.recipe is not None
    folder = tiny_folder(cache_root(), transformers.__version__, entry.key, recipe_hash(entry.recipe, entry.modality))
    folder.parent.mkdir(parents=True, exist_ok=True)
    not_built_note(folder).write_text(json.dumps({"status": "skipped", "reason": reason}))


def checkpoint_output(entry: ModelEntry) -> dict[str, str] | None:
    """The tiny checkpoint folder of `entry` in this release, or its note; None when neither is there."""
    import transformers

    from compat_tests.tiny.checkpoint import REFERENCE_JSON, cache_root, not_built_note, recipe_hash, tiny_folder

    assert entry.recipe is not None
    folder = tiny_folder(cache_root(), transformers.__version__, entry.key, recipe_hash(entry.recipe, entry.modality))
    if (folder / REFERENCE_JSON).is_file():
        return {"kind": "checkpoint", "path": str(folder.relative_to(cache_root()))}
    note = not_built_note(folder)
    return {"kind": "file", "path": str(note.relative_to(cache_root()))} if note.is_file() else None


def adapter_output(state: Any, cell: Any) -> dict[str, str] | None:
    """The adapter folder's reference file the writer `cell` saved, or its note; None when neither."""
    from compat_tests.adapter_files import REFERENCE_JSON, note_of
    from compat_tests.execute import load_kwargs_of
    from compat_tests.probes.adapter_roundtrip import folder_of
    from compat_tests.tiny.checkpoint import cache_root

    entry = state.matrix.model(cell.model)
    profile = entry.load_kwargs.get(cell.profile)
    if profile is None or profile.adapter is None:
        return None
    try:
        checkpoint = state.checkpoints.prepare(entry).checkpoint
    except Exception:
        return None
    folder = folder_of(profile.adapter, checkpoint, cell.profile, cell.strategy, load_kwargs_of(entry, cell.profile),
                       state.matrix.settings.grpo)
    for path in (folder / REFERENCE_JSON, note_of(folder)):
        if path.is_file():
            return {"kind": "file", "path": str(path.relative_to(cache_root())),
                    "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return None


def run_writer_cells(matrix_file: str, cell_ids: list[str], outputs: dict[str, dict[str, Any]] | None = None) -> None:
    """Run same-release cells for what they save, installing peft first as a release run would (`tox
    exec` runs no `commands_pre`); each prints its status. With `outputs`, each model's entry gets
    the adapter files its cells left, and is no longer complete when one of them ended in `error`."""
    import os

    from compat_matrix.envs import install_training
    from compat_matrix.spec.cells import Cell
    from compat_matrix.spec.validate import load_matrix
    from compat_tests.execute import MatrixState, run_cell

    cells = [c for c in map(Cell.from_id, cell_ids) if c is not None]
    os.environ.update(COMPAT_MATRIX_PROBES=",".join(sorted({c.probe for c in cells})), COMPAT_MATRIX_ADAPTERS="1",
                      COMPAT_MATRIX_FILE=matrix_file)
    install_training.main()
    state = MatrixState(load_matrix(matrix_file, check_model_types=False))
    for cell in cells:
        record = run_cell(state, cell)
        print(f"{cell.id}: {record['status']} {record['message'][:500]}".rstrip(), file=sys.stderr)
        if outputs is not None and cell.model in outputs:
            built = outputs[cell.model]
            found = adapter_output(state, cell)
            built["outputs"] += [found] if found else []
            built["complete"] = built["complete"] and record["status"] != "error"


def main(argv: Sequence[str] | None = None) -> int:
    from compat_matrix.spec.validate import load_matrix

    parser = argparse.ArgumentParser(prog="python -m compat_tests.build_published", description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", required=True)
    parser.add_argument("--models", required=True, help="comma-separated model keys")
    parser.add_argument("--cells", default="", help="comma-separated ids of same-release cells to run after the builds")
    parser.add_argument("--outputs", help="JSON file: per model, the files left for the readers and whether it finished")
    args = parser.parse_args(argv)
    matrix = load_matrix(args.matrix, check_model_types=False)
    failed = 0
    outputs: dict[str, dict[str, Any]] = {}
    for key in filter(None, args.models.split(",")):
        complete = True
        try:
            checkpoint = resolve(matrix.model(key))
            print(f"{key}: built {checkpoint.path}", file=sys.stderr)
        except (CellSkipped, CellUnsupported) as exc:
            print(f"{key}: not built ({type(exc).__name__}): {exc}", file=sys.stderr)
        except HarnessError as exc:
            failed, complete = failed + 1, False
            _leave_note(matrix.model(key), str(exc))
            print(f"{key}: build failed: {exc}", file=sys.stderr)
        found = checkpoint_output(matrix.model(key))
        outputs[key] = {"outputs": [found] if found else [], "complete": complete and found is not None}
    if args.cells:
        run_writer_cells(args.matrix, args.cells.split(","), outputs)
    if args.outputs:
        Path(args.outputs).write_text(json.dumps(outputs, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
