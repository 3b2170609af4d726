"""Record what the installed release computes on a model's as-published checkpoint (drift record).

For each model: the processor's outputs, the position ids where the model computes them itself
(a rope index), text-only and image+text logits, and a fingerprint of every submodule's output in
execution order (`compat_tests.fingerprint`). Records of two releases are compared by
`reports.drift`; a record that says the checkpoint could not be read is kept apart from drift.

Run inside a release's environment (`compat-matrix drift` does, through tox):
`python -m compat_tests.drift_record --matrix matrix.yaml --models qwen2_vl --out drift/tf5_0_0.json`
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from compat_matrix.spec.schema import ModelEntry
from compat_tests.fingerprint import ModuleTrace, tensor_fingerprint
from compat_tests.outcomes import CellFailed, CellSkipped, CellUnsupported, HarnessError

RECORD_FORMAT = 3
"""Bumped when a record's fields change meaning (2: fingerprint stats are mean, rms, max |x|, samples;
3: torch's own leaf modules are not traced); records of other formats are not compared."""

BUILD_ERROR = "build_error"
"""Field of an `error` record whose tiny checkpoint this release could not build: the exception's type.
The build is this release's, the recipe's and the harness's (all in the record's store key): the
store keeps it, unless the type says the machine failed (`compat_matrix.run.drift.MACHINE_ERRORS`)."""

ROPE_INPUTS = ("input_ids", "image_grid_thw", "video_grid_thw", "attention_mask", "second_per_grid_ts",
               "mm_token_type_ids")
"""What a model's own position-id computation (Qwen-VL's get_rope_index) takes from the processor."""


def as_published(entry: ModelEntry) -> Any:
    """The checkpoint users load for this entry: a hub/local one as it is; a tiny one as the
    release in `written_by` built it (this release, when it is that one or none is named)."""
    import transformers

    from compat_tests.sources import require_model_type, resolve, saved_checkpoint

    here = transformers.__version__
    if entry.source != "tiny" or entry.written_by in (None, here):
        return resolve(entry)
    require_model_type(entry)
    # This release's own build first: where it needs a package this machine lacks (5.4's Qwen2-VL
    # image processor wants torchvision), reading the writer's folder would fail for the machine's
    # sake, and saved_checkpoint then says so (skipped) instead of blaming the checkpoint.
    resolve(entry)
    return saved_checkpoint(entry, entry.written_by)


def _rope_index(model: Any, inputs: dict[str, Any]) -> Any:
    """Position ids from the model's own `get_rope_index` (Qwen-VL's 3-D rope), or None when it has none."""
    owner = next((m for m in (model, getattr(model, "model", None)) if hasattr(m, "get_rope_index")), None)
    if owner is None:
        return None
    method = owner.get_rope_index
    parameters = inspect.signature(method).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    position_ids = method(**{k: v for k, v in inputs.items() if k in ROPE_INPUTS and (takes_any or k in parameters)})
    return position_ids[0] if isinstance(position_ids, tuple) else position_ids


def _unreadable(loaded: Any) -> str | None:
    """Why a clean load did not happen (tensors newly initialised, dropped or re-shaped), or None."""
    problems = [f"{len(keys)} {what} ({', '.join(keys[:3])})" for what, keys in (
        ("weights newly initialised", loaded.missing_keys), ("checkpoint tensors unused", loaded.unexpected_keys),
        ("weights re-initialised for a shape mismatch", loaded.mismatched_keys)) if keys]
    return "; ".join(problems) or None


def record_model(entry: ModelEntry, checkpoint: Any, trace: bool = True) -> dict[str, Any]:
    """What this release computes on `checkpoint` (float32, CPU, one thread: bits do not depend
    on the machine's cores); `status` is `ok`, or `unreadable` with the reason."""
    import torch
    import transformers

    from compat_tests.tiny.inputs import InputBuilder
    from loader import load_model

    record: dict[str, Any] = {"format": RECORD_FORMAT, "model": entry.key, "transformers": transformers.__version__,
                              "written_by": getattr(checkpoint, "transformers_version", None),
                              "checkpoint": str(checkpoint.path), "dtype": "float32"}
    start = time.perf_counter()
    try:
        inputs = InputBuilder(checkpoint.path, entry.modality)
        loaded = load_model(str(checkpoint.path), "explicit_class", torch_dtype=torch.float32,
                            trust_remote_code=entry.trust_remote_code)
    except Exception as exc:
        return {**record, "status": "unreadable", "reason": f"{type(exc).__name__}: {exc}"[:2000]}
    problem = _unreadable(loaded)
    if problem:
        return {**record, "status": "unreadable", "reason": problem}
    model = loaded.model.eval()
    batches = {"text": inputs.text()}
    if entry.modality == "image-text":
        batches["image"] = inputs.image_text()
        record["processor"] = {key: tensor_fingerprint(value) for key, value in batches["image"].items()
                               if isinstance(value, torch.Tensor)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            if "image" in batches:
                position_ids = _rope_index(model, batches["image"])
                if position_ids is not None:
                    record["position_ids"] = tensor_fingerprint(position_ids)
            record["outputs"], record["modules"] = {}, {}
            for kind, batch in batches.items():
                with ModuleTrace(model) if trace else _NoTrace() as traced:
                    logits = model(**batch).logits
                record["outputs"][f"{kind}_logits"] = tensor_fingerprint(logits.float())
                record["modules"][kind] = traced.calls
    finally:
        torch.set_num_threads(threads)
    record["status"] = "ok"
    record["seconds"] = round(time.perf_counter() - start, 3)
    return record


class _NoTrace:
    """ModuleTrace's stand-in when fingerprints are not wanted (the bench's bare run)."""

    calls: list[dict[str, Any]] = []

    def __enter__(self) -> _NoTrace:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def record_entry(entry: ModelEntry) -> dict[str, Any]:
    """`record_model` on the entry's as-published checkpoint; a checkpoint this release cannot
    get (model unknown here, writer's checkpoint absent) is a record with that status."""
    import transformers

    base = {"format": RECORD_FORMAT, "model": entry.key, "transformers": transformers.__version__,
            "written_by": entry.written_by}
    try:
        checkpoint = as_published(entry)
    except CellUnsupported as exc:
        return {**base, "status": "unsupported", "reason": str(exc)}
    except CellSkipped as exc:
        return {**base, "status": "skipped", "reason": str(exc)}
    except (CellFailed, HarnessError) as exc:
        built = isinstance(exc, HarnessError) and isinstance(exc.__cause__, Exception) and entry.source == "tiny"
        return {**base, "status": "error", "reason": str(exc),
                **({BUILD_ERROR: type(exc.__cause__).__name__} if built else {})}
    try:
        return record_model(entry, checkpoint)
    except Exception as exc:  # one model's crash must not lose the others' records
        return {**base, "status": "error", "reason": f"recording failed: {type(exc).__name__}: {exc}"[:2000]}


def main(argv: Sequence[str] | None = None) -> int:
    from compat_matrix.spec.validate import load_matrix

    parser = argparse.ArgumentParser(prog="python -m compat_tests.drift_record", description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", required=True)
    parser.add_argument("--models", required=True, help="comma-separated model keys")
    parser.add_argument("--out", type=Path, required=True, help="JSON file: {model key: record}")
    args = parser.parse_args(argv)
    matrix = load_matrix(args.matrix, check_model_types=False)
    records = {key: record_entry(matrix.model(key)) for key in args.models.split(",") if key}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(records, sort_keys=True) + "\n", encoding="utf-8")
    for key, record in records.items():
        print(f"{key}: {record['status']} {record.get('reason', '')}".rstrip(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
