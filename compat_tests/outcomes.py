"""Exceptions that end a cell with a status other than pass/fail."""

from __future__ import annotations


class CellSkipped(Exception):
    """The cell needs something this run lacks (the network, a GPU); the message says what."""


class CellUnsupported(Exception):
    """The installed release lacks the model type or the strategy's class."""


class HarnessError(Exception):
    """Our own machinery broke (e.g. a tiny checkpoint could not be built): status `error`."""


class CellFailed(Exception):
    """A check failed before any probe could run (e.g. another release's checkpoint is unreadable)."""
