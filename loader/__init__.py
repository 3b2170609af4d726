"""Loading strategies and a robust loader for Hugging Face checkpoints.

    from loader import load_model
    result = load_model("Qwen/Qwen2.5-VL-3B-Instruct", torch_dtype="bfloat16")
    model = result.model          # result.path: the route taken; result.attempts: every try

`loader` knows nothing of the matrix or the report; training scripts import it directly.
"""

from __future__ import annotations

from typing import Any

from loader.errors import LoadFailed, NoArchitectureNamed, StrategyUnsupported
from loader.registry import REGISTRY, ModelRegistry, register
from loader.result import Attempt, LoadResult
from loader.strategies import STRATEGIES, Strategy


def load_model(path: str, strategy: str = "smart", **kwargs: Any) -> LoadResult:
    """Load `path` (a folder or hub id) with a named strategy; `smart` by default."""
    try:
        chosen = STRATEGIES[strategy]
    except KeyError:
        raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}") from None
    return chosen.load(path, **kwargs)


__all__ = [
    "REGISTRY", "STRATEGIES", "Attempt", "LoadFailed", "LoadResult", "ModelRegistry", "Strategy",
    "NoArchitectureNamed", "StrategyUnsupported", "load_model", "register",
]
