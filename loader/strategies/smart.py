"""Our robust loader: registry, then detection from the config, then a fallback chain.

Keyword arguments are first translated for the installed release (`loader.kwargs`), so one call
works on every release; the other strategies pass them through untouched.

Each route is tried in order; a route that raises, or that returns a model unable to stand in
for the checkpoint (no LM head, vision tower dropped), is recorded with its reason and the chain
moves on. The result names the route that worked and keeps every failed attempt.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Any

from loader.errors import LoadFailed
from loader.inspection import expects_vision, shortfall
from loader.kwargs import translate
from loader.loading import load_with_info
from loader.registry import REGISTRY, ModelRegistry
from loader.result import Attempt, LoadResult

VISION_AUTO_CLASSES = ("AutoModelForImageTextToText", "AutoModelForVision2Seq")
TEXT_AUTO_CLASSES = ("AutoModelForCausalLM",)


@dataclass(frozen=True)
class SmartStrategy:
    """Registry + detection + fallback chain; see the module docstring."""

    name: str = "smart"
    registry: ModelRegistry = field(default_factory=lambda: REGISTRY)

    def routes(self, config: Any, *, trust_remote_code: bool = False) -> list[tuple[str, Any]]:
        """(route name, class) pairs in the order they are tried, without duplicates."""
        import transformers  # when loading (see base.transformers_class)

        candidates: list[tuple[str, Any]] = [
            (f"registry:{cls.__name__}", cls) for cls in self.registry.classes_for(config)
        ]
        auto_map = getattr(config, "auto_map", None) or {}
        auto_names = (*VISION_AUTO_CLASSES, *TEXT_AUTO_CLASSES) if expects_vision(config) else TEXT_AUTO_CLASSES
        if trust_remote_code:
            candidates += [(f"remote_code:{name}", getattr(transformers, name, None)) for name in auto_names if name in auto_map]
        for arch in getattr(config, "architectures", None) or []:
            candidates.append((f"architectures:{arch}", getattr(transformers, arch, None)))
        candidates += [(f"auto:{name}", getattr(transformers, name, None)) for name in auto_names]
        ordered: dict[Any, str] = {}
        for route, cls in candidates:
            if cls is not None and cls not in ordered:
                ordered[cls] = route
        return [(route, cls) for cls, route in ordered.items()]

    def load(self, path: str, **kwargs: Any) -> LoadResult:
        import transformers  # when loading (see base.transformers_class)
        from transformers import AutoConfig

        trust_remote_code = bool(kwargs.get("trust_remote_code", False))
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        translation = translate(kwargs, config, transformers.__version__)
        attempts: list[Attempt] = []
        for route, cls in self.routes(config, trust_remote_code=trust_remote_code):
            try:
                result = load_with_info(cls, path, strategy=self.name, route=route, **translation.kwargs)
            except Exception as exc:  # each route's own error is the point of the report
                attempts.append(Attempt(route, type(exc).__name__, str(exc)))
                continue
            problem = shortfall(result.model, config)
            if problem:
                attempts.append(Attempt(route, "Unusable", problem))
                del result
                gc.collect()
                continue
            attempts.append(Attempt(route))
            result.attempts = attempts
            result.translations = translation.notes
            return result
        raise LoadFailed(attempts)
