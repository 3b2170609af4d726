"""matrix.yaml's expectation ranges against the history: where a range says a failure that the data
does not show, or the data shows the failure (same cause) outside the range, and the range the data
gives instead.

An expectation's cells are the same-release and as-published cells it is the first match for (a
history run with `--published-only` has little else), its `transformers:` range left aside; a
release where they were all skipped or stopped (`error`) is left out. It holds in a release when
one of them there has its status for one of the causes seen inside the range (outside it, one no
other expectation explains). Only a failing expectation without `saved_by` is checked
(cross-release ranges span two axes). The corrected range is exact where the history has every
release between two neighbours: `<first release where it no longer holds`, `>=first release where
it holds`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from compat_matrix.bisect.record import Proposal
from compat_matrix.spec.schema import Expectation, Matrix
from reports.merge import version_key
from reports.release_ranges import describe, runs
from reports.report import Cell, Report

FAILING = ("fail", "unsupported", "skipped", "error")


@dataclass(frozen=True)
class Disagreement:
    """An expectation whose range is wrong in `wrong` releases (of the history's `releases`)."""

    models: tuple[str, ...]
    expectation: Expectation
    holds: tuple[str, ...]
    wrong: tuple[str, ...]
    releases: tuple[str, ...]
    corrected: str | None
    """The range the data gives (None: not one range, or never holds)."""

    def describe(self) -> str:
        e = self.expectation
        head = (f"{', '.join(self.models)}: {e.status} for transformers '{e.transformers or 'every release'}' "
                f"({e.reason[:80]}{'...' if len(e.reason) > 80 else ''})")
        wrong_in = [r for r in self.wrong if _in(r, e.transformers)]
        wrong_out = [r for r in self.wrong if not _in(r, e.transformers)]
        lines = [head]
        if wrong_in:
            lines.append(f"  in range but no cell {e.status} for its cause: {describe(wrong_in, self.releases)}")
        if wrong_out:
            lines.append(f"  {e.status} for the same cause outside the range: {describe(wrong_out, self.releases)}")
        lines.append(f"  the data: '{self.corrected}'" if self.corrected is not None else
                     f"  the data: holds in {describe(self.holds, self.releases) or 'no release'}: not one range, "
                     "not recorded")
        return "\n".join(lines)

    def proposal(self) -> Proposal | None:
        if self.corrected is None:
            return None
        return Proposal(model=self.models[0], status=self.expectation.status, transformers=self.corrected,
                        comment=f"history: {len(self.releases)} releases {self.releases[0]}..{self.releases[-1]}",
                        reason=self.expectation.reason, replaces=self.expectation)


def _in(release: str, specifier: str) -> bool:
    if not specifier:
        return True
    try:
        return Version(release) in SpecifierSet(specifier)
    except InvalidVersion:
        return False


def _scope(matrix: Matrix, cells: list[Cell]) -> dict[int, tuple[Expectation, list[Cell]]]:
    """{id of expectation: (it, the cells it is the first match for, its range left aside)}."""
    found: dict[int, tuple[Expectation, list[Cell]]] = {}
    keys = {m.key for m in matrix.models}
    for cell in cells:
        if (cell.cross_release and not cell.as_published) or cell.model not in keys:
            continue
        entry = matrix.model(cell.model)
        for expectation in matrix.expectation_order(entry):
            if expectation.saved_by:
                continue
            if expectation.status in FAILING and expectation.model_copy(update={"transformers": ""}).matches(
                    cell.model, cell.transformers, cell.strategy, cell.probe, cell.load_kwargs, None, cell.libraries):
                found.setdefault(id(expectation), (expectation, []))[1].append(cell)
                break
            if expectation.matches(cell.model, cell.transformers, cell.strategy, cell.probe, cell.load_kwargs, None,
                                   cell.libraries):
                break
    return found


def corrected_range(holds: set[str], releases: list[str]) -> str | None:
    """One PEP 440 range over `releases` (ordered) covering exactly `holds`; None when it takes more than one."""
    found = runs(holds, releases)
    if len(found) != 1:
        return None
    (a, b), last = found[0], len(releases) - 1
    parts = ([f">={releases[a]}"] if a > 0 else []) + ([f"<{releases[b + 1]}"] if b < last else [])
    return ",".join(parts)


def check_expectations(matrix: Matrix, report: Report) -> list[Disagreement]:
    """Every failing expectation whose range the report's releases contradict."""
    cause_of = {key: cause.signature for cause in report.causes for key in cause.cells}
    found = []
    for expectation, cells in _scope(matrix, list(report.cells)).values():
        by_release: dict[str, list[Cell]] = defaultdict(list)
        for cell in cells:
            by_release[cell.transformers].append(cell)
        releases = sorted((r for r in by_release if _version(r) and _decides(by_release[r], expectation)), key=version_key)
        signatures = {cause_of.get(f"{c.transformers}/{c.cell_id}") for r in releases if _in(r, expectation.transformers)
                      for c in by_release[r] if c.status == expectation.status}
        holds = {r for r in releases if any(c.status == expectation.status
                                            and cause_of.get(f"{c.transformers}/{c.cell_id}") in signatures
                                            and (_in(r, expectation.transformers) or c.expected is None)
                                            for c in by_release[r])}
        wrong = [r for r in releases if (r in holds) != _in(r, expectation.transformers)]
        if not wrong:
            continue
        corrected = corrected_range(holds, releases) if holds else None
        models = tuple(dict.fromkeys(c.model for c in cells))
        found.append(Disagreement(models, expectation, tuple(r for r in releases if r in holds), tuple(wrong),
                                  tuple(releases), corrected))
    return found


def _decides(cells: list[Cell], expectation: Expectation) -> bool:
    """Whether a release's cells can tell if `expectation` holds there: one of them ran (passed or
    failed) or has its status; cells that were all skipped (no network, a missing package) or stopped
    by `error` say nothing about the failure it names."""
    return any(c.status in ("pass", "fail", "unsupported") or c.status == expectation.status for c in cells)


def _version(release: str) -> bool:
    try:
        Version(release)
    except InvalidVersion:
        return False
    return True
