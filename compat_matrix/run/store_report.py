"""The report of every release the results store holds, from the lines a run of this checkout would
reuse: the history, the support table and `pins` then rest on every stored release without running one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compat_matrix.envs.release_sets import ReleaseIndex, ReleaseSetError, span
from compat_matrix.envs.releases import env_name
from compat_matrix.run.store import CELLS, FROM_STORE, Keys, Store, line_facts
from compat_matrix.spec.cells import Cell
from compat_matrix.spec.layout import results_file, results_folder
from compat_matrix.spec.records import expected_of
from compat_matrix.spec.results_io import read_lines
from reports.merge import version_key

STORE_REQUEST = "every release in the results store"
"""What the report's release set says was asked for."""


def current_lines(store: Store, keys: Keys) -> dict[str, list[dict[str, Any]]]:
    """{release: lines}: the newest stored line of each cell whose key is the one this checkout computes
    from it (other harness code, recipes or settings left out), judged by matrix.yaml's expectations now."""
    models = {m.key for m in keys.matrix.models}
    found: dict[str, list[dict[str, Any]]] = {}
    for release in store.releases():
        newest: dict[str, dict[str, Any]] = {}
        for entry in read_lines(store.file(release, CELLS)):
            line = entry.get("line") or {}
            cell = Cell.from_id(str(line.get("cell_id")))
            if cell is None or cell.model not in models or keys.cell(cell, line_facts(line)) != entry.get("key"):
                continue
            newest[cell.id] = {**line, "env": env_name(release), FROM_STORE: entry.get("stored_at"),
                               "expected": expected_of(keys.matrix, cell, str(line.get("transformers")),
                                                       line.get("libraries"))}
        if newest:
            found[release] = list(newest.values())
    return found


def write_store_results(store: Store, keys: Keys, out: Path, index: ReleaseIndex | None = None) -> list[str]:
    """Write the store's current lines as a run's results (`out/results/<env>.jsonl`, the as-published
    and cross-release cells in `<env>-cross.jsonl`) and its `release-set.json`; the releases, oldest first."""
    found = current_lines(store, keys)
    folder = results_folder(out)
    folder.mkdir(parents=True, exist_ok=True)
    for release, lines in found.items():
        for cross in (False, True):
            chosen = [line for line in lines if bool(line.get("saved_by")) == cross]
            path = results_file(folder, env_name(release), cross)
            path.write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in chosen), encoding="utf-8")
    releases = sorted(found, key=version_key)
    try:
        answer = (index or ReleaseIndex()).answer("which final releases lie between the stored ones")
        between, note = span(answer.versions, releases), answer.note()
    except ReleaseSetError as exc:
        between, note = (), f"{exc}: no boundary is called exact"
    (out / "release-set.json").write_text(json.dumps({"requested": [STORE_REQUEST], "releases": releases, "index": note,
                                                      "index_releases": list(between)}, indent=1) + "\n", encoding="utf-8")
    return releases
