"""The skeleton of a result line (reports/README.md), shared by the harness and the CLI.

The CLI needs it without torch: when a release fails to install or a run stops early, every cell
that has no line yet still gets one (`error`, with the reason), so nothing is silently dropped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from compat_matrix.spec.cells import Cell, checkpoint_kind
from compat_matrix.spec.schema import RECORDED_LIBRARIES, Matrix

SCHEMA_VERSION = 1

FINGERPRINT_KEYS = ("transformers", "transformers_requested", "torch", "python", "device", "gpu_name", "git_commit",
                    "libraries", "packages")
"""The machine facts every line carries (`compat_tests.environment.fingerprint`); `packages`: each
optional package transformers checks for, and whether it imports in the release environment."""

WRITER = "writer"
"""`details` of a reader's line skipped because the release that writes what it reads tried and could not
(`compat_tests.outcomes.WriterFailed`): {"status", "error_type"} of the writer's cell."""


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def expected_of(matrix: Matrix, cell: Cell, version: str,
                libraries: Mapping[str, str | None] | None = None) -> dict[str, Any] | None:
    """The cell's expectation from matrix.yaml as plain values, or None (`libraries`: the versions its line
    records; None where not known)."""
    entry = matrix.model(cell.model)
    try:
        expectation = matrix.expectation_for(entry, version, cell.strategy, cell.probe, cell.profile, cell.saved_by,
                                             libraries)
    except ValueError:  # `main` and other non-PEP 440 names match no version range
        expectation = None
    if expectation is None:
        return None
    return {"status": expectation.status, "transformers": expectation.transformers or None,
            "saved_by": expectation.saved_by or None, "libraries": expectation.libraries.named() or None, "reason": expectation.reason, "link": expectation.link,
            "repro": expectation.repro}


def cell_record(matrix: Matrix, cell: Cell, env: str, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Every field of a result line, with status `error` until the cell says otherwise."""
    entry = matrix.model(cell.model)
    return {
        "schema_version": SCHEMA_VERSION,
        "env": env,
        **fingerprint,
        "model": entry.key,
        "hub_id": entry.hub_id,
        "modality": entry.modality,
        "source": entry.source,
        "saved_by": cell.saved_by,
        "checkpoint": checkpoint_kind(entry, cell.saved_by, fingerprint["transformers"]),
        "strategy": cell.strategy,
        "load_kwargs": cell.profile,
        "probe": cell.probe,
        "cell_id": cell.id,
        "status": "error",
        "error_type": None,
        "message": "",
        "loaded_class": None,
        "load_path": None,
        "expected": expected_of(matrix, cell, fingerprint["transformers"], fingerprint.get("libraries")),
        "duration_s": 0.0,
        "peak_memory_mb": None,
        "dtype": None,
        "details": {},
        "callables": {},
        "timestamp": now(),
    }
