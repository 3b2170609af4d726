"""The cell tables of index.html, one file per model beside the page (`cells/<model>.js`), loaded
when a reader opens that model: the page itself carries only the first screen.

Each file is one JSON object wrapped in a call, `compatMatrixCells({...});`, so the page loads it
with a <script> element both from a web server and from disk (browsers refuse fetch() on file://).
The page builds every element from it with textContent: messages stay text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from reports.grid import GridCell, ModelGroup, build_grid
from reports.report import Cell, Report

CELLS_FOLDER = "cells"
CALLBACK = "compatMatrixCells"


def cell_file(model: str) -> str:
    """`cells/<model>.js`, relative to index.html; a key with other characters gets a safe name."""
    return f"{CELLS_FOLDER}/{re.sub(r'[^A-Za-z0-9_.-]', '_', model)}.js"


def causes_by_cell(report: Report) -> dict[tuple[str, str], list[str]]:
    """(release, cell id) -> the ids of the causes the cell belongs to."""
    found: dict[tuple[str, str], list[str]] = {}
    for cause in report.causes:
        for key in cause.cells:
            release, cell_id = key.split("/", 1)
            found.setdefault((release, cell_id), []).append(cause.id)
    return found


def _probe(cell: Cell, causes: dict[tuple[str, str], list[str]]) -> dict[str, Any]:
    """One probe of a grid cell, with only the fields it has (the files stay small)."""
    fields: dict[str, Any] = {
        "probe": cell.probe, "status": cell.status, "error_type": cell.error_type, "loaded_class": cell.loaded_class,
        "load_path": cell.load_path, "dtype": cell.dtype, "duration_s": round(cell.duration_s, 2),
        "peak_memory_mb": None if cell.peak_memory_mb is None else round(cell.peak_memory_mb),
        "saved_by": cell.saved_by, "message": cell.message, "details": cell.details or None,
        "causes": causes.get(cell.key) or None,
        "expected": cell.expected and {"status": cell.expected.status, "reason": cell.expected.reason,
                                       "link": cell.expected.link},
    }
    return {k: v for k, v in fields.items() if v is not None and v != ""}


def _environment(cell: Cell) -> str:
    """The line under a cell's probes: where it ran."""
    parts = [f"env {cell.env}", f"python {cell.python}", f"torch {cell.torch}",
             f"transformers {cell.transformers} (requested {cell.transformers_requested})",
             cell.device + (f" ({cell.gpu_name})" if cell.gpu_name else "")]
    if cell.git_commit:
        parts.append(f"commit {cell.git_commit[:12]}")
    parts.append(f"from {cell.origin.file}:{cell.origin.line}")
    return " · ".join(parts)


def _cell(cell: GridCell, causes: dict[tuple[str, str], list[str]]) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "worst": cell.worst, "expected": cell.expected_failure or None, "regression": cell.regression or None,
        "fix": cell.fix or None,
        "causes": sorted({cid for p in cell.probes for cid in causes.get(p.key, [])}) or None,
        "probes": [_probe(p, causes) for p in cell.probes], "environment": _environment(cell.probes[0]),
    }
    return {k: v for k, v in fields.items() if v is not None}


def model_payload(group: ModelGroup, causes: dict[tuple[str, str], list[str]]) -> dict[str, Any]:
    """What the page draws for one model: its rows (release -> cell) and its saved-by x loaded-by grid."""
    return {
        "model": group.model,
        "rows": [{"strategy": row.strategy, "profile": row.load_kwargs,
                  "cells": {release: _cell(cell, causes) for release, cell in row.cells.items()}} for row in group.rows],
        "cross": group.cross and {
            "saved_by": list(group.cross.saved_by), "loaded_by": list(group.cross.loaded_by),
            "cells": [[saved, loaded, _cell(cell, causes)] for (saved, loaded), cell in group.cross.cells.items()]},
    }


def cell_files(report: Report) -> dict[str, str]:
    """`cells/<model>.js` -> its text, for every model of the report."""
    causes = causes_by_cell(report)
    return {
        cell_file(group.model): f"{CALLBACK}({json.dumps(model_payload(group, causes), separators=(',', ':'), default=str)});\n"
        for group in build_grid(report).groups
    }
