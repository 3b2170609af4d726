"""The contract between the harness and a probe: what a probe is given and what it returns.

A probe is one check on a model that a strategy loaded. It either returns a `ProbeOutcome`
(`pass`, or `fail` with the check that did not hold) or raises; the harness turns an exception
into `fail` with the exception's type and message. Harness breakage and time-outs are `error`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    import torch

    from compat_matrix.spec.schema import ModelEntry, Settings
    from compat_tests.tiny.checkpoint import TinyCheckpoint
    from compat_tests.tiny.inputs import InputBuilder
    from loader.accounting import WeightAccount
    from loader.result import LoadResult


@dataclass
class ProbeContext:
    """Everything a probe may use; built once per (model, strategy, load profile)."""

    entry: ModelEntry
    """The matrix entry (modality, recipe, settings of the model)."""
    checkpoint: TinyCheckpoint
    """Where the checkpoint lives and the reference outputs recorded when it was built."""
    loaded: LoadResult
    """The model the strategy returned, with its class, loading info and the path taken."""
    inputs: InputBuilder
    """Builds text and image+text inputs through the checkpoint's own tokenizer/processor."""
    settings: Settings
    """Run-wide knobs from matrix.yaml (generate length, GRPO constants)."""
    device: str
    """`cpu` or `cuda`; the model is already there."""
    dtype: torch.dtype
    """Compute dtype the model was loaded in."""
    reload: Callable[[], Any]
    """Loads a fresh model the same way (for state-leak checks and the GRPO reference copy)."""
    checkpoint_config: Any = None
    """The checkpoint's own config (AutoConfig of the folder), whatever class the strategy chose."""
    load_kwargs: dict[str, Any] = field(default_factory=dict)
    """The load profile's keyword arguments, as the strategy was given them."""
    weights: WeightAccount | None = None
    """Where each model tensor came from in the checkpoint (None: `weights_note` says why)."""
    weights_note: str | None = None
    """Why there is no weight account (no weight files to read), or None."""
    route_modality: str | None = None
    """`text` when the route (strategy or profile) loads only the text side on purpose, else None."""
    profile: str = ""
    """The load profile's name (with `strategy`, names what a probe saves for this group)."""
    strategy: str = ""
    """The strategy's name as the matrix lists it."""
    reload_base: Callable[[], Any] | None = None
    """Loads the checkpoint as `reload` does but without the profile's adapter (what a saved adapter is read onto)."""

    @property
    def model(self) -> Any:
        return self.loaded.model

    @property
    def modality(self) -> str:
        """What the route loads: `text` for a text route, else the model's modality."""
        return self.route_modality or self.entry.modality

    @property
    def text_route(self) -> bool:
        """A text-only route on a multimodal checkpoint: the vision side's absence is expected."""
        return self.route_modality == "text" and self.entry.modality != "text"


@dataclass
class ProbeOutcome:
    """Result of one probe; `details` holds plain JSON values only (they cross xdist workers)."""

    status: str = "pass"
    message: str = ""
    error_type: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Probe(Protocol):
    """One check on a loaded model, listed in `compat_tests.probes.PROBES`."""

    @property
    def name(self) -> str: ...

    @property
    def mutates_model(self) -> bool:
        """True when the probe changes the weights (later probes then need a fresh load)."""
        ...

    def run(self, ctx: ProbeContext) -> ProbeOutcome: ...
