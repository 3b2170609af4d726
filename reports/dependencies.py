"""Dependency changes: a release from which a cell starts (or stops) needing an optional package that
the environment lacks (`details.needs`). Neither a break nor a fix: the cell did not run for want of
a package, which installing it answers; the report, `check` and `bisect` state it as its own finding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reports.report import Cell

_EVIDENCE = re.compile(r": (?=[A-Z]\w*(?:Error|Exception|Warning): )")
"""Where the harness's summary of why a package is needed ends and the raised error it saw begins."""


@dataclass(frozen=True)
class DependencyChange:
    """One cell whose need for a package differs between an older and a newer release."""

    before: Cell
    after: Cell
    package: str
    starts: bool
    """True: the newer release needs the package; False: the older one did, the newer runs without it."""

    @property
    def needing(self) -> Cell:
        """The side that needs the package."""
        return self.after if self.starts else self.before

    def title(self) -> str:
        """`smolvlm needs torchvision from 5.25.0 (SmolVLMProcessor requires a video processor)`."""
        verb = "needs" if self.starts else "no longer needs"
        why = why_needed(self.needing)
        return f"{self.after.model} {verb} {self.package} from {self.after.transformers}" + (f" ({why})" if why else "")


def why_needed(cell: Cell) -> str:
    """The harness's summary of why a skipped cell needs its package, without the raised error it saw."""
    text = cell.message.removeprefix(f"needs {cell.needs}: ") if cell.needs else cell.message
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    found = _EVIDENCE.search(first)
    return first[: found.start()] if found else first


def dependency_change(before: Cell, after: Cell) -> DependencyChange | None:
    """The change in what the same cell needs from `before`'s release to `after`'s, or None: a cell
    starts needing a package where it ran before (or needed another one), and stops where it passes now.
    A cell that fails or is unsupported now may have stopped before the point that needed the package
    (TRL's image-text path in 5.24.0 behind a failed load), so it proves nothing either way."""
    if after.needs and after.needs != before.needs and (before.status != "skipped" or before.needs):
        return DependencyChange(before, after, after.needs, True)
    if before.needs and before.needs != after.needs and after.status == "pass":
        return DependencyChange(before, after, before.needs, False)
    return None
