"""What a loading strategy returns: the model plus how it got there."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Attempt:
    """One class tried by a strategy, and the error when it failed."""

    path: str
    """Which route: e.g. `registry:Qwen2_5_VLForConditionalGeneration`, `auto:AutoModelForCausalLM`."""
    error_type: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_type is None

    def as_dict(self, limit: int = 500) -> dict[str, str | None]:
        """Plain values for a results line (the message cut to `limit` characters)."""
        return {"path": self.path, "error_type": self.error_type, "message": (self.message or "")[:limit]}


@dataclass
class LoadResult:
    """A loaded model, the route that worked, every route that failed, and the loading info."""

    model: Any
    strategy: str
    path: str
    """The route that produced `model`."""
    attempts: list[Attempt] = field(default_factory=list)
    """Every route tried in order, failed ones with their error, the successful one last."""
    missing_keys: list[str] = field(default_factory=list)
    """Weights the model has but the checkpoint did not provide (newly initialised)."""
    unexpected_keys: list[str] = field(default_factory=list)
    """Checkpoint tensors the model did not use (e.g. a dropped vision tower)."""
    mismatched_keys: list[str] = field(default_factory=list)
    """Tensors whose shape differed and were re-initialised."""
    translations: list[str] = field(default_factory=list)
    """Keyword arguments the strategy changed for the installed release (`smart` only), e.g. `torch_dtype -> dtype`."""

    @property
    def loaded_class(self) -> str:
        return type(self.model).__name__
