"""`getattr(transformers, config.architectures[0])`: what `model_cls.from_pretrained` did in VLM-R1."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loader.errors import NoArchitectureNamed
from loader.loading import load_with_info
from loader.result import Attempt, LoadResult
from loader.strategies.base import transformers_class


@dataclass(frozen=True)
class ExplicitClassStrategy:
    """Load with the class the checkpoint's config names."""

    name: str = "explicit_class"

    def load(self, path: str, **kwargs: Any) -> LoadResult:
        from transformers import AutoConfig  # when loading (see base.transformers_class)

        config = AutoConfig.from_pretrained(path, trust_remote_code=kwargs.get("trust_remote_code", False))
        architectures = getattr(config, "architectures", None) or []
        if not architectures:
            raise NoArchitectureNamed(f"{path}: config.architectures is empty; there is no explicit class to load")
        cls = transformers_class(architectures[0])
        route = f"explicit:{architectures[0]}"
        result = load_with_info(cls, path, strategy=self.name, route=route, **kwargs)
        result.attempts.append(Attempt(route))
        return result
