"""Refuse to instantiate a model whose config this release parses into something far bigger than
the checkpoint: an older release that mis-reads a newer config can fall back to full-size default
dimensions and allocate gigabytes for a tiny model. The estimate costs no memory (meta device)."""

from __future__ import annotations

from typing import Any

from compat_tests.outcomes import CheckFailed

GROWTH_LIMIT = 4.0
"""Parsed-config parameters over checkpoint parameters above which we refuse to load."""


def estimated_parameters(config: Any) -> int | None:
    """Parameters of `config.architectures[0]` built from `config` on the meta device, or None."""
    import torch
    import transformers

    architectures = getattr(config, "architectures", None) or []
    model_class = getattr(transformers, architectures[0], None) if architectures else None
    if model_class is None:
        return None
    try:
        with torch.device("meta"):
            model = model_class(config)
    except Exception:  # the load itself will report why this class cannot be built
        return None
    return sum(p.numel() for p in model.parameters())


def check_size(estimate: int | None, checkpoint_parameters: int | None, release: str) -> None:
    """Raise `CheckFailed` when the parsed config (`estimated_parameters`) would build a model far
    larger than the checkpoint."""
    if not checkpoint_parameters:
        return
    if estimate is not None and estimate > GROWTH_LIMIT * checkpoint_parameters:
        raise CheckFailed(
            f"transformers {release} parses this config into {estimate:,} parameters but the checkpoint holds "
            f"{checkpoint_parameters:,}: the config is mis-read (e.g. full-size defaults); not instantiated")
