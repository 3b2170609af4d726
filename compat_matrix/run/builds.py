"""Stored as-published builds: a `written_by` release is not started again to rebuild what it built.

Before its as-published cells run, a run starts each `written_by` release it does not test (a tox
start, torch and transformers imported, its adapter writers run again) even when the tiny cache
already holds every checkpoint and adapter it wrote: six tox starts, ~56 s of a new release's ~8
minutes (docs/history.md). The store now keeps each finished build, per (writer release, model),
in `<store>/<release>/builds.jsonl`: `{"key", "stored_at", "harness", "entry", "record": {"model", "outputs"}}`
(`harness` and `entry`, the build code and model entry hashes, are in the key too: `store --prune` reads them).

- The key (`build_key`) holds the writer release's environment (torch, python, device), the model
  entry, the key of each writer cell (which holds its profile, settings, peft and the probe's code),
  the run's trl/peft constraints (`COMPAT_MATRIX_TRAINING_CONSTRAINTS`: the adapter folders' hash has
  them) and the code a build runs (`compat_tests/build_published.py` and what it imports: every probe).
- `outputs` are the files the readers' cells look for, relative to the cache: a checkpoint folder
  (its content hashes are checked again, as a build would before reusing it), or a note file (a
  checkpoint or adapter the release could not write) or an adapter folder's reference file, with its
  sha256 (a writer with another peft rewrites a shared folder: then this release writes it again).
- A model is stored only when its build and every writer cell finished without `error`; it is
  rebuilt when its key changed, when one of its outputs is gone, or when a checkpoint's files no
  longer match their hashes. `--fresh` rebuilds; `--no-store` neither reads nor stores.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compat_matrix.envs.install_training import extra_constraints
from compat_matrix.run.harness_hash import build_hash
from compat_matrix.run.store import BUILDS, EnvFacts, Keys, Store, _sha
from compat_matrix.spec.cells import Cell
from compat_matrix.spec.layout import cache_root
from compat_matrix.spec.records import now

CONTENT_HASHES = "content.sha256.json"
"""compat_tests.tiny.checkpoint.CONTENT_HASHES (not imported: it imports transformers; a test keeps them equal)."""


def build_key(keys: Keys, release: str, model: str, cells: list[Cell], facts: EnvFacts) -> str | None:
    """The key of one model's build in `release` with its writer `cells`; None when a writer cell has
    no key there (peft absent from the environment: what it does then is not stored)."""
    cell_keys = [keys.cell(c, facts) for c in sorted(cells, key=lambda c: c.id)]
    if None in cell_keys:
        return None
    return _sha({"build": release, "torch": facts.torch, "python": facts.python, "device": facts.device,
                 "model": keys._model(model), "cells": cell_keys, "code": build_hash(),
                 "install": list(keys.matrix.install), "training_constraints": extra_constraints()})


def content_intact(folder: Path) -> bool:
    """Whether a built folder's files are those its build recorded (as `checkpoint.changed_files` finds none)."""
    try:
        recorded = json.loads((folder / CONTENT_HASHES).read_text())
    except (OSError, ValueError):
        return False
    files = {str(p.relative_to(folder)): p for p in folder.rglob("*") if p.is_file() and p.name != CONTENT_HASHES}
    return recorded.keys() == files.keys() and all(
        hashlib.sha256(files[name].read_bytes()).hexdigest() == digest for name, digest in recorded.items())


def _same_file(path: Path, digest: str | None) -> bool:
    """`path` is there with the bytes it had (an adapter folder another run's writer, with another peft,
    wrote again is not this build's)."""
    try:
        return digest is None or hashlib.sha256(path.read_bytes()).hexdigest() == digest
    except OSError:
        return False


def outputs_intact(outputs: list[dict[str, str]], root: Path | None = None) -> bool:
    """Whether every output a stored build listed is still there as it was."""
    base = root or cache_root()
    for output in outputs:
        path = base / output["path"]
        if output["kind"] == "checkpoint" and not content_intact(path):
            return False
        if output["kind"] == "file" and not _same_file(path, output.get("sha256")):
            return False
    return True


@dataclass(frozen=True)
class Planned:
    """What a writer release has to build now, and the builds the store already holds."""

    to_build: list[str]
    reused: dict[str, str]
    """{model: when its build was stored}"""


def plan(store: Store, keys: Keys, release: str, models: list[str], cells: dict[str, list[Cell]],
         facts: EnvFacts | None) -> Planned:
    """Split `models` into those whose stored build is current and intact, and the rest."""
    if facts is None or facts.transformers != release:
        return Planned(list(models), {})
    entries = store.entries(release, BUILDS)
    reused = {}
    for model in models:
        key = build_key(keys, release, model, cells.get(model, []), facts)
        entry = entries.get(key) if key else None
        record = (entry or {}).get("record") or {}
        if entry and record.get("model") == model and outputs_intact(record.get("outputs", [])):
            reused[model] = str(entry.get("stored_at"))
    return Planned([m for m in models if m not in reused], reused)


def keep_builds(store: Store, keys: Keys, release: str, cells: dict[str, list[Cell]], facts: EnvFacts | None,
                outputs_file: Path) -> int:
    """Store the builds a `compat_tests.build_published --outputs` run finished; how many."""
    try:
        done: dict[str, Any] = json.loads(outputs_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    if facts is None or facts.transformers != release:
        return 0
    entries = []
    for model, built in done.items():
        key = build_key(keys, release, model, cells.get(model, []), facts)
        if key and built.get("complete") and outputs_intact(built.get("outputs", [])):
            entries.append({"key": key, "stored_at": now(), "harness": build_hash(), "entry": keys.model_entry(model),
                            "record": {"model": model, "outputs": built["outputs"]}})
    return store.add(release, entries, BUILDS)
