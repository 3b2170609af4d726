"""Find the checkpoint folder of a model entry: tiny (built here), hub (cache only), or local."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compat_matrix.spec.layout import hub_note
from compat_matrix.spec.schema import ModelEntry
from compat_tests.needs import needed_package
from compat_tests.outcomes import CellSkipped, CellUnsupported, HarnessError, NeedsPackage


@dataclass
class ExternalCheckpoint:
    """A hub or local checkpoint; reference logits come from the explicit class, on first use."""

    key: str
    path: Path
    trust_remote_code: bool = False
    _logits: dict[str, Any] = field(default_factory=dict)

    def reference_logits(self, kind: str) -> Any:
        if kind not in self._logits:
            import torch

            from compat_tests.tiny.inputs import InputBuilder
            from loader import load_model

            modality = "image-text" if kind == "image" else "text"
            builder = InputBuilder(self.path, modality)
            model = load_model(str(self.path), "explicit_class", torch_dtype=torch.float32,
                               trust_remote_code=self.trust_remote_code).model.eval()
            inputs = builder.image_text() if kind == "image" else builder.text()
            with torch.no_grad():
                self._logits[kind] = model(**inputs).logits.float()
            del model
        return self._logits[kind]


def resolve(entry: ModelEntry) -> Any:
    """A checkpoint object with `.path` and `.reference_logits(kind)`, or a skip/unsupported/error."""
    if entry.source == "tiny":
        from compat_tests.tiny.checkpoint import UnknownModelType, build_checkpoint

        assert entry.recipe is not None
        try:
            return build_checkpoint(entry.key, entry.recipe, entry.modality)
        except UnknownModelType as exc:
            raise CellUnsupported(str(exc)) from None
        except Exception as exc:  # e.g. a processor that needs torchvision, absent beside a CPU torch wheel
            need = needed_package(exc)
            if need is not None:
                raise NeedsPackage(need.package, need.why) from exc
            raise HarnessError(f"building the tiny checkpoint failed: {type(exc).__name__}: {exc}") from exc
    if entry.source == "local":
        path = Path(entry.path or "")
        if not (path / "config.json").is_file():
            raise CellSkipped(f"local checkpoint {path} has no config.json here")
        return ExternalCheckpoint(entry.key, path, entry.trust_remote_code)
    return ExternalCheckpoint(entry.key, _hub_snapshot(entry), entry.trust_remote_code)


def saved_checkpoint(entry: ModelEntry, release: str) -> Any:
    """The tiny checkpoint release `release` built and cached for this entry (cross-release cells)."""
    import transformers

    from compat_tests.tiny.checkpoint import (REFERENCE_JSON, TinyCheckpoint, cache_root, not_built_note, recipe_hash,
                                              tiny_folder)

    assert entry.recipe is not None
    digest = recipe_hash(entry.recipe, entry.modality)
    here = transformers.__version__
    own = _note(not_built_note(tiny_folder(cache_root(), here, entry.key, digest)))
    if own and own["status"] == "skipped":
        if own.get("needs"):
            raise NeedsPackage(own["needs"], f"{_why(own)} (transformers {here} cannot build {entry.key} on this "
                                             "machine, so it does not read another release's checkpoint either)")
        raise CellSkipped(f"this machine cannot run {entry.key} in transformers {here} at all ({own['reason']}), so "
                          "reading another release's checkpoint here would test the machine, not the release")
    folder = tiny_folder(cache_root(), release, entry.key, digest)
    if not (folder / REFERENCE_JSON).is_file():
        why = _note(not_built_note(folder))
        if why:
            said = f"transformers {release} could not save a checkpoint of {entry.key}"
            if why["status"] == "unsupported":
                raise CellUnsupported(f"{said}: {why['reason']}")
            if why.get("needs"):
                raise NeedsPackage(why["needs"], f"{_why(why)} ({said} on this machine)")
            raise CellSkipped(f"{said}: {why['reason']}")
        raise CellSkipped(f"transformers {release} has saved no checkpoint of {entry.key} in {folder.parent}: its "
                          "cells have not run on this machine (`compat-matrix run --cross-release` runs them first)")
    reference = json.loads((folder / REFERENCE_JSON).read_text())
    return TinyCheckpoint(entry.key, folder, digest, release, reference)


def _note(path: Path) -> dict[str, str] | None:
    """A not-built note's {status, reason} (and `needs`: the package a skip needs), or None where there is none."""
    return json.loads(path.read_text()) if path.is_file() else None


def _why(note: dict[str, str]) -> str:
    """A skip note's evidence for the package it needs, without the `needs <package>: ` it starts with."""
    return note["reason"].removeprefix(f"needs {note['needs']}: ")


def require_model_type(entry: ModelEntry) -> None:
    """`CellUnsupported` when the installed release does not know the recipe's model_type at all
    (a checkpoint of a newer model cannot be expected to load in a release that predates it)."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    recipe = entry.recipe
    if recipe is not None and not recipe.remote_code and recipe.model_type not in CONFIG_MAPPING_NAMES:
        raise CellUnsupported(f"transformers {transformers.__version__} does not know model_type {recipe.model_type}")


def _hub_snapshot(entry: ModelEntry) -> Path:
    """The cached snapshot; tests never download (`compat-matrix prefetch` does, where online)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(entry.hub_id, revision=entry.revision, local_files_only=True))
    except Exception as exc:
        note = _note(hub_note(entry.key))
        if note:
            raise CellSkipped(f"not in the local Hugging Face cache: `compat-matrix prefetch` could not download "
                              f"{note['reason']}") from None
        raise CellSkipped(
            f"needs the network: {entry.hub_id}@{entry.revision} is not in the local Hugging Face cache "
            f"({type(exc).__name__}); run `compat-matrix prefetch --models {entry.key}` where the hub is reachable"
        ) from None
