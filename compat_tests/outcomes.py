"""Every exception that ends a cell with a status, at the bottom of `compat_tests`: fixtures,
probes and the harness all import them from here (and nothing else from each other for this)."""

from __future__ import annotations


class CellSkipped(Exception):
    """The cell needs something this run lacks (the network, a GPU); the message says what."""


class NeedsPackage(CellSkipped):
    """The cell needs an optional package this environment lacks (compat_tests/needs.py decides it)."""

    def __init__(self, package: str, why: str) -> None:
        super().__init__(f"needs {package}: {why}")
        self.package = package


class WriterFailed(CellSkipped):
    """The release that writes what this cell reads (an adapter) tried and could not: its note says why.
    Unlike a writer that has not run yet, this is that release's outcome for this recipe, so the results
    store keeps the reader's skip (`status`, `error_type`: the writer's)."""

    def __init__(self, message: str, status: str, error_type: str | None) -> None:
        super().__init__(message)
        self.status, self.error_type = status, error_type


class CellUnsupported(Exception):
    """The installed release lacks the model type or the strategy's class."""


class HarnessError(Exception):
    """Our own machinery broke (e.g. a tiny checkpoint could not be built): status `error`."""


class CellFailed(Exception):
    """A check failed before any probe could run (e.g. another release's checkpoint is unreadable)."""


class CheckFailed(AssertionError):
    """A probe check did not hold; the message says which check and by how much: status `fail`."""
