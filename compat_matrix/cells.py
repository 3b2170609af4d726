"""Cells: (model, strategy, load profile, probe[, saved_by]) for the installed release, in run order.

A cross-release cell loads the checkpoint another release (`saved_by`) wrote; only the `load` and
`forward` probes run there, against the reference that release recorded.
"""

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
    saved_by: str | None = None
    """Release that wrote the checkpoint, for cross-release cells; None: the running release."""

    @property
    def id(self) -> str:
        suffix = f"@{self.saved_by}" if self.saved_by else ""
        return f"{self.model}-{self.strategy}-{self.profile}-{self.probe}{suffix}"

    @property
    def group(self) -> tuple[str, str, str, str | None]:
        """Cells sharing one loaded model."""
        return (self.model, self.profile, self.strategy, self.saved_by)

    @classmethod
    def from_id(cls, cell_id: str) -> Cell | None:
        """Parse `model-strategy-profile-probe[@release]` (keys and names never contain '-')."""
        body, _, saved_by = cell_id.partition("@")
        parts = body.split("-")
        if len(parts) != 4:
            return None
        model, strategy, profile, probe = parts
        return cls(model, strategy, profile, probe, saved_by or None)


CROSS_RELEASE_PROBES = ("load", "forward")
"""What a checkpoint from another release is checked with."""


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
    saved_by: Iterable[str] | None = None,
    profiles: Iterable[str] | None = None,
) -> list[Cell]:
    """Every selected cell; probes of one loaded model stay adjacent and in probe order.

    With `saved_by`, the cross-release cells instead: tiny models only, `load` and `forward` only,
    one set per release that wrote the checkpoints. `profiles` are load_kwargs profile names: a model
    without one of them simply has no cell for it, but a name no selected model has is an error.
    """
    keys = _pick(models, tuple(m.key for m in matrix.models), "model")
    known_profiles = tuple(dict.fromkeys(p for m in matrix.models if m.key in keys for p in m.load_kwargs))
    chosen_profiles = _pick(profiles, known_profiles, "load_kwargs profile")
    chosen_strategies = _pick(strategies, matrix.strategy_names, "strategy")
    chosen_probes = _pick(probes, matrix.probe_names, "probe")
    writers: tuple[str | None, ...] = (None,)
    if saved_by is not None:
        writers = tuple(saved_by)
        chosen_probes = tuple(p for p in chosen_probes if p in CROSS_RELEASE_PROBES)
    cells = []
    for entry in matrix.models:
        if entry.key not in keys or (saved_by is not None and entry.source != "tiny"):
            continue
        for writer in writers:
            for profile in entry.load_kwargs:
                if profile not in chosen_profiles:
                    continue
                own_strategies, own_probes = matrix.profile_dimensions(entry, profile)
                cells += [Cell(entry.key, strategy, profile, probe, writer)
                          for strategy in chosen_strategies if strategy in own_strategies
                          for probe in chosen_probes if probe in own_probes]
    return cells
