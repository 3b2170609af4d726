"""What your own probe receives and returns, for `probes: [{name: ..., callable: "pkg.mod:func"}]`.

    from compat_matrix.spec.user import ProbeInput, ProbeResult

    def one_step(ctx: ProbeInput) -> ProbeResult:
        out = ctx.model(**ctx.inputs, labels=ctx.inputs["input_ids"])
        out.loss.backward()
        return ProbeResult(passed=bool(out.loss.isfinite()), details={"loss": float(out.loss)})

A probe returns a `ProbeResult` or a plain bool, and may raise: an exception is a `fail` with its
type and message. Your own strategy (`strategies: [{name: ..., callable: ...}]`) is called as
`callable(path, **load_kwargs)` and returns the model (or a `loader.LoadResult`); the `load` probe
then checks it as it checks every strategy's model (LM head, vision tower, logits of the weights).
For a tiny checkpoint, `path` is a folder named after the model's hub id (a link to the checkpoint),
as a local copy of the hub repository would be, so loaders that choose a class from the id see it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compat_matrix.spec.schema import Settings


@dataclass(frozen=True)
class ProbeInput:
    """Everything a probe of your own is given; built per cell, the model shared with earlier probes."""

    model: Any
    """The model the cell's strategy loaded, on `device`, in eval mode."""
    tokenizer: Any
    """The checkpoint's tokenizer."""
    processor: Any | None
    """The checkpoint's processor (image-text models); None for text models."""
    inputs: dict[str, Any]
    """Fixed text inputs (`input_ids`, `attention_mask`), on `device`; the same in every release."""
    image_inputs: dict[str, Any] | None
    """Fixed image+text inputs (what the processor returns for one image and prompt), on `device`
    and in the processor's dtypes (float32 pixel values, as training code gets them: casting them
    to the model's dtype is the model's job, as the built-in `forward` probe leaves it); None for
    text models."""
    device: str
    """`cpu` or `cuda`."""
    dtype: Any
    """The `torch.dtype` of the model's parameters."""
    settings: Settings
    """`settings:` of matrix.yaml (generate length, GRPO constants, ...)."""
    model_key: str
    """The model's key in matrix.yaml."""
    hub_id: str
    """The hub id the model stands for."""
    checkpoint: str
    """The checkpoint folder."""
    strategy: str
    """The strategy that loaded `model`."""
    load_kwargs: dict[str, Any] = field(default_factory=dict)
    """The load profile's keyword arguments."""
    transformers_version: str = ""
    """The installed transformers release."""


@dataclass(frozen=True)
class ProbeResult:
    """Pass or fail, why, and plain JSON values for the report."""

    passed: bool
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
