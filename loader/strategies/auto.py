"""Strategies that go through one `AutoModel*` class, as most training scripts do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loader.loading import load_with_info
from loader.result import Attempt, LoadResult
from loader.strategies.base import transformers_class


@dataclass(frozen=True)
class AutoClassStrategy:
    """Load with `<auto_class>.from_pretrained`; absent class -> unsupported."""

    name: str
    auto_class: str

    def load(self, path: str, **kwargs: Any) -> LoadResult:
        cls = transformers_class(self.auto_class)
        route = f"auto:{self.auto_class}"
        result = load_with_info(cls, path, strategy=self.name, route=route, **kwargs)
        result.attempts.append(Attempt(route))
        return result


AUTO_STRATEGIES = (
    AutoClassStrategy("auto_causal_lm", "AutoModelForCausalLM"),
    AutoClassStrategy("auto_model", "AutoModel"),
    AutoClassStrategy("auto_image_text_to_text", "AutoModelForImageTextToText"),
    AutoClassStrategy("auto_vision2seq", "AutoModelForVision2Seq"),
)
