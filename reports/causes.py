"""Cells grouped by cause: what a person reads first.

A hundred failing cells are usually three causes. Failing cells (regressions first, then expected
failures), silent changes between consecutive tested releases, and fixes are grouped by their
signature (reports/signature.py); each group becomes one `Cause` with its scope, its releases, an
example and, for a regression, the expectation YAML that would record it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from reports.dependencies import dependency_change
from reports.diff import SilentChange, short_value, describe_silent, silent_changes
from reports.expectation_yaml import DIMENSIONS, FailingCell, expectation_entries, to_yaml
from reports.merge import version_key
from reports.release_ranges import describe
from reports.report import Cause, CauseKind, Cell, Change
from reports.signature import (BLOCKING_STAGES, CHECKPOINT_STAGE, LOAD_FAILED_PREFIX, Signature, mask, mask_numbers,
                               signature)
from reports.status import FAILING, meets_expectation, probe_rank, rank

KIND_ORDER: tuple[CauseKind, ...] = ("regression", "dependency", "expected", "silent", "fix")
"""The order causes are listed in: what needs action first."""

TITLE_CHARS = 240
"""A cause's title is one line of at most this many characters (an error's first line may name
the argument that matters late in the sentence)."""

NAMES_SHOWN = 3
"""A scope names up to this many values of a dimension, then counts them ("5 probes")."""

_NOUN = {"models": "models", "strategies": "strategies", "load_kwargs": "profiles", "probes": "probes"}


@dataclass(frozen=True)
class _Member:
    """One cell in a cause, with what the cause needs to know of it."""

    cell: Cell
    kind: CauseKind
    signature: Signature
    release: str
    """The release it counts in (for a silent change: the newer of the two)."""
    detail: str = ""
    """A silent change's description, or the reason of the expectation a fix no longer meets."""


def find_causes(
    cells: Sequence[Cell],
    regressions: Sequence[Change],
    fixes: Sequence[Change],
    releases: Sequence[str],
    first_bad: Mapping[str, str] | None = None,
) -> list[Cause]:
    """Every cause in `cells`, in KIND_ORDER, worst first within a kind.

    `first_bad` maps a cell id to the first bad release a bisect established for it; a cause whose
    cells agree on one shows it and its expectation YAML starts there."""
    names = {name for cell in cells for name in (cell.model, cell.hub_id)}
    regressed = {(c.transformers, c.cell_id) for c in regressions}
    members = [m for cell in cells if (m := _failing(cell, (cell.transformers, cell.cell_id) in regressed, names))]
    members += _silent(cells, releases, names)
    members += _dependencies(cells, releases)
    members += _fixed(cells, fixes)
    groups: dict[tuple[CauseKind, Signature], list[_Member]] = defaultdict(list)
    for member in members:
        groups[(member.kind, member.signature)].append(member)
    universe = _universe(cells)
    causes = [_cause(kind, sig, group, releases, universe, first_bad or {}) for (kind, sig), group in groups.items()]
    return sorted(causes, key=lambda c: (KIND_ORDER.index(c.kind), -rank(c.status), -c.breaks, c.title))


def cell_signature(cell: Cell, model_names: Iterable[str]) -> Signature:
    """The signature of a failing cell (the load's, for a probe the failed load kept from running);
    an as-published cell is the main grid's whoever wrote its checkpoint, so it shares its stage
    (and its cause) with the same failure in the `written_by` release itself."""
    return signature(cell.probe, cell.error_type, cell.message, cell.cross_release and not cell.as_published,
                     model_names, cell.status, cell.details.get("root"))


def stopped_probes(sig: Signature, cells: Sequence[Cell]) -> int:
    """How many probes a cause that fails before their own work kept from running (0 for other causes)."""
    if sig.stage == CHECKPOINT_STAGE:
        return len(cells)
    if sig.stage in BLOCKING_STAGES:
        return sum(1 for cell in cells if cell.message.startswith(LOAD_FAILED_PREFIX))
    return 0


def stops_note(stops: int) -> str:
    """` (stops 76 probes)` after a cause's title, or nothing where it stops none."""
    return f" (stops {stops} {'probe' if stops == 1 else 'probes'})" if stops else ""


def _failing(cell: Cell, regression: bool, names: set[str]) -> _Member | None:
    if not regression and cell.status not in FAILING:
        return None
    expected = cell.expected is not None and meets_expectation(cell.status, cell.expected.status)
    kind: CauseKind = "regression" if regression or not expected else "expected"
    return _Member(cell, kind, cell_signature(cell, names), cell.transformers)


def _silent(cells: Sequence[Cell], releases: Sequence[str], names: set[str]) -> list[_Member]:
    """Changes in cells that pass in two consecutive tested releases (loaded class, dtype, keys...)."""
    passing: dict[str, dict[str, Cell]] = defaultdict(dict)
    for cell in cells:
        if cell.status == "pass" and cell.as_published:
            passing[cell.transformers][cell.grid_id] = cell
    out: list[_Member] = []
    for older, newer in zip(releases, releases[1:]):
        for cell_id, after in passing[newer].items():
            before = passing[older].get(cell_id)
            for change in silent_changes(before, after) if before else []:
                out.append(_Member(after, "silent", silent_signature(change, names), newer,
                                   detail=f"{older} -> {newer}: {describe_silent(change)}"))
    return out


def _dependencies(cells: Sequence[Cell], releases: Sequence[str]) -> list[_Member]:
    """Cells that start (or stop) needing a package this machine lacks between consecutive tested releases."""
    by_release: dict[str, dict[str, Cell]] = defaultdict(dict)
    for cell in cells:
        if cell.as_published:
            by_release[cell.transformers][cell.grid_id] = cell
    out: list[_Member] = []
    for older, newer in zip(releases, releases[1:]):
        for cell_id, after in by_release[newer].items():
            before = by_release[older].get(cell_id)
            change = dependency_change(before, after) if before else None
            if change is not None:
                title = change.title()
                out.append(_Member(after, "dependency", Signature("dependency", change.package, title), newer, title))
    return out


def silent_signature(change: SilentChange, names: set[str]) -> Signature:
    """Field and how it moved; tensor names and API paths keep their words (only numbers masked),
    values are masked like messages (a class name change is one cause across models)."""
    if change.field in ("missing_keys", "unexpected_keys", "adapter_modules", "adapter_coverage", "adapter_trainable"):
        text = mask_numbers(describe_silent(change))
    elif change.field == "surface":
        before, after = (mask(short_value(v), names) for v in (change.before, change.after))
        text = f"surface {change.path}: {before} -> {after}"
    else:
        text = mask(describe_silent(change), names)
    return Signature(stage=f"silent {change.field}", error_type="", text=text)


def _fixed(cells: Sequence[Cell], fixes: Sequence[Change]) -> list[_Member]:
    by_key = {cell.key: cell for cell in cells}
    out: list[_Member] = []
    for fix in fixes:
        cell = by_key.get((fix.transformers, fix.cell_id))
        if cell is None:
            continue
        if fix.expected is not None:
            was = f"expected {fix.expected.status}: {fix.expected.reason}"
        else:
            was = f"{fix.baseline_status} in the baseline report"
        sig = Signature(stage="fixed", error_type="", text=was)
        out.append(_Member(cell, "fix", sig, cell.transformers, detail=fix.expected.reason if fix.expected else ""))
    return out


def _universe(cells: Sequence[Cell]) -> dict[str, dict[str, frozenset[str]]]:
    """Per dimension and model, every value the report has: an expectation leaves out a dimension
    that covers them all."""
    found: dict[str, dict[str, set[str]]] = {name: defaultdict(set) for name in DIMENSIONS}
    for cell in cells:
        found["models"][cell.model].add(cell.model)
        found["strategies"][cell.model].add(cell.strategy)
        found["load_kwargs"][cell.model].add(cell.load_kwargs)
        found["probes"][cell.model].add(cell.probe)
    return {name: {model: frozenset(values) for model, values in per.items()} for name, per in found.items()}


def _cause(
    kind: CauseKind,
    sig: Signature,
    members: list[_Member],
    releases: Sequence[str],
    universe: Mapping[str, Mapping[str, frozenset[str]]],
    first_bad_by_cell: Mapping[str, str],
) -> Cause:
    cells = [m.cell for m in members]
    order = {v: i for i, v in enumerate(releases)}
    seen_in = sorted({m.release for m in members}, key=lambda v: order.get(v, len(order)))
    # the failing load itself, not a probe it kept from running
    example = min(members, key=lambda m: (m.cell.message.startswith(LOAD_FAILED_PREFIX),
                                          order.get(m.release, 0), m.cell.cell_id)) if kind != "silent" else members[0]
    bisected = {first_bad_by_cell.get(c.cell_id) for c in cells}
    first_bad = bisected.pop() if len(bisected) == 1 else None
    status = max((c.status for c in cells), key=rank) if kind in ("regression", "expected", "dependency") else "pass"
    values = {
        "models": sorted({c.model for c in cells}),
        "strategies": sorted({c.strategy for c in cells}),
        "load_kwargs": sorted({c.load_kwargs for c in cells}),
        "probes": sorted({c.probe for c in cells}, key=probe_rank),
    }
    title = _title(sig, members[0], stopped_probes(sig, cells) if kind in ("regression", "expected") else 0)
    yaml_text = ""
    if kind == "regression":
        failing = [FailingCell((c.model, c.strategy, c.load_kwargs, c.probe), c.transformers, c.status,
                               c.saved_by if c.cross_release else None) for c in cells]
        said = _first_line(_example(example), TITLE_CHARS)
        reason = f"{sig.stage}: {said} (seen in {describe(seen_in, releases)}; say why, and link the upstream issue)"
        yaml_text = to_yaml(expectation_entries(failing, releases, universe, reason, first_bad))
    return Cause(
        id="c" + hashlib.sha1(f"{kind}|{sig.stage}|{sig.error_type}|{sig.text}".encode()).hexdigest()[:10],
        kind=kind,
        stage=sig.stage,
        error_type=sig.error_type,
        signature=sig.text,
        title=title,
        status=status,
        breaks=len({_break_key(m) for m in members}) if kind != "dependency" else 0,
        cells=tuple(sorted({f"{c.transformers}/{c.cell_id}" for c in cells})),
        models=tuple(values["models"]),
        strategies=tuple(values["strategies"]),
        load_kwargs=tuple(values["load_kwargs"]),
        probes=tuple(values["probes"]),
        releases=tuple(seen_in),
        # writers outside the report's releases (as-published `written_by`) by version, not in set order:
        # two reports of the same cells said them in different orders
        saved_by=tuple(sorted({c.saved_by for c in cells if c.cross_release and c.saved_by},
                              key=lambda v: (order.get(v, len(order)), version_key(v)))),
        scope=scope(values),
        release_ranges=_silent_ranges(members, releases) if kind == "silent" else describe(seen_in, releases),
        first_bad=first_bad,
        example_cell=f"{example.release}/{example.cell.cell_id}",
        example=_example(example),
        expectations=tuple(sorted({c.expected.reason for c in cells if c.expected and kind in ("expected", "fix")})),
        repro=tuple(sorted({c.expected.repro for c in cells if c.expected and c.expected.repro and kind == "expected"})),
        expectation_yaml=yaml_text,
    )


def _break_key(member: _Member) -> tuple[str, ...]:
    """A failed load is one break for all the probes it kept from running."""
    cell = member.cell
    if member.signature.stage == CHECKPOINT_STAGE:  # one checkpoint for every route of the model
        return (member.release, cell.model, cell.saved_by or "", CHECKPOINT_STAGE)
    probe = "load" if member.signature.stage in BLOCKING_STAGES else cell.probe
    return (member.release, cell.model, cell.strategy, cell.load_kwargs, cell.saved_by or "", probe)


def scope(values: Mapping[str, Sequence[str]]) -> str:
    """"qwen2_5_vl x 3 strategies x 5 probes": names up to NAMES_SHOWN, else a count; the profile
    only when it is not just `default`."""
    parts = []
    for name in DIMENSIONS:
        found = list(values.get(name, ()))
        if name == "load_kwargs" and found == ["default"]:
            continue
        parts.append(", ".join(found) if len(found) <= (NAMES_SHOWN if name == "models" else 1) else f"{len(found)} {_NOUN[name]}")
    return " x ".join(parts)


def _title(sig: Signature, member: _Member, stops: int = 0) -> str:
    if member.kind == "dependency":
        text = member.detail
    elif member.kind == "silent":
        text = sig.text
    elif member.kind == "fix":
        text = f"now passes: {sig.text}"
    else:
        text = f"{sig.stage}: " + (f"{sig.error_type}: " if sig.error_type else "") + sig.text
    said = stops_note(stops)
    return (text if len(text) + len(said) <= TITLE_CHARS else text[: TITLE_CHARS - len(said) - 1] + "…") + said


def _first_line(text: str, limit: int) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _silent_ranges(members: list[_Member], releases: Sequence[str]) -> str:
    pairs = {m.detail.split(":", 1)[0] for m in members}
    order = {v: i for i, v in enumerate(releases)}
    return ", ".join(sorted(pairs, key=lambda p: order.get(p.split(" -> ")[-1], len(order))))


def _example(member: _Member) -> str:
    if member.kind == "silent":
        return member.detail
    cell = member.cell
    message = cell.message.removeprefix(LOAD_FAILED_PREFIX) if member.kind != "fix" else member.detail
    return f"{cell.error_type}: {message}" if cell.error_type and member.kind != "fix" else message
