"""Cells: (model, strategy, load profile, probe) for the installed release, in run order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from compat_matrix.spec import Matrix


@dataclass(frozen=True)
class Cell:
    """One unit of the matrix in one release; `id` is what people read in reports."""

    model: str
    strategy: str
    profile: str
    probe: str

    @property
    def id(self) -> str:
        return f"{self.model}-{self.strategy}-{self.profile}-{self.probe}"

    @property
    def group(self) -> tuple[str, str, str]:
        """Cells sharing one loaded model."""
        return (self.model, self.profile, self.strategy)


def _pick(chosen: Iterable[str] | None, available: tuple[str, ...], what: str) -> tuple[str, ...]:
    if not chosen:
        return available
    chosen = tuple(chosen)
    unknown = [c for c in chosen if c not in available]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; this matrix has: {', '.join(available)}")
    return tuple(c for c in available if c in chosen)


def select_cells(
    matrix: Matrix,
    models: Iterable[str] | None = None,
    strategies: Iterable[str] | None = None,
    probes: Iterable[str] | None = None,
) -> list[Cell]:
    """Every selected cell; probes of one loaded model stay adjacent and in probe order."""
    keys = _pick(models, tuple(m.key for m in matrix.models), "model")
    chosen_strategies = _pick(strategies, matrix.strategies, "strategy")
    chosen_probes = _pick(probes, matrix.probes, "probe")
    return [
        Cell(entry.key, strategy, profile, probe)
        for entry in matrix.models
        if entry.key in keys
        for profile in entry.load_kwargs
        for strategy in chosen_strategies
        for probe in chosen_probes
    ]
