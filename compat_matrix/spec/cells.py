"""Cells: (model, strategy, load profile, probe[, saved_by]) for the installed release, in run order.

A cross-release cell loads the checkpoint another release (`saved_by`) wrote; only the `load`,
`forward` and `adapter_roundtrip` probes run there, against the references that release recorded. An as-published cell
loads the checkpoint the model's `written_by` release wrote, what `from_pretrained(<hub id>)` gives
users: every probe runs there (in the `written_by` release itself, the same-release cells are the
as-published ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from compat_matrix.spec.schema import Matrix, ModelEntry


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


CROSS_RELEASE_PROBES = ("load", "forward", "adapter_roundtrip")
"""What a checkpoint from another release is checked with (`adapter_roundtrip`: the adapter that
release saved for the profile, read onto its checkpoint)."""


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
    published_in: str | None = None,
) -> list[Cell]:
    """Every selected cell; probes of one loaded model stay adjacent and in probe order.

    With `saved_by` or `published_in`, the cells on checkpoints other releases wrote instead (tiny
    models only): with `published_in` (the installed release), the as-published cells of every
    model whose `written_by` is another release, all probes; with `saved_by`, the cross-release
    cells (CROSS_RELEASE_PROBES only), one set per writer (a writer that is the model's `written_by`
    is left to the as-published cells when those are selected too). `profiles` are load_kwargs
    profile names: a model without one of them simply has no cell for it, but a name no selected
    model has is an error.
    """
    keys = _pick(models, tuple(m.key for m in matrix.models), "model")
    known_profiles = tuple(dict.fromkeys(p for m in matrix.models if m.key in keys for p in m.load_kwargs))
    chosen_profiles = _pick(profiles, known_profiles, "load_kwargs profile")
    chosen_strategies = _pick(strategies, matrix.strategy_names, "strategy")
    chosen_probes = _pick(probes, matrix.probe_names, "probe")
    if saved_by is None and published_in is None:
        return _cells(matrix, keys, chosen_profiles, chosen_strategies, lambda entry: [(None, chosen_probes)])
    cross_probes = tuple(p for p in chosen_probes if p in CROSS_RELEASE_PROBES)

    def writers(entry: ModelEntry) -> list[tuple[str | None, tuple[str, ...]]]:
        if entry.source != "tiny":
            return []
        published = entry.written_by if published_in is not None and entry.written_by not in (None, published_in) else None
        chosen: list[tuple[str | None, tuple[str, ...]]] = [(published, chosen_probes)] if published else []
        return chosen + [(w, cross_probes) for w in saved_by or ()
                         if not (published_in is not None and w == entry.written_by)]

    return _cells(matrix, keys, chosen_profiles, chosen_strategies, writers)


def _cells(matrix: Matrix, keys: tuple[str, ...], profiles: tuple[str, ...], strategies: tuple[str, ...],
           writers: Callable[[ModelEntry], list[tuple[str | None, tuple[str, ...]]]]) -> list[Cell]:
    cells = []
    for entry in matrix.models:
        if entry.key not in keys:
            continue
        for writer, writer_probes in writers(entry):
            for profile in entry.load_kwargs:
                if profile not in profiles:
                    continue
                own_strategies, own_probes = matrix.profile_dimensions(entry, profile)
                cells += [Cell(entry.key, strategy, profile, probe, writer)
                          for strategy in strategies if strategy in own_strategies
                          for probe in writer_probes if probe in own_probes]
    return cells


AS_PUBLISHED, ROUND_TRIP, CROSS_RELEASE = "as_published", "round_trip", "cross_release"
"""What checkpoint a cell loads (a result line's `checkpoint`): the one users get from the hub (a
hub or local entry; a tiny one as its `written_by` release wrote it), a fine-tune saved and
reloaded by the same release, or a fine-tune another release saved."""


def checkpoint_kind(entry: ModelEntry, saved_by: str | None, version: str) -> str:
    """The kind of checkpoint a cell of `entry` loads in release `version` (a tiny entry without
    `written_by` has no other release's checkpoint to stand for the hub's: its own build does)."""
    if saved_by is not None:
        return AS_PUBLISHED if saved_by == entry.written_by else CROSS_RELEASE
    if entry.source == "tiny" and entry.written_by not in (None, version):
        return ROUND_TRIP
    return AS_PUBLISHED
