"""The matrix.yaml `expectations:` entries that record a set of failing cells exactly, as YAML to paste.

An entry covers a product (models x strategies x profiles x probes, in a release range), so the
cells are factored into products that cover them and nothing else: a passing cell never gets
an expectation it would then break.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product

import yaml

from reports.release_ranges import specifiers

Unit = tuple[str, str, str, str]
"""(model, strategy, load profile, probe)."""

DIMENSIONS = ("models", "strategies", "load_kwargs", "probes")
"""matrix.yaml's expectation keys for the four parts of a `Unit`, in that order."""


@dataclass(frozen=True)
class FailingCell:
    """What an expectation needs of one cell."""

    unit: Unit
    transformers: str
    status: str
    saved_by: str | None = None


def factor(units: set[Unit]) -> list[tuple[frozenset[str], ...]]:
    """Products of value sets whose union is exactly `units`; few of them (values whose rest is the
    same share one product, so "these 3 models, these 2 strategies" is one entry)."""
    if not units:
        return []
    width = len(next(iter(units)))
    sets = tuple(frozenset(u[d] for u in units) for d in range(width))
    if len(list(product(*sets))) == len(units):
        return [sets]
    split = next(d for d in range(width) if len(sets[d]) > 1)
    rests: dict[frozenset[tuple[str, ...]], set[str]] = defaultdict(set)
    for value in sets[split]:
        rests[frozenset(u[:split] + u[split + 1:] for u in units if u[split] == value)].add(value)
    out: list[tuple[frozenset[str], ...]] = []
    for rest, values in sorted(rests.items(), key=lambda item: sorted(item[1])):
        for sub in factor(set(rest)):  # type: ignore[arg-type]  # the rest has one dimension fewer
            out.append(sub[:split] + (frozenset(values),) + sub[split:])
    return out


def expectation_entries(
    cells: Iterable[FailingCell],
    releases: Sequence[str],
    universe: Mapping[str, Mapping[str, frozenset[str]]],
    reason: str,
    first_bad: str | None = None,
) -> list[dict[str, object]]:
    """Entries recording `cells` exactly. `universe[dimension][model]`: every value of that
    dimension the report has for the model, so a dimension that covers them all is left out."""
    seen_in: dict[tuple[Unit, str, str | None], set[str]] = defaultdict(set)
    for cell in cells:
        seen_in[(cell.unit, cell.status, cell.saved_by)].add(cell.transformers)
    writers: dict[tuple[Unit, str, str], set[str]] = defaultdict(set)
    for (unit, status, saved_by), versions in seen_in.items():
        for spec in specifiers(versions, releases, first_bad):
            writers[(unit, status, spec)].add(saved_by or "")
    groups: dict[tuple[str, str, str], set[Unit]] = defaultdict(set)
    for (unit, status, spec), writer_set in writers.items():
        saved_specs = specifiers(writer_set - {""}, releases) if writer_set - {""} else [""]
        for saved_spec in saved_specs + ([""] if "" in writer_set and writer_set - {""} else []):
            groups[(status, spec, saved_spec)].add(unit)
    entries: list[dict[str, object]] = []
    for (status, spec, saved_range), units in sorted(groups.items()):
        for sets in factor(units):
            entry: dict[str, object] = {"status": status}
            for name, values in zip(DIMENSIONS, sets):
                everything = frozenset().union(*(universe.get(name, {}).get(m, frozenset()) for m in sets[0]))
                if name == "models" or values != everything:
                    entry[name] = sorted(values)
            if spec:
                entry["transformers"] = spec
            if saved_range:
                entry["saved_by"] = saved_range
            entry["reason"] = reason
            entries.append(entry)
    return entries


def to_yaml(entries: list[dict[str, object]]) -> str:
    """The entries as an `expectations:` list fragment (flow-style lists, one key a line)."""
    if not entries:
        return ""
    return yaml.safe_dump(entries, sort_keys=False, default_flow_style=None, width=100, allow_unicode=True)
