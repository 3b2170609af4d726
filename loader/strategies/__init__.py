"""Every loading strategy, by name: the one registry the harness and users read."""

from __future__ import annotations

from loader.strategies.auto import AUTO_STRATEGIES
from loader.strategies.base import Strategy
from loader.strategies.explicit import ExplicitClassStrategy
from loader.strategies.smart import SmartStrategy

STRATEGIES: dict[str, Strategy] = {
    s.name: s for s in (*AUTO_STRATEGIES, ExplicitClassStrategy(), SmartStrategy())
}

__all__ = ["STRATEGIES", "Strategy"]
