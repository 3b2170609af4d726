"""Errors a strategy raises, so callers can tell 'absent here' from 'broken here'."""

from __future__ import annotations

from loader.result import Attempt


class StrategyUnsupported(Exception):
    """The strategy's class does not exist in the installed transformers release."""


class LoadFailed(Exception):
    """Every route of a fallback chain failed; `attempts` keeps each route's own error."""

    def __init__(self, attempts: list[Attempt]):
        self.attempts = attempts
        lines = [f"{a.path}: {a.error_type}: {a.message}" for a in attempts]
        super().__init__("no route loaded a usable model:\n  " + "\n  ".join(lines))
