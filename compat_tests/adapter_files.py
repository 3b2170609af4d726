"""Adapters a release saved, kept in the cache: one folder per (checkpoint, load profile, strategy),
written once by the release that wrote the checkpoint and read by every release.

What peft saves depends on its version (0.22.0 adapts DeepSeek-V3's dense MLP on 5.x, 0.21.2 does
not), and one cache serves runs that install trl and peft differently (CI pins them, a user's run
takes the newest). So the folder's hash includes the run's pip constraints for them
(`COMPAT_MATRIX_TRAINING_CONSTRAINTS`), and a writer whose peft is not the one a folder records writes
it again: a reader never judges one peft's adapter as another's.

A folder holds `adapter/` (what peft's `save_pretrained` wrote, as `trainer.save_model` leaves it),
`adapter_reference.json` (writer, peft version, the saved tensors) and `adapter_logits.safetensors`
(the writer's logits on the fixed inputs, with and without the adapter). It is filled in a temporary
folder renamed into place, so a folder that exists is complete; a writer that could not save one
leaves a note beside it, which the readers' cells report.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from compat_matrix.envs.install_training import extra_constraints
from compat_matrix.spec.layout import cache_root
from compat_tests.outcomes import CellSkipped, CellUnsupported, WriterFailed
from compat_tests.tiny.checkpoint import CONTENT_HASHES, building

if TYPE_CHECKING:
    import torch

    from compat_matrix.spec.schema import AdapterSpec, GrpoSettings

ADAPTER_FORMAT = 1
"""Part of the folder's hash: bump it when a writer saves something else for the same profile."""

SAVED = "adapter"
"""The subfolder `save_pretrained` wrote: what `PeftModel.from_pretrained` reads."""
REFERENCE_JSON = "adapter_reference.json"
REFERENCE_LOGITS = "adapter_logits.safetensors"
NOT_WRITTEN_SUFFIX = ".not-written.json"


def writer_of(checkpoint: Any) -> str:
    """The release that wrote `checkpoint` (a tiny one records it; a hub or local one is this release's to adapt)."""
    import transformers

    return getattr(checkpoint, "transformers_version", None) or transformers.__version__


def base_identity(checkpoint: Any) -> str:
    """What the adapter was trained on: the weight files' sha256 a tiny build recorded, else the folder
    (a rebuilt checkpoint with other bits gets other adapters)."""
    hashes = Path(checkpoint.path) / CONTENT_HASHES
    if hashes.is_file():
        recorded = json.loads(hashes.read_text())
        return ",".join(f"{name}:{digest}" for name, digest in sorted(recorded.items()) if name.endswith(".safetensors"))
    return str(Path(checkpoint.path).resolve())


def adapter_digest(adapter: AdapterSpec, load_kwargs: dict[str, Any], strategy: str, grpo: GrpoSettings, base: str) -> str:
    """sha256 of everything that decides what the writer saves, the run's trl/peft constraints included."""
    payload = {"adapter": adapter.model_dump(mode="json"), "load_kwargs": load_kwargs, "strategy": strategy,
               "grpo": grpo.model_dump(mode="json"), "base": base, "format": ADAPTER_FORMAT,
               "training_constraints": extra_constraints()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def adapter_folder(checkpoint: Any, profile: str, strategy: str, digest: str, root: Path | None = None) -> Path:
    """Where the adapter the checkpoint's writer saved for this profile and strategy lives."""
    return (root or cache_root()) / "adapters" / writer_of(checkpoint) / Path(checkpoint.path).name / \
        f"{profile}-{strategy}-{digest[:12]}"


def note_of(folder: Path) -> Path:
    """The writer's note beside `folder` when it could not save the adapter."""
    return folder.with_name(folder.name + NOT_WRITTEN_SUFFIX)


@dataclass(frozen=True)
class SavedAdapter:
    """A complete adapter folder and what its writer recorded."""

    folder: Path
    reference: dict[str, Any]

    @property
    def saved(self) -> Path:
        return self.folder / SAVED

    def logits(self) -> dict[str, torch.Tensor]:
        """The writer's float32 logits: `adapted_<kind>` and `base_<kind>`, kind `text` or `image`."""
        from safetensors.torch import load_file

        return load_file(self.folder / REFERENCE_LOGITS)


def open_saved(folder: Path, writer: str, profile: str) -> SavedAdapter | None:
    """The adapter in `folder`; None when there is none and no note; CellSkipped with the writer's
    reason when it could not save one."""
    if (folder / REFERENCE_JSON).is_file():
        return SavedAdapter(folder, json.loads((folder / REFERENCE_JSON).read_text()))
    note = note_of(folder)
    if note.is_file():
        why = json.loads(note.read_text())
        raise WriterFailed(f"transformers {writer} could not save an adapter for profile {profile!r} "
                           f"({why['status']}): {why['reason']}", why["status"], why.get("error_type"))
    return None


def leave_note(folder: Path, status: str, reason: str, error_type: str | None = None) -> None:
    """Tell the readers why the writer saved no adapter into `folder` (its cell's status, error type and message)."""
    note_of(folder).parent.mkdir(parents=True, exist_ok=True)
    note_of(folder).write_text(json.dumps({"status": status, "reason": reason[:2000], "error_type": error_type}))


def not_saved(writer: str, profile: str, folder: Path) -> CellSkipped:
    """A reader's skip when the writer's cells have not run on this machine."""
    return CellSkipped(f"transformers {writer} has saved no adapter for profile {profile!r} in {folder.parent}: its "
                       "adapter_roundtrip cells have not run on this machine (`compat-matrix run --cross-release` runs "
                       "them first)")


def write_once(folder: Path, fill: Callable[[Path], None], peft_version: str) -> SavedAdapter:
    """The adapter in `folder`, written now by `fill` (into an empty temporary folder) when absent or
    written by another `peft_version`. A `fill` that raises leaves a note with its reason for the
    readers, then the error goes on."""
    lock = building(folder, "adapter")
    try:
        reference = folder / REFERENCE_JSON
        if reference.is_file() and json.loads(reference.read_text()).get("peft_version") != peft_version:
            stale = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.stale")
            os.rename(folder, stale)
            shutil.rmtree(stale, ignore_errors=True)
        if not reference.is_file():
            _write(folder, fill)
        return SavedAdapter(folder, json.loads((folder / REFERENCE_JSON).read_text()))
    finally:
        lock.release()


def _write(folder: Path, fill: Callable[[Path], None]) -> None:
    temporary = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.tmp"
    temporary.mkdir(parents=True)
    try:
        fill(temporary)
        os.rename(temporary, folder)
    except Exception as exc:
        status = {CellSkipped: "skipped", CellUnsupported: "unsupported"}.get(type(exc), "fail")
        leave_note(folder, status, str(exc) if status != "fail" else f"{type(exc).__name__}: {exc}", type(exc).__name__)
        raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    note_of(folder).unlink(missing_ok=True)
