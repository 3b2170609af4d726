"""One results line (results schema version 1, documented in README.md) as a typed object."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from reports.status import Status

RESULTS_SCHEMA_VERSION = 1
"""The results schema this package reads; a line with another version is reported, not guessed at."""


def parse_timestamp(value: str) -> datetime:
    """ISO 8601 to an aware datetime (a trailing `Z` too, which Python 3.10 does not accept)."""
    parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class Expected(BaseModel):
    """The `matrix.yaml` expectation the harness matched to the cell."""

    model_config = ConfigDict(extra="allow", frozen=True)

    status: Status
    transformers: str | None = None
    """PEP 440 range it applies to; null: every release."""
    saved_by: str | None = None
    """PEP 440 range of the releases whose checkpoints it covers; null: any checkpoint."""
    libraries: dict[str, str] | None = None
    """PEP 440 ranges of the training libraries it holds for (`{"peft": "<0.22.0"}`); null: any version."""
    reason: str = ""
    link: str | None = None
    repro: str | None = None
    """Path of the script that reproduces the cause (`compat-matrix repro`), relative to matrix.yaml."""


class CellResult(BaseModel):
    """One cell as the harness wrote it; unknown extra fields are kept, never dropped."""

    model_config = ConfigDict(extra="allow", frozen=True)

    schema_version: int
    env: str
    transformers: str
    transformers_requested: str
    torch: str
    python: str
    device: str
    gpu_name: str | None = None
    git_commit: str | None = None
    libraries: dict[str, str | None] = Field(default_factory=dict)
    """Versions of trl, peft, accelerate, tokenizers in the cell's environment (None: not installed)."""
    packages: dict[str, bool] = Field(default_factory=dict)
    """Each optional package transformers checks for, and whether it imports in the cell's environment
    (empty on lines no cell of the environment wrote, and on lines written before this field)."""
    model: str
    hub_id: str
    modality: str
    source: str
    saved_by: str | None = None
    checkpoint: str | None = None
    """`as_published` (what users load from the hub: the main grid), `round_trip` (a fine-tune
    saved and reloaded by this release) or `cross_release` (another release saved it); lines
    written before this field: a cell that is not cross-release is the main grid."""
    strategy: str
    load_kwargs: str
    probe: str
    cell_id: str
    status: Status
    error_type: str | None = None
    message: str = ""
    loaded_class: str | None = None
    load_path: str | None = None
    expected: Expected | None = None
    duration_s: float
    peak_memory_mb: float | None = None
    dtype: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    callables: dict[str, dict[str, str | None]] = Field(default_factory=dict)
    """The user's own strategy/probe of this cell: {"strategy"|"probe": {callable, package, version}}."""
    timestamp: str

    @field_validator("timestamp")
    @classmethod
    def _iso(cls, value: str) -> str:
        try:
            parse_timestamp(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 time such as '2026-11-28T21:58:08Z'") from None
        return value

    @property
    def cross_release(self) -> bool:
        """Saved by one release and loaded by another: these get their own grid per model."""
        return self.saved_by is not None and self.saved_by != self.transformers

    @property
    def as_published(self) -> bool:
        """On the checkpoint users load from the hub: the report's main grid."""
        return self.checkpoint == "as_published" if self.checkpoint else not self.cross_release

    @property
    def checkpoint_from(self) -> str:
        """The release that wrote the checkpoint this cell loads."""
        return self.saved_by or self.transformers

    @property
    def grid_id(self) -> str:
        """The cell's id in the main grid: the same in every release, whichever release wrote the
        as-published checkpoint (its own cells say `@<written_by>`, the writer's do not)."""
        return self.cell_id.partition("@")[0] if self.checkpoint == "as_published" else self.cell_id

    @property
    def needs(self) -> str | None:
        """The package this environment lacks that a `skipped` cell needs (`details.needs`), else None."""
        found = self.details.get("needs") if self.status == "skipped" else None
        return found if isinstance(found, str) and found else None

    @property
    def key(self) -> tuple[str, str]:
        """Identity across runs: the release that ran it and the cell id."""
        return (self.transformers, self.cell_id)
