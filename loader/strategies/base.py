"""The strategy contract: a name and a `load` that returns a `LoadResult`."""

from __future__ import annotations

from typing import Any, Protocol

from loader.errors import StrategyUnsupported
from loader.result import LoadResult


class Strategy(Protocol):
    """One way to load a checkpoint; listed in `loader.strategies.STRATEGIES`."""

    @property
    def name(self) -> str: ...

    def load(self, path: str, **kwargs: Any) -> LoadResult:
        """Load `path`; raise `StrategyUnsupported` when the route does not exist in this release."""
        ...


def transformers_class(name: str) -> Any:
    """`getattr(transformers, name)`, or `StrategyUnsupported` naming the installed release.

    transformers is imported here, not with the module: the registry's names are read where
    transformers is not installed (the matrix file's validation)."""
    import transformers

    try:
        return getattr(transformers, name)
    except (AttributeError, ImportError, RuntimeError) as exc:
        raise StrategyUnsupported(f"transformers {transformers.__version__} has no {name} ({type(exc).__name__})") from None
