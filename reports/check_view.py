"""What `compat-matrix check` prints by default: the upgrade view (reports/diff.py) one line per
cause, not per cell, worst first, so the answer to "what happens if we upgrade?" fits a screen.

`format_upgrade` in diff.py stays the per-cell listing (`check --cells`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from reports.causes import cell_signature, scope, silent_signature, stopped_probes, stops_note
from reports.dependencies import DependencyChange
from reports.diff import (DRIFT_ERROR, SilentChange, StatusChange, SurfaceLoss, UpgradeView, describe_surface,
                          drifted_checkpoints, unusable_checkpoints, upgrade_exit_code)
from reports.report import Cell
from reports.signature import Signature, mask, signature
from reports.status import SYMBOL, probe_rank, rank

SCREEN_LINES = 60
"""What `check` prints by default fits this many lines, its drift section included: the breaks'
causes first, then one more cause per direction in turn while lines remain; the rest are counted."""

LINE_CHARS = 300
"""A cause's line is cut to this many characters (an error's first line may name the argument
that matters late in the sentence)."""

T = TypeVar("T")


@dataclass(frozen=True)
class CauseLine:
    """One cause of one direction: what it is, how bad, how many cells, which."""

    title: str
    status: str
    cells: tuple[Cell, ...]
    """The cells it covers (the newer release's, except for a fix: the older one's failing cell)."""

    @property
    def scope(self) -> str:
        return scope(
            {
                "models": sorted({c.model for c in self.cells}),
                "strategies": sorted({c.strategy for c in self.cells}),
                "load_kwargs": sorted({c.load_kwargs for c in self.cells}),
                "probes": sorted({c.probe for c in self.cells}, key=probe_rank),
            }
        )


def group(items: Iterable[T], key: Callable[[T], Signature | str], cell: Callable[[T], Cell],
          title: Callable[[Signature | str], str], status: Callable[[T], str]) -> list[CauseLine]:
    """Items with the same key become one line; worst status first, then most cells."""
    groups: dict[Signature | str, list[T]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    lines = [
        CauseLine(title(k) + (stops_note(stopped_probes(k, cells)) if isinstance(k, Signature) else ""),
                  max((status(i) for i in members), key=rank), cells)
        for k, members in groups.items()
        for cells in [tuple(cell(i) for i in members)]
    ]
    return sorted(lines, key=lambda line: (-rank(line.status), -len(line.cells), line.title))


@dataclass(frozen=True)
class Section:
    """One direction of the upgrade (breaks, fixes, ...) and its causes."""

    label: str
    """Short, for the header's counts."""
    title: str
    causes: list[CauseLine]
    left_out: int = 0
    """Cells not listed: a cross-release section leaves out failures the reading release's own cells have."""
    left_out_why: str = ""

    @property
    def cells(self) -> int:
        return sum(len(cause.cells) for cause in self.causes)


def by_cause(view: UpgradeView, everything: bool = False) -> list[Section]:
    """Each direction of the view, grouped by cause, worst direction first; empty ones are left out.
    A cross-release section lists only the failures the reading release's own cells do not have
    (counting the others), unless `everything`."""
    names = {n for c in _all_cells(view) for n in (c.model, c.hub_id)}
    own = {_route(c): _same_failure(c, names) for c in view.own_failures}

    def news(cells: list[Cell]) -> tuple[list[Cell], int]:
        """The cross-release failures that the reader's own cell of the same route and probe lacks."""
        kept = cells if everything else [c for c in cells if own.get(_route(c)) != _same_failure(c, names)]
        return kept, len(cells) - len(kept)

    def checkpoint_section(label: str, title: str, cells: list[Cell]) -> Section:
        kept, left_out = news(cells)
        reader = cells[0].transformers if cells else ""
        return Section(label, title, checkpoints(kept), left_out, f"{reader}'s own cells fail the same way")

    def error_title(sig: Signature | str) -> str:
        assert isinstance(sig, Signature)
        return f"{sig.stage}: " + (f"{sig.error_type}: " if sig.error_type else "") + sig.text

    def changes(items: Sequence[StatusChange], side: Callable[[StatusChange], Cell], was: str = "") -> list[CauseLine]:
        return group(items, lambda c: cell_signature(side(c), names), side,
                     lambda sig: was + error_title(sig), lambda c: c.after.status)

    def checkpoints(cells: Sequence[Cell]) -> list[CauseLine]:
        return group(cells, lambda c: cell_signature(c, names), lambda c: c, error_title, lambda c: c.status)

    def loss_key(loss: SurfaceLoss) -> str:
        return f"{loss.path}: {mask(describe_surface(loss.after), names)}"

    def silent_key(change: SilentChange) -> Signature:
        return silent_signature(change, names)

    def apart_key(change: StatusChange) -> str:
        side = change.before if change.before.status == "skipped" else change.after
        reason = mask(side.message, names)
        return f"{change.before.status} -> {change.after.status} ({side.transformers} {side.status}: {reason})"

    old, new = view.from_release, view.to_release
    drifted = [c for c in view.breaks if c.after.error_type == DRIFT_ERROR]
    sections = [
        Section("breaks", f"Breaks when upgrading {old} -> {new}",
                changes([c for c in view.breaks if c not in drifted], lambda c: c.after)),
        Section("drift", f"Drift when upgrading {old} -> {new}: the as-published checkpoint loads cleanly, {new} "
                "computes other numbers on it", changes(drifted, lambda c: c.after)),
        Section("API paths gone", f"API paths gone in {new}",
                group(view.surface_losses, loss_key, lambda loss: loss.cell, str, lambda loss: "fail")),
        Section("LoRA targets lost", f"LoRA target lists matching fewer modules or covering less in {new}",
                group(view.adapter_losses, silent_key, lambda s: s.cell, _text, lambda s: "fail")),
        checkpoint_section(f"{old} checkpoints", f"Checkpoints saved by {old} that {new} fails to use",
                           unusable_checkpoints(view.old_checkpoint_failures)),
        checkpoint_section(f"{new} checkpoints", f"Checkpoints saved by {new} that {old} fails to use",
                           unusable_checkpoints(view.new_checkpoint_failures)),
        checkpoint_section(f"{old} checkpoints drifting", f"Checkpoints saved by {old} that {new} reads cleanly but "
                           "computes other numbers on (drift)", drifted_checkpoints(view.old_checkpoint_failures)),
        checkpoint_section(f"{new} checkpoints drifting", f"Checkpoints saved by {new} that {old} reads cleanly but "
                           "computes other numbers on (drift)", drifted_checkpoints(view.new_checkpoint_failures)),
        Section("new requirements", f"New requirements in {new}: skipped for want of a package this environment lacks, "
                "not broken", group([r for r in view.requirements if r.starts], DependencyChange.title,
                                    lambda r: r.after, str, lambda r: "skipped")),
        Section("requirements dropped", f"Requirements dropped in {new}: cells that needed a package in {old} run",
                group([r for r in view.requirements if not r.starts], DependencyChange.title, lambda r: r.after, str,
                      lambda r: r.after.status)),
        Section("fixes", "Fixed by upgrading", changes(view.fixes, lambda c: c.before, was="was ")),
        Section("silent changes", "Silent changes in cells that pass in both",
                group(view.silent, silent_key, lambda s: s.cell, _text, lambda s: "pass")),
        Section("not comparable", "Not comparable (no verdict on one side: skipped there, or a failing strategy gone)",
                group(view.not_comparable, apart_key, lambda c: c.after, str, lambda c: c.after.status)),
    ]
    return [section for section in sections if section.causes or section.left_out]


def _route(cell: Cell) -> tuple[str, str]:
    """(release, model-strategy-profile-probe): a cell's place whichever release wrote its checkpoint."""
    return cell.transformers, cell.cell_id.partition("@")[0]


def _same_failure(cell: Cell, names: set[str]) -> Signature:
    """What a failure is, wherever its checkpoint came from: a cross-release cell failing as the
    reader's own cell does has the same one."""
    return signature(cell.probe, cell.error_type, cell.message, False, names, cell.status, cell.details.get("root"))


def format_by_cause(view: UpgradeView, everything: bool = False, lines: int = SCREEN_LINES) -> str:
    """The default text of `check`: a header with counts, then per direction one line per cause
    (count, scope, what it is), worst first, in at most `lines` lines (`shown_causes`), the rest
    counted; cross-release sections leave out what the reading release's own cells already fail.
    `everything` (`check --all`) lists every cause of every section."""
    sections = by_cause(view, everything)
    counts = "".join(f"; {s.label}: {len(s.causes)} causes ({s.cells} cells)" for s in sections)
    verdict = "something breaks" if upgrade_exit_code(view) else "nothing breaks"
    text = [f"transformers {view.from_release} -> {view.to_release}: {view.compared} cells in both; {verdict}{counts}"]
    only = [(release, ids) for release, ids in ((view.from_release, view.only_in_from), (view.to_release, view.only_in_to))
            if ids]
    fixed = 1 + len(sections) + len(only) + 1 + (0 if sections else 1)
    shown = [len(s.causes) for s in sections] if everything else shown_causes(sections, lines - fixed)
    for section, count in zip(sections, shown):
        apart = f"; {section.left_out} more left out: {section.left_out_why} (--all lists them)" if section.left_out else ""
        text.append(f"{section.title}: {len(section.causes)} causes, {section.cells} cells{apart}")
        for cause in section.causes[:count]:
            line = f"  {SYMBOL.get(cause.status, '?')} {len(cause.cells):>4}  {cause.scope} · {cause.title}"
            text.append(line if len(line) <= LINE_CHARS else line[: LINE_CHARS - 1] + "…")
        rest = section.causes[count:]
        if rest:
            text.append(f"  … {len(rest)} more causes ({sum(len(c.cells) for c in rest)} cells; --all lists them)")
    text += [f"Only in {release}, not compared: {len(ids)} cells" for release, ids in only]
    if not sections:
        text.append("No differences.")
    text.append("Every cause: the same command with --all; every cell: with --cells")
    return "\n".join(text) + "\n"


def format_check(view: UpgradeView, drift: str = "", everything: bool = False, lines: int = SCREEN_LINES) -> str:
    """All `check` prints by default: the causes, then the drift section after a blank line, in
    `lines` lines together (the causes get what the drift section leaves)."""
    room = lines - (len(drift.splitlines()) + 1 if drift else 0)
    return format_by_cause(view, everything, room) + ("\n" + drift + "\n" if drift else "\n")


def shown_causes(sections: Sequence[Section], budget: int) -> list[int]:
    """How many causes each section lists in `budget` lines, a section that lists fewer than it has
    taking one more line to count the rest: the breaks first, as many as fit, then one more cause per
    section in turn, worst section first."""
    shown = [0] * len(sections)

    def cost() -> int:
        return sum(shown) + sum(1 for section, n in zip(sections, shown) if n < len(section.causes))

    def grow(i: int) -> bool:
        if shown[i] >= len(sections[i].causes):
            return False
        shown[i] += 1
        if cost() <= budget:
            return True
        shown[i] -= 1
        return False

    for i, section in enumerate(sections):
        if section.label == "breaks":
            while grow(i):
                pass
    while any([grow(i) for i in range(len(sections))]):
        pass
    return shown


def _text(sig: Signature | str) -> str:
    return sig.text if isinstance(sig, Signature) else sig


def _all_cells(view: UpgradeView) -> list[Cell]:
    cells = [c for change in (*view.breaks, *view.fixes, *view.not_comparable) for c in (change.before, change.after)]
    return cells + [s.cell for s in view.silent] + [loss.cell for loss in view.surface_losses] + \
        list(view.old_checkpoints) + list(view.new_checkpoints)
