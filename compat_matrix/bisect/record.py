"""A bisected boundary as a matrix.yaml expectation: narrow the one that covers the failing side, or
add one. ruamel.yaml's round trip locates the lines; only those lines change, so comments, anchors
and hand-wrapped layout stay as they were.

The failing side of a boundary is the one whose status is `fail`, `error` or `unsupported`; its
range ends at the boundary (`>=first_bad` when the newer releases fail, `<first_good` when the
older ones do), and a comment on the `transformers:` line says what it rests on. A cross-release
bisect puts the range on the side it walked: `transformers:` (the readers, with `saved_by` the one
writer) or `saved_by:` (the writers, with `transformers` the one reader); only an expectation that
names `saved_by` is narrowed then, since one without it covers same-release cells too.

A boundary where both sides fail, for another cause on each (`proposals`), splits the ranges of the
two expectations that record the two causes (the ones covering A and B) at the boundary: the one
tried first ends there, the other is moved only where it does not reach it. Where one expectation
covers both causes, or a side has none, there is nothing to split and nothing is written.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.specifiers import Specifier, SpecifierSet
from packaging.version import Version
from ruamel.yaml import YAML

from compat_matrix.bisect.run import CrossAxis
from compat_matrix.bisect.search import Boundary
from compat_matrix.spec.cells import Cell
from compat_matrix.spec.schema import Expectation, Matrix

FAILING = ("fail", "error", "unsupported")


@dataclass
class Proposal:
    """One expectation to write: a new one for `model`, or `replaces` an existing one (narrowed)."""

    model: str
    status: str
    transformers: str
    comment: str
    reason: str
    strategies: list[str] = field(default_factory=list)
    probes: list[str] = field(default_factory=list)
    load_kwargs: list[str] = field(default_factory=list)
    replaces: Expectation | None = None
    saved_by: str = ""
    """The writers' range, for cross-release cells."""
    walks: str = "transformers"
    """The key holding the bisected range (the one a narrowing edits): `transformers` or `saved_by`."""


def _bound(failing_newer: bool, first_new: str) -> Specifier:
    return Specifier(f">={first_new}" if failing_newer else f"<{first_new}")


def narrowed(existing: str, failing_newer: bool, first_new: str) -> str | None:
    """`existing` with its bound on the boundary's side replaced; None when it has no plain bounds there."""
    specs = list(SpecifierSet(existing)) if existing else []
    if any(s.operator in ("==", "~=", "===") for s in specs):
        return None
    side = (">", ">=") if failing_newer else ("<", "<=")
    kept = [s for s in specs if s.operator not in side]
    return ",".join(sorted([str(s) for s in kept] + [str(_bound(failing_newer, first_new))], key=lambda s: s[0] != ">"))


def proposals(matrix: Matrix, group: list[Boundary], cells: dict[str, Cell], tested: int,
              axis: CrossAxis | None = None) -> list[Proposal]:
    """What `--record` writes for a group of cells sharing one boundary: a status boundary's
    expectation (`propose`), or a cause boundary's split (`propose_split`). A cause boundary is
    split per model: one cause is often recorded by other expectations for other models."""
    before, after = group[0].before, group[0].after
    if before is None or after is None or before.status not in FAILING or after.status not in FAILING:
        return [p] if (p := propose(matrix, group, cells, tested, axis)) is not None else []
    return [p for part in _by_model(group, cells).values() for p in propose_split(matrix, part, cells, tested, axis)]


def _by_model(group: list[Boundary], cells: dict[str, Cell]) -> dict[str, list[Boundary]]:
    by_model: dict[str, list[Boundary]] = {}
    for boundary in group:
        by_model.setdefault(cells[boundary.cell].model, []).append(boundary)
    return by_model


def unsplit(matrix: Matrix, group: list[Boundary], cells: dict[str, Cell], axis: CrossAxis | None = None) -> list[str]:
    """For a cause boundary `--record` cannot write and the matrix does not already split at: per
    model, what stands in the way (said, so that no boundary is dropped silently)."""
    first = group[0]
    if not _is_boundary(first):
        return []
    assert first.before is not None and first.after is not None and first.last_good and first.first_bad
    if first.before.status not in FAILING or first.after.status not in FAILING:
        return []
    notes = []
    for model, part in _by_model(group, cells).items():
        old, last, after, new = (_covering(matrix, part, cells, side, axis) for side in
                                 (first.tested[0], first.last_good, first.first_bad, first.tested[-1]))
        if (old is not None and old != new and (last, after) == (old, new)) or propose_split(matrix, part, cells, 0, axis):
            continue
        why = ("one expectation covers both causes" if old is not None and old == new else
               "one of the causes has no expectation of its own" if old is None or new is None else
               "the expectations cannot be narrowed to it (an `==` range, or another status)")
        notes.append(f"{model}: the cause changes between {first.last_good} and {first.first_bad}, but {why}: "
                     f"split the range by hand")
    return notes


def _is_boundary(boundary: Boundary) -> bool:
    return (boundary.verdict == "boundary" and boundary.before is not None and boundary.after is not None
            and bool(boundary.last_good) and bool(boundary.first_bad))


def _pair(axis: CrossAxis | None, side: str) -> tuple[str, str | None]:
    """(reader, writer) of the cells when the walked axis is at release `side`."""
    if axis is None:
        return side, None
    return (side, axis.saved_by) if axis.saved_by else (axis.loaded_by or "", side)


def _covering(matrix: Matrix, group: list[Boundary], cells: dict[str, Cell], side: str,
              axis: CrossAxis | None) -> Expectation | None:
    """The one expectation covering every cell of the group at release `side`; None when none does or
    several do (one edit would not cover them all), or when a cross-release cell's names no `saved_by`
    (it covers same-release cells too, which this bisect did not test)."""
    reader, writer = _pair(axis, side)
    found = {matrix.expectation_for(matrix.model(cells[b.cell].model), reader, cells[b.cell].strategy,
                                    cells[b.cell].probe, cells[b.cell].profile, writer) for b in group}
    current = found.pop() if len(found) == 1 else None
    return current if current is not None and (axis is None or current.saved_by) else None


def _narrowing(current: Expectation, failing_newer: bool, first_new: str, comment: str, model: str,
               walks: str) -> Proposal | None:
    """`current` with its walked range ending at the boundary; None when that range has no plain bound there."""
    spec = narrowed(getattr(current, walks), failing_newer, first_new)
    if spec is None:
        return None
    return Proposal(model, current.status, spec if walks == "transformers" else current.transformers, comment,
                    current.reason, replaces=current, saved_by=spec if walks == "saved_by" else current.saved_by,
                    walks=walks)


def propose(matrix: Matrix, group: list[Boundary], cells: dict[str, Cell], tested: int,
            axis: CrossAxis | None = None) -> Proposal | None:
    """The expectation for a group of cells sharing one boundary; None when no status expresses it
    (both sides pass with a silent change, or both fail). With `axis`, the cells are cross-release ones."""
    first = group[0]
    if not _is_boundary(first):
        return None
    before, after = first.before, first.after
    assert before is not None and after is not None and first.last_good and first.first_bad
    if (before.status in FAILING) == (after.status in FAILING):
        return None
    walks = axis.walks if axis else "transformers"
    b_newer = Version(first.first_bad) > Version(first.last_good)
    first_new = first.first_bad if b_newer else first.last_good
    failing = after if after.status in FAILING else before
    failing_newer = (failing is after) == b_newer
    models = {cells[b.cell].model for b in group}
    today = dt.date.today().isoformat()
    comment = f"bisect {today}: last good {first.last_good}, first bad {first.first_bad} ({tested} releases tested)"
    failing_side = first.first_bad if failing is after else first.last_good
    current = _covering(matrix, group, cells, failing_side, axis)
    if current is not None and current.status == failing.status:
        found = _narrowing(current, failing_newer, first_new, comment, sorted(models)[0], walks)
        if found is not None:
            return found
    if len(models) != 1:  # a new expectation is written under one model
        return None
    model = models.pop()
    entry = matrix.model(model)
    message = " ".join((failing.message or "").split())
    reason = f"{failing.error_type}: {message}" if failing.error_type else message or f"{failing.status} (bisected)"
    chosen = [cells[b.cell] for b in group]
    bound = str(_bound(failing_newer, first_new))
    return Proposal(
        model, failing.status, f"=={axis.loaded_by}" if axis and axis.loaded_by else bound, comment, reason[:300],
        strategies=sorted({c.strategy for c in chosen}, key=list(matrix.strategies).index),
        probes=sorted({c.probe for c in chosen}, key=list(matrix.probes).index),
        load_kwargs=sorted({c.profile for c in chosen}) if len({c.profile for c in chosen}) < len(entry.load_kwargs) else [],
        saved_by=(f"=={axis.saved_by}" if axis.saved_by else bound) if axis else "", walks=walks,
    )


def propose_split(matrix: Matrix, group: list[Boundary], cells: dict[str, Cell], tested: int,
                  axis: CrossAxis | None = None) -> list[Proposal]:
    """A boundary where both sides fail for another cause, each recorded by its own expectation (the
    ones covering A and B): the one tried first ends at the boundary (it shadows the other there, so
    it alone decides where the split lies), and the other reaches the boundary where it does not yet.
    Nothing otherwise: the later one may cover other cells, which must keep it beyond the boundary."""
    first = group[0]
    if not _is_boundary(first):
        return []
    assert first.before is not None and first.after is not None and first.last_good and first.first_bad
    old = _covering(matrix, group, cells, first.tested[0], axis)
    new = _covering(matrix, group, cells, first.tested[-1], axis)
    if old is None or new is None or old == new or (old.status, new.status) != (first.before.status, first.after.status):
        return []
    walks = axis.walks if axis else "transformers"
    b_newer = Version(first.first_bad) > Version(first.last_good)
    first_new = first.first_bad if b_newer else first.last_good
    today = dt.date.today().isoformat()
    comment = (f"bisect {today}: another cause, same status: last with the old cause {first.last_good}, "
               f"first with the new {first.first_bad} ({tested} releases tested)")
    model = sorted({cells[b.cell].model for b in group})[0]
    order = matrix.expectation_order(matrix.model(model), axis is not None)
    # (expectation, whether its side is the newer releases, the release on its side of the boundary)
    sides = sorted([(old, not b_newer, first.last_good), (new, b_newer, first.first_bad)], key=lambda s: order.index(s[0]))
    (front, front_newer, _), (back, back_newer, back_side) = sides
    edits = [_narrowing(front, front_newer, first_new, comment, model, walks)]
    if not _matches_all(back, group, cells, back_side, axis):
        edits.append(_narrowing(back, back_newer, first_new, comment, model, walks))
    return [p for p in edits if p is not None]


def _matches_all(expectation: Expectation, group: list[Boundary], cells: dict[str, Cell], side: str,
                 axis: CrossAxis | None) -> bool:
    reader, writer = _pair(axis, side)
    return all(expectation.matches(cells[b.cell].model, reader, cells[b.cell].strategy, cells[b.cell].probe,
                                   cells[b.cell].profile, writer) for b in group)


def _item_lines(proposal: Proposal, indent: str) -> list[str]:
    """A new expectation as list-item lines; strings JSON-quoted (valid YAML, nothing to escape by hand)."""
    lines = [f"{indent}- status: {proposal.status}"]
    for key in ("strategies", "probes", "load_kwargs"):
        values = getattr(proposal, key)
        if values:
            lines.append(f"{indent}  {key}: [{', '.join(values)}]")
    for key in ("transformers", "saved_by"):
        value = getattr(proposal, key)
        if value:
            comment = f"  # {proposal.comment}" if key == proposal.walks else ""
            lines.append(f"{indent}  {key}: {json.dumps(value)}{comment}")
    lines.append(f"{indent}  reason: {json.dumps(proposal.reason)}")
    return lines


def snippet(proposal: Proposal) -> str:
    """The YAML to paste under the model's `expectations:` (or what replaces the existing one's range)."""
    if proposal.replaces:
        key = proposal.walks
        return (f"# models: {proposal.model}: in the expectation '{proposal.replaces.reason[:60]}...', set\n"
                f"{key}: {json.dumps(getattr(proposal, key))}  # {proposal.comment}\n")
    return f"# models: {proposal.model}: add first under its expectations:\n" + "\n".join(_item_lines(proposal, "")) + "\n"


def _same(item: Any, expectation: Expectation) -> bool:
    try:
        return Expectation.model_validate(_plain(item)) == expectation
    except ValueError:
        return False


def _plain(item: Any) -> Any:
    if isinstance(item, dict):
        return {k: _plain(v) for k, v in item.items()}
    if isinstance(item, list):
        return tuple(_plain(v) for v in item)
    return item


def _edit(lines: list[str], data: Any, proposal: Proposal) -> tuple[int, list[str], int, str]:
    """(first line, replacement lines, how many lines they replace, what was done) for one proposal.

    ruamel.yaml's round trip gives every key's line and column; the edit itself touches only those
    lines, so flow mappings wrapped by hand, anchors and comments elsewhere stay byte for byte."""
    model = next(m for m in data["models"] if m["key"] == proposal.model)
    if proposal.replaces is not None:
        for seq in (model.get("expectations"), data.get("expectations")):
            hit = next((item for item in (seq or []) if _same(item, proposal.replaces)), None)
            if hit is None:
                continue
            key = proposal.walks
            value = getattr(proposal, key)
            named = "" if key == "transformers" else f"{key} "
            what = f"{proposal.model}: narrowed {named}'{getattr(proposal.replaces, key)}' -> '{value}'"
            if key in hit:
                row, col = hit.lc.value(key)
                old_comment = lines[row].split("#", 1)[1].strip() if "#" in lines[row][col:] else ""
                old_comment = "" if old_comment.startswith("bisect ") else old_comment  # an earlier bisect's: replaced
                text = f"{json.dumps(value)}  # {proposal.comment}" + (f"; {old_comment}" if old_comment else "")
                return row, [lines[row][:col] + text], 1, what
            row, col = hit.lc.key("status")
            return row + 1, [f"{' ' * col}{key}: {json.dumps(value)}  # {proposal.comment}"], 0, what
    what = f"{proposal.model}: added {proposal.status} for transformers '{proposal.transformers}'"
    if model.get("expectations"):
        row, col = model["expectations"].lc.item(0)
        return row, _item_lines(proposal, " " * (col - 2)), 0, what
    row, col = model.lc.key("key")
    return row + 1, [f"{' ' * col}expectations:", *_item_lines(proposal, " " * (col + 2))], 0, what


def record(matrix_file: Path, proposals: list[Proposal]) -> list[str]:
    """Write `proposals` into the file in place, bottom up so earlier line numbers stay right."""
    text = matrix_file.read_text(encoding="utf-8")
    data = YAML().load(text)
    lines = text.splitlines()
    # cells of several models can share one top-level expectation: the same edit once
    unique = {(row, tuple(new), replaced): what for row, new, replaced, what in (_edit(lines, data, p) for p in proposals)}
    edits = sorted(((row, list(new), replaced, what) for (row, new, replaced), what in unique.items()), key=lambda e: -e[0])
    for row, new, replaced, _ in edits:
        lines[row:row + replaced] = new
    matrix_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [what for *_, what in reversed(edits)]
