"""Drift: what two releases compute differently on the same as-published checkpoint, and where
the difference starts (records from `compat_tests.drift_record`; plain Python, no torch).

Drift is not a load failure: the checkpoint reads fine and nothing raises, the numbers move. So a
comparison says which outputs moved and by how much, names the first submodule whose output
differs in execution order, and which parts still agree; a release that cannot read the
checkpoint at all is said so, apart.
"""

from __future__ import annotations

import base64
import difflib
import math
import sys
from array import array
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from reports.module_paths import normalised

TOLERANCE = {"float32": 1e-4, "bfloat16": 1e-2, "float16": 5e-3}
"""Max |a - b| / max |a| under which two releases' outputs count as the same, by the compute
dtype of the records. Records are made in float32 on one thread; the same maths in another
release moved tiny models' logits by < 1e-6 relative (reordered sums), a changed computation by
> 1e-2."""

OUTPUT_NAMES = {"text_logits": "text-only logits", "image_logits": "image+text logits"}
PARTS_SHOWN = 4
REASON_CHARS = 300
"""A record's reason (a load error can list every model type a release knows) is cut to this."""
"""Groups of agreeing modules named in a line (the count of the rest is kept)."""


@dataclass(frozen=True)
class OutputDiff:
    """One recorded output of two releases compared."""

    name: str
    same: bool
    max_abs: float | None = None
    relative: float | None = None
    note: str = ""
    """Why they are not comparable value by value (shapes differ, missing in one record)."""

    def describe(self) -> str:
        if self.note:
            return f"{self.name} {self.note}"  # e.g. "processor mm_token_type_ids given only by 5.3.0"
        if self.same:
            return f"{self.name} identical" + (f" within tolerance (max abs {self.max_abs:.2g})" if self.max_abs else "")
        return f"{self.name} differ {_percent(self.relative)} (max abs {self.max_abs:.3g})"


@dataclass(frozen=True)
class Divergence:
    """Where one forward pass (text or image+text) starts to differ between two releases."""

    kind: str
    matched: int
    """Module calls matched across the releases (normalised path, shape, execution order)."""
    first: str | None
    """Path (in the newer release) of the first matched call whose output differs; None: none does."""
    first_before: str | None
    """That call's path in the older release, when it was renamed."""
    first_class: str | None
    agree: tuple[tuple[str, int], ...]
    """Top-level parts whose every matched call agrees: (part, calls)."""
    unmatched_before: tuple[str, ...]
    unmatched_after: tuple[str, ...]
    reshaped_before_first: tuple[str, ...] = ()
    """Matched calls, run before the first difference, whose output changed shape: `path old -> new`."""

    def describe(self) -> str:
        what = "text-only" if self.kind == "text" else "image+text"
        if not self.matched:
            return f"{what}: no module could be matched between the releases (paths and shapes all differ)"
        agree = ", ".join(f"{_part_name(part)} identical ({n} calls)" for part, n in self.agree[:PARTS_SHOWN])
        more = f" and {len(self.agree) - PARTS_SHOWN} more parts" if len(self.agree) > PARTS_SHOWN else ""
        if self.first is None:
            where = "every matched module agrees"
            if self.reshaped_before_first:
                where += f"; outputs that changed shape: {', '.join(self.reshaped_before_first)}"
            if self.unmatched_after:
                where += (f"; the difference starts in a module without a match: "
                          f"{', '.join(self.unmatched_after[:3])}")
            return f"{what}: {where}"
        renamed = f" (was {self.first_before})" if self.first_before and self.first_before != self.first else ""
        found = f"{what}: first difference at {self.first or '<model output>'} ({self.first_class}){renamed}"
        if self.reshaped_before_first:
            found += f", after outputs that changed shape: {', '.join(self.reshaped_before_first)}"
        return found + (f"; {agree}{more}" if agree else "")


@dataclass(frozen=True)
class DriftComparison:
    """Two releases' records of one model."""

    model: str
    before: str
    after: str
    status: str
    """`same`, `drift`, `unreadable` (a release cannot read the checkpoint) or `not compared`."""
    outputs: tuple[OutputDiff, ...] = ()
    divergences: tuple[Divergence, ...] = ()
    reason: str = ""

    def describe(self) -> str:
        """`5.0.0 vs 5.3.0: image+text logits differ 21% (max abs 0.69); text-only logits identical; ...`"""
        head = f"{self.model} {self.before} vs {self.after}"
        if self.status in ("unreadable", "not compared"):
            return f"{head}: {self.reason}"
        line = f"{head}: " + "; ".join(_grouped(self.outputs))
        for divergence in self.divergences:
            line += f"\n    {divergence.describe()}"
        return line


def _cut(text: Any) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= REASON_CHARS else text[:REASON_CHARS] + "..."


def _percent(relative: float | None) -> str:
    if relative is None:
        return "?"
    return f"{relative:.0%}" if relative >= 0.01 else f"{relative:.2g} relative"


def _part_name(part: str) -> str:
    return f"vision tower ({part})" if "vis" in part else (part or "<model output>")


def _grouped(outputs: Iterable[OutputDiff]) -> list[str]:
    """Per-output phrases; the processor's outputs in one phrase when all of them are the same."""
    outputs = list(outputs)
    processor = [o for o in outputs if o.name.startswith("processor ")]
    phrases = [o.describe() for o in outputs if not o.name.startswith("processor ")]
    if processor and all(o.same for o in processor):
        both = " where both releases give them" if any(o.note for o in processor) else ""
        phrases.append(f"processor outputs identical{both}")
    phrases += [o.describe() for o in processor if not o.same or o.note]
    return phrases


def values(fingerprint: dict[str, Any]) -> list[float] | None:
    """A fingerprint's full values, when the tensor was small enough to keep them."""
    if "values" in fingerprint:
        return [float(v) for v in fingerprint["values"]]
    if "float32_b64" in fingerprint:
        packed = array("f")
        packed.frombytes(base64.b64decode(fingerprint["float32_b64"]))
        if sys.byteorder == "big":
            packed.byteswap()
        return packed.tolist()
    return None


def _max_abs(a: list[float], b: list[float]) -> float:
    worst = 0.0
    for x, y in zip(a, b):
        gap = abs(x - y)
        if gap > worst or math.isnan(gap):
            worst = gap if not math.isnan(gap) else math.inf
    return worst


def compare_tensors(name: str, before: dict[str, Any] | None, after: dict[str, Any] | None,
                    tolerance: float, releases: tuple[str, str] = ("the older release", "the newer release")) -> OutputDiff:
    """Same values (within `tolerance`, relative to the older release's largest value)? An output
    only one release gives (5.x processors add mm_token_type_ids) is said, not counted as drift:
    whether it matters shows in the logits."""
    if before is None or after is None:
        return OutputDiff(name, True, note=f"given only by {releases[0] if after is None else releases[1]}")
    if before["shape"] != after["shape"]:
        return OutputDiff(name, False, note=f"shape {before['shape']} vs {after['shape']}")
    full_before, full_after = values(before), values(after)
    a, b = (full_before, full_after) if full_before is not None and full_after is not None else (
        before["stats"], after["stats"])
    if not after["dtype"].startswith(("float", "bfloat")):
        tolerance = 0.0  # token ids, grids, position ids: equal or not
    max_abs = _max_abs(a, b)
    scale = max((abs(v) for v in a), default=0.0) or 1.0
    relative = max_abs / scale
    return OutputDiff(name, relative <= tolerance, max_abs, relative)


def _token(call: dict[str, Any]) -> str:
    """What a call is matched by: its normalised path; wrapper levels that normalise to nothing
    (the model, its inner models) also by their output shapes, so they pair up in order."""
    path = normalised(call["path"])
    return path if path else f"<wrapper {call['shape']}>"


def _calls_agree(before: dict[str, Any], after: dict[str, Any], tolerance: float) -> bool:
    for stats_before, stats_after in zip(before["stats"], after["stats"]):
        scale = max((abs(v) for v in stats_before), default=0.0) or 1.0
        if _max_abs(stats_before, stats_after) / scale > tolerance:
            return False
    return True


def locate(kind: str, before: list[dict[str, Any]], after: list[dict[str, Any]], tolerance: float) -> Divergence:
    """Match module calls of two releases by normalised path, keeping execution order (longest
    common subsequence), then find the first matched call whose output differs in value. A matched
    call whose output changed shape (a rotary embedding returning per-section tables) cannot be
    compared by value: it is listed as reshaped, before the first difference when it ran before it."""
    matcher = difflib.SequenceMatcher(None, [_token(c) for c in before], [_token(c) for c in after], autojunk=False)
    pairs = [(i + k, j + k) for i, j, size in matcher.get_matching_blocks() for k in range(size)]
    matched_before = {i for i, _ in pairs}
    matched_after = {j for _, j in pairs}
    first: tuple[int, int] | None = None
    reshaped: list[tuple[int, str]] = []
    differing_parts: set[str] = set()
    part_calls: dict[str, int] = {}
    for i, j in pairs:
        if before[i]["shape"] != after[j]["shape"]:
            reshaped.append((j, f"{after[j]['path']} {before[i]['shape']} -> {after[j]['shape']}"))
            continue
        part = normalised(after[j]["path"]).split(".")[0]
        part_calls[part] = part_calls.get(part, 0) + 1
        if not _calls_agree(before[i], after[j], tolerance):
            differing_parts.add(part)
            if first is None:
                first = (i, j)
    agree = tuple((part, n) for part, n in part_calls.items() if part not in differing_parts)
    return Divergence(
        kind=kind, matched=len(pairs),
        first=after[first[1]]["path"] if first else None,
        first_before=before[first[0]]["path"] if first else None,
        first_class=after[first[1]]["class"] if first else None,
        agree=agree,
        unmatched_before=tuple(c["path"] for i, c in enumerate(before) if i not in matched_before),
        unmatched_after=tuple(c["path"] for j, c in enumerate(after) if j not in matched_after),
        reshaped_before_first=tuple(text for j, text in reshaped if first is None or j < first[1]),
    )


def compare_records(before: dict[str, Any], after: dict[str, Any]) -> DriftComparison:
    """What changed from the older release's record to the newer one's, for one model."""
    model, old, new = after.get("model", before.get("model", "?")), before["transformers"], after["transformers"]
    for record in (before, after):
        if record.get("status") == "unreadable":
            return DriftComparison(model, old, new, "unreadable",
                                   reason=f"transformers {record['transformers']} cannot read the checkpoint "
                                          f"(not drift): {_cut(record.get('reason'))}")
        if record.get("status") != "ok":
            return DriftComparison(model, old, new, "not compared",
                                   reason=f"no drift record from transformers {record['transformers']} "
                                          f"({record.get('status')}: {_cut(record.get('reason'))})")
    if before.get("checkpoint") != after.get("checkpoint") or before.get("format") != after.get("format"):
        return DriftComparison(model, old, new, "not compared",
                               reason="the records are of different checkpoints or record formats")
    tolerance = TOLERANCE.get(after.get("dtype", "float32"), 1e-2)
    outputs = [compare_tensors(OUTPUT_NAMES.get(name, name), before["outputs"].get(name), after["outputs"].get(name),
                               tolerance, (old, new)) for name in sorted(set(before["outputs"]) | set(after["outputs"]))]
    if "position_ids" in before or "position_ids" in after:
        outputs.append(compare_tensors("position ids", before.get("position_ids"),
                                       after.get("position_ids"), tolerance, (old, new)))
    processor_before, processor_after = before.get("processor", {}), after.get("processor", {})
    outputs += [compare_tensors(f"processor {key}", processor_before.get(key), processor_after.get(key), tolerance,
                                (old, new)) for key in sorted(set(processor_before) | set(processor_after))]
    drifted = any(not o.same for o in outputs)
    divergences = tuple(locate(kind, before["modules"][kind], after["modules"][kind], tolerance)
                        for kind in after.get("modules", {}) if kind in before.get("modules", {})
                        and not _same_output(outputs, kind)) if drifted else ()
    return DriftComparison(model, old, new, "drift" if drifted else "same", tuple(outputs), divergences)


def _same_output(outputs: list[OutputDiff], kind: str) -> bool:
    name = OUTPUT_NAMES[f"{kind}_logits"]
    return any(o.name == name and o.same for o in outputs)


def _cell(outputs: tuple[OutputDiff, ...], prefix: str) -> str:
    chosen = [o for o in outputs if o.name.startswith(prefix)]
    if not chosen:
        return "-"
    shown = [o for o in chosen if not o.same or o.note]
    if not shown:
        return "same"
    return "; ".join(o.describe().removeprefix(prefix).strip() for o in shown)


def format_drift(comparisons: Sequence[DriftComparison], before: str, after: str, everything: bool = False) -> str:
    """`check`'s drift section: the models whose numbers move, and the others counted in one line
    (by what their records say); `everything` describes every comparison."""
    listed = [c for c in comparisons if everything or c.status == "drift"]
    lines = [f"Drift on the as-published checkpoints ({before} -> {after}):"]
    lines += ["  " + c.describe().replace("\n", "\n  ") for c in listed]
    kinds = {
        "compute the same numbers": [c.model for c in comparisons
                                     if c not in listed and c.status == "same" and not any(o.note for o in c.outputs)],
        "compute the same numbers, their processor giving other outputs": [
            c.model for c in comparisons if c not in listed and c.status == "same" and any(o.note for o in c.outputs)],
        "cannot be read by one release (not drift)": [c.model for c in comparisons
                                                      if c not in listed and c.status == "unreadable"],
        "have no record to compare": [c.model for c in comparisons if c not in listed and c.status == "not compared"],
    }
    others = sum(len(models) for models in kinds.values())
    if others:
        lines.append(f"  {others} more model{'s' if others != 1 else ''}: "
                     + "; ".join(f"{len(models)} {kind} ({', '.join(models)})" for kind, models in kinds.items() if models)
                     + " (--all describes them)")
    if not comparisons:
        lines.append("  nothing to compare")
    return "\n".join(lines)


def drift_table(comparisons: Iterable[DriftComparison]) -> str:
    """Markdown: one row per compared pair; the first divergent module per moved forward pass."""
    lines = ["| model | releases | text-only logits | image+text logits | processor outputs | position ids | where it starts |",
             "|---|---|---|---|---|---|---|"]
    for c in comparisons:
        pair = f"{c.before} -> {c.after}"
        if c.status in ("unreadable", "not compared"):
            lines.append(f"| {c.model} | {pair} | {c.status}: {c.reason} | | | | |")
            continue
        where = "; ".join(d.describe() for d in c.divergences) or "-"
        lines.append(f"| {c.model} | {pair} | {_cell(c.outputs, 'text-only logits')} | "
                     f"{_cell(c.outputs, 'image+text logits')} | {_cell(c.outputs, 'processor ')} | "
                     f"{_cell(c.outputs, 'position ids')} | {where} |")
    return "\n".join(lines) + "\n"
