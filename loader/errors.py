"""Errors a strategy raises, so callers can tell 'absent here' from 'broken here'."""

from __future__ import annotations

from loader.result import Attempt


class StrategyUnsupported(Exception):
    """The strategy's class does not exist in the installed transformers release."""


class NoArchitectureNamed(StrategyUnsupported):
    """The config, as the installed release reads it, names no class (`config.architectures` is
    empty): nothing for an explicit-class loader to use. Unsupported for a checkpoint that never
    named one; a break for one that did (a release wrote or read the field elsewhere)."""


def _first_line(message: str | None, limit: int = 300) -> str:
    """Auto classes list every known config in their error; the first line says what matters."""
    line = (message or "").strip().splitlines()[0] if (message or "").strip() else ""
    return line if len(line) <= limit else line[:limit] + "..."


class LoadFailed(Exception):
    """Every route of a fallback chain failed; `attempts` keeps each route's own error."""

    def __init__(self, attempts: list[Attempt]):
        self.attempts = attempts
        lines = [f"{a.path}: {a.error_type}: {_first_line(a.message)}" for a in attempts]
        super().__init__("no route loaded a usable model:\n  " + "\n  ".join(lines))
