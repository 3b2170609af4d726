"""One `from_pretrained` call that also returns what was missing, unexpected or mismatched."""

from __future__ import annotations

from typing import Any

from loader.result import LoadResult


def _names(items: Any) -> list[str]:
    """Loading-info entries as strings (mismatched keys are tuples in some releases)."""
    out = []
    for item in items or ():
        out.append(item if isinstance(item, str) else str(item[0] if isinstance(item, (tuple, list)) and item else item))
    return sorted(out)


def load_with_info(model_class: Any, path: str, *, strategy: str, route: str, **kwargs: Any) -> LoadResult:
    """`model_class.from_pretrained(path, **kwargs)` plus the loading info every release reports."""
    model, info = model_class.from_pretrained(path, output_loading_info=True, **kwargs)
    return LoadResult(
        model=model,
        strategy=strategy,
        path=route,
        missing_keys=_names(info.get("missing_keys")),
        unexpected_keys=_names(info.get("unexpected_keys")),
        mismatched_keys=_names(info.get("mismatched_keys")),
    )
