"""Merge cells from many results files: one per (release, cell id), releases in version order.

Two runs of the same release (a re-run, or `latest` resolving to a listed version) write the
same cells; the later one wins and the earlier one is reported as a duplicate, never lost silently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

from reports.report import Cell, Environment, Problem, Release
from reports.results import parse_timestamp
from reports.status import STATUS_ORDER, probe_rank


@dataclass
class Merged:
    """Unique cells in grid order, the releases they form, and one problem per dropped duplicate."""

    cells: list[Cell]
    releases: list[Release]
    duplicates: list[Problem]


def version_key(version: str) -> tuple[int, Version | str]:
    """Release order: PEP 440 versions by version, anything else after them by name."""
    try:
        return (0, Version(version))
    except InvalidVersion:
        return (1, version)


def cell_sort_key(cell: Cell) -> tuple:
    """Grid order: release, model, strategy, load profile, saved-by, probe in run order."""
    return (
        version_key(cell.transformers),
        cell.model,
        cell.strategy,
        cell.load_kwargs,
        cell.saved_by or "",
        probe_rank(cell.probe),
    )


def merge(cells: Iterable[Cell]) -> Merged:
    """Keep the later timestamp of each duplicated cell (file order breaks ties) and report the other."""
    kept: dict[tuple[str, str], Cell] = {}
    duplicates: list[Problem] = []
    for cell in cells:
        previous = kept.get(cell.key)
        if previous is None:
            kept[cell.key] = cell
            continue
        newer, older = (
            (cell, previous) if parse_timestamp(cell.timestamp) >= parse_timestamp(previous.timestamp) else (previous, cell)
        )
        kept[cell.key] = newer
        duplicates.append(_duplicate(older, newer))
    unique = sorted(kept.values(), key=cell_sort_key)
    return Merged(cells=unique, releases=_releases(unique), duplicates=duplicates)


def _duplicate(older: Cell, newer: Cell) -> Problem:
    return Problem(
        kind="duplicate",
        file=older.origin.file,
        line=older.origin.line,
        message=(
            f"duplicate cell {older.cell_id} for transformers {older.transformers}: this line "
            f"(env {older.env}, {older.status}, finished {older.timestamp}) was dropped for the later "
            f"{newer.origin.file}:{newer.origin.line} (env {newer.env}, {newer.status}, finished {newer.timestamp})"
        ),
    )


def _releases(cells: list[Cell]) -> list[Release]:
    by_release: dict[str, list[Cell]] = {}
    for cell in cells:
        by_release.setdefault(cell.transformers, []).append(cell)
    return [_release(version, members) for version, members in sorted(by_release.items(), key=lambda item: version_key(item[0]))]


def _release(version: str, cells: list[Cell]) -> Release:
    fingerprints = Counter((c.env, c.python, c.torch, c.transformers, c.device, c.gpu_name, c.git_commit) for c in cells)
    environments = tuple(
        Environment(env=env, python=py, torch=torch, transformers=tf, device=dev, gpu_name=gpu, git_commit=commit, cells=n)
        for (env, py, torch, tf, dev, gpu, commit), n in sorted(fingerprints.items(), key=lambda item: item[0][0])
    )
    statuses = Counter(c.status for c in cells)
    return Release(
        transformers=version,
        requested=tuple(sorted({c.transformers_requested for c in cells})),
        environments=environments,
        counts={status: statuses.get(status, 0) for status in STATUS_ORDER},
        cells=len(cells),
    )
