"""`surface`: do the attribute paths and methods training code touches exist, and what do they give?

The paths are data (`settings.surface` in matrix.yaml). A path without a call is read from the
loaded model. A path with a `()` call is evaluated on one deep copy of the model, made once per
run, because calls such as `gradient_checkpointing_enable()` change the model and the probes after
this one must see it as loaded (on a GPU the copy briefly doubles the model's memory).
"""

from __future__ import annotations

import copy
import inspect
import json
import math
from dataclasses import dataclass
from typing import Any, Callable

from compat_tests.probes.base import ProbeContext, ProbeOutcome

VALUE_CHARS = 200
"""Strings, and containers whose JSON is longer, are cut to this many characters."""

ERROR_CHARS = 300
"""Characters of an exception message kept for a path that is missing or whose call raised."""


def _cut(text: str, limit: int = VALUE_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def _error(exc: BaseException) -> str:
    return _cut(f"{type(exc).__name__}: {exc}", ERROR_CHARS)


def describe(value: Any) -> Any:
    """A plain JSON value that says what `value` is: numbers and short strings as they are, modules
    and tensors by type and shape, containers element-wise (cut when long), anything else by type."""
    import torch

    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, torch.Tensor):
        return f"Tensor{list(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, torch.nn.Module):
        text = f"{type(value).__name__} params={sum(p.numel() for p in value.parameters())}"
        weight = getattr(value, "weight", None)
        return text + (f" weight={list(weight.shape)}" if isinstance(weight, torch.Tensor) else "")
    if isinstance(value, (dict, list, tuple)):
        plain = ({str(k): describe(v) for k, v in value.items()} if isinstance(value, dict)
                 else [describe(v) for v in value])
        text = json.dumps(plain)
        return plain if len(text) <= VALUE_CHARS else _cut(text)
    if inspect.ismethod(value) or inspect.isfunction(value):
        try:
            return _cut(f"method {value.__name__}{inspect.signature(value)}")
        except (TypeError, ValueError):
            return f"method {value.__name__}"
    return type(value).__name__


def look_up(root: Any, path: str) -> dict[str, Any]:
    """`{"exists": bool, "value": ...}` for one path from `root`, plus `"error"` when an attribute
    is missing (exists false) or a call raised or is not callable (exists true)."""
    value = root
    for segment in path.split("."):
        name, call = segment.removesuffix("()"), segment.endswith("()")
        try:
            value = getattr(value, name)
        except Exception as exc:  # AttributeError mostly; a property that raises counts as missing too
            return {"exists": False, "value": None, "error": _error(exc)}
        if call:
            if not callable(value):
                return {"exists": True, "value": describe(value), "error": f"{name} is not callable"}
            try:
                value = value()
            except Exception as exc:
                return {"exists": True, "value": None, "error": _error(exc)}
    return {"exists": True, "value": describe(value)}


def usable(entry: dict[str, Any]) -> bool:
    """Exists and, for a call, returned."""
    return bool(entry["exists"]) and "error" not in entry


def record(model: Any, paths: tuple[str, ...], copier: Callable[[Any], Any] = copy.deepcopy) -> dict[str, dict[str, Any]]:
    """Every path looked up; calls on one copy of `model` made by `copier`, so `model` is untouched."""
    copied: list[Any] = []

    def root(path: str) -> Any:
        if "()" not in path:
            return model
        if not copied:
            copied.append(copier(model))
        return copied[0]

    return {path: look_up(root(path), path) for path in paths}


@dataclass(frozen=True)
class SurfaceProbe:
    name: str = "surface"
    mutates_model: bool = False

    def run(self, ctx: ProbeContext) -> ProbeOutcome:
        settings = ctx.settings.surface
        surface = record(ctx.model, settings.paths)
        details: dict[str, Any] = {"surface": surface}
        broken = [path for path in settings.required if not usable(surface[path])]
        if broken:
            reasons = "; ".join(f"{path} ({surface[path].get('error', 'missing')})" for path in broken)
            return ProbeOutcome("fail", f"required API path(s) of {type(ctx.model).__name__} not usable: {reasons}",
                                "CheckFailed", details)
        return ProbeOutcome(details=details)


PROBE = SurfaceProbe()
