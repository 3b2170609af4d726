"""The upgrade view (`compat-matrix check --from A --to B`): what changes for a user moving between
two releases: cells that break, cells that get fixed, API paths that are gone (`surface` probe), and
silent changes in cells that pass in both.

Silent changes matter as much as failures: a model that still loads but as another class, with
newly initialised weights or drifting logits, trains differently without raising anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from reports.dependencies import DependencyChange, dependency_change
from reports.merge import cell_sort_key
from reports.report import Cell, Report
from reports.status import FAILING, SYMBOL, rank

NO_VERDICT = frozenset({"skipped"})
"""Statuses of a cell that did not run (a package or the hub missing on this machine): compared
with anything it says nothing about the upgrade."""

DRIFT_ERROR = "Drift"
"""error_type of a cross-release cell whose checkpoint loaded cleanly but computed other logits
(`compat_tests.probes.compare.DRIFT`): listed apart from checkpoints a release cannot use."""

ROUNDING = {"float64": 1e-9, "float32": 1e-5, "float16": 2**-10, "bfloat16": 2**-7}
"""Growth of a logit difference, relative to the logits' scale, that is rounding and not a change:
the compute dtype's rtol for one model computing the same numbers two ways
(`compat_tests.probes.tolerance.SAME_MODEL`). An absolute 1e-6 called one float32 step on logits
of 4 (1.2e-6) a silent change, and bisect then saw such a cell "change more than once"."""

MESSAGE_CHARS = 200
"""Error messages are cut to this many characters in the terminal view."""

SILENT_FIELDS = ("loaded_class", "adapter_modules", "adapter_coverage", "adapter_trainable", "missing_keys",
                 "unexpected_keys", "param_count", "dtype", "max_abs_diff", "surface")
"""Silent-change fields, most telling first (the order `check` prints them in); `surface` is one
API path whose value changed (`SilentChange.path`); `adapter_modules`: what a LoRA target list
matched (`details.adapter`, compat_tests/lora.py) moved, e.g. module paths renamed under a regex;
`adapter_coverage`: the projections (experts one by one) the adapter covers, whatever the layout;
`adapter_trainable`: its number of trainable parameters."""


@dataclass(frozen=True)
class StatusChange:
    """A cell whose status differs between the two releases."""

    before: Cell
    after: Cell


@dataclass(frozen=True)
class SilentChange:
    """A cell that passes in both releases but differs in `field` (plain JSON values)."""

    cell: Cell
    field: str
    before: Any
    after: Any
    path: str | None = None
    """The API path, for a `surface` change."""


@dataclass(frozen=True)
class SurfaceLoss:
    """An API path usable in the older release and gone (or raising) in the newer one: training
    code that touches it breaks on upgrade, so it counts as breaking even where the probe passes."""

    cell: Cell
    """The newer release's `surface` cell."""
    path: str
    before: dict[str, Any]
    """The older release's record: `{"exists", "value"}` (plus `"error"`)."""
    after: dict[str, Any]


@dataclass(frozen=True)
class UpgradeView:
    from_release: str
    to_release: str
    compared: int
    """Cells present in both releases."""
    breaks: tuple[StatusChange, ...]
    fixes: tuple[StatusChange, ...]
    silent: tuple[SilentChange, ...]
    only_in_from: tuple[str, ...]
    only_in_to: tuple[str, ...]
    old_checkpoints: tuple[Cell, ...]
    """Cross-release cells: checkpoints saved by `from_release`, loaded by `to_release`."""
    new_checkpoints: tuple[Cell, ...] = ()
    """Cross-release cells: checkpoints saved by `to_release`, loaded by `from_release` (an
    evaluation or serving stack still on the old release reading what the upgraded trainer writes)."""
    surface_losses: tuple[SurfaceLoss, ...] = ()
    """API paths of the `surface` probe usable in `from_release` and not in `to_release`."""
    not_comparable: tuple[StatusChange, ...] = ()
    """Cells whose status differs but one side has no verdict (`skipped`: it did not run there), or
    that failed and whose strategy no longer exists (`unsupported`): neither a break nor a fix."""
    requirements: tuple[DependencyChange, ...] = ()
    """Cells that need a package the environment lacks in one release and not in the other
    (reports/dependencies.py): new requirements first; neither a break nor a fix."""
    own_failures: tuple[Cell, ...] = ()
    """Failing as-published cells of either release: what a cross-release failure is compared with
    (a checkpoint from the other release failing as the release's own does is no news)."""

    @property
    def adapter_losses(self) -> tuple[SilentChange, ...]:
        """LoRA target lists that match fewer modules, or cover less (a projection or an expert lost), in
        `to_release`: the adapter trains less after the upgrade without an error, so it counts as breaking."""
        return tuple(s for s in self.silent if fewer_adapter_modules(s) or lost_adapter_coverage(s))

    @property
    def old_checkpoint_failures(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.old_checkpoints if c.status in FAILING)

    @property
    def new_checkpoint_failures(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.new_checkpoints if c.status in FAILING)


def resolve_release(report: Report, name: str) -> str:
    """The resolved version for `name`: a version in the report, or what a run requested (`latest`)."""
    versions = [r.transformers for r in report.releases]
    if name in versions:
        return name
    matches = [r.transformers for r in report.releases if name in r.requested]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(f"{r.transformers} (requested as {'/'.join(r.requested)})" for r in report.releases) or "none"
    if matches:
        raise ValueError(
            f"{name!r} names several releases in this report ({', '.join(matches)}); pass one version; known: {known}"
        )
    raise ValueError(f"no release {name!r} in this report; known: {known}")


def compare_releases(report: Report, from_release: str, to_release: str) -> UpgradeView:
    """Compare every as-published cell of `from_release` with the same cell in `to_release` (both
    load the checkpoint the model's `written_by` release wrote, as users do)."""
    old_version, new_version = resolve_release(report, from_release), resolve_release(report, to_release)
    old = {c.grid_id: c for c in report.cells if c.transformers == old_version and c.as_published}
    new = {c.grid_id: c for c in report.cells if c.transformers == new_version and c.as_published}
    shared = [cell_id for cell_id in old if cell_id in new]
    breaks, fixes, silent, losses, apart = [], [], [], [], []
    requirements = []
    for cell_id in shared:
        before, after = old[cell_id], new[cell_id]
        losses.extend(surface_losses(before, after))
        requirement = dependency_change(before, after)
        if requirement is not None:
            requirements.append(requirement)
        elif before.status != after.status and (NO_VERDICT & {before.status, after.status}
                                              or (after.status == "unsupported" and before.status in FAILING)):
            apart.append(StatusChange(before, after))
        elif rank(after.status) > rank(before.status):
            breaks.append(StatusChange(before, after))
        elif rank(after.status) < rank(before.status):
            fixes.append(StatusChange(before, after))
        elif before.status == "pass":
            silent.extend(silent_changes(before, after))
    return UpgradeView(
        from_release=old_version,
        to_release=new_version,
        compared=len(shared),
        breaks=tuple(sorted(breaks, key=lambda c: (-rank(c.after.status), cell_sort_key(c.after)))),
        fixes=tuple(sorted(fixes, key=lambda c: cell_sort_key(c.after))),
        silent=tuple(sorted(silent, key=lambda s: (SILENT_FIELDS.index(s.field), cell_sort_key(s.cell), s.path or ""))),
        only_in_from=tuple(sorted(set(old) - set(new))),
        only_in_to=tuple(sorted(set(new) - set(old))),
        old_checkpoints=tuple(
            c for c in report.cells if c.transformers == new_version and c.cross_release and not c.as_published
            and c.saved_by == old_version
        ),
        new_checkpoints=tuple(
            c for c in report.cells if c.transformers == old_version and c.cross_release and not c.as_published
            and c.saved_by == new_version
        ),
        surface_losses=tuple(sorted(losses, key=lambda loss: (cell_sort_key(loss.cell), loss.path))),
        not_comparable=tuple(sorted(apart, key=lambda c: cell_sort_key(c.after))),
        requirements=tuple(sorted(requirements, key=lambda c: (not c.starts, cell_sort_key(c.after)))),
        own_failures=tuple(c for c in (*old.values(), *new.values()) if c.status in FAILING),
    )


def _surface(cell: Cell) -> dict[str, dict[str, Any]]:
    """The `surface` probe's records of a cell (empty for other probes or when it did not run)."""
    found = cell.details.get("surface")
    return {path: entry for path, entry in found.items() if isinstance(entry, dict)} if isinstance(found, dict) else {}


def _usable(entry: dict[str, Any]) -> bool:
    return bool(entry.get("exists")) and "error" not in entry


def surface_losses(before: Cell, after: Cell) -> list[SurfaceLoss]:
    """Paths recorded in both runs, usable before and not after (whatever the two statuses are)."""
    old, new = _surface(before), _surface(after)
    return [SurfaceLoss(after, path, old[path], new[path])
            for path in old if path in new and _usable(old[path]) and not _usable(new[path])]


def _rounding(before: Cell, after: Cell) -> float:
    """How much `max_abs_diff` may grow by rounding alone: the dtype's share of the logits' scale
    (max_abs_diff / rel_diff, as the load probe records both; 1 when neither cell says)."""
    scales = [abs_diff / rel for cell in (after, before)
              if (abs_diff := _number(cell.details.get("max_abs_diff"))) is not None
              and (rel := _number(cell.details.get("rel_diff"))) is not None and rel > 0]
    return ROUNDING.get(after.dtype or "", ROUNDING["bfloat16"]) * (scales[0] if scales else 1.0)


def silent_changes(before: Cell, after: Cell) -> list[SilentChange]:
    """What differs between two passing runs of one cell, in the fields that change behaviour."""
    changes = []
    for field in ("loaded_class", "dtype"):
        if getattr(before, field) != getattr(after, field):
            changes.append(SilentChange(after, field, getattr(before, field), getattr(after, field)))
    old_count, new_count = before.details.get("param_count"), after.details.get("param_count")
    if old_count != new_count:
        changes.append(SilentChange(after, "param_count", old_count, new_count))
    for field in ("missing_keys", "unexpected_keys"):
        old_keys, new_keys = _keys(before.details.get(field)), _keys(after.details.get(field))
        if old_keys != new_keys:
            changes.append(SilentChange(after, field, sorted(old_keys), sorted(new_keys)))
    old_diff, new_diff = _number(before.details.get("max_abs_diff")), _number(after.details.get("max_abs_diff"))
    if old_diff is not None and new_diff is not None and new_diff > old_diff + _rounding(before, after):
        changes.append(SilentChange(after, "max_abs_diff", old_diff, new_diff))
    old_adapter, new_adapter = _adapter(before), _adapter(after)
    if old_adapter and new_adapter and old_adapter.get("modules") != new_adapter.get("modules"):
        changes.append(SilentChange(after, "adapter_modules", old_adapter, new_adapter))
    if old_adapter and new_adapter:
        for field, key in (("adapter_coverage", "coverage"), ("adapter_trainable", "trainable")):
            old_value, new_value = old_adapter.get(key), new_adapter.get(key)
            if old_value is not None and new_value is not None and old_value != new_value:
                changes.append(SilentChange(after, field, old_value, new_value))
    old_surface, new_surface = _surface(before), _surface(after)
    for path, entry in old_surface.items():
        other = new_surface.get(path)
        if other is not None and _usable(entry) and _usable(other) and entry.get("value") != other.get("value"):
            changes.append(SilentChange(after, "surface", entry.get("value"), other.get("value"), path))
    return changes


def _adapter(cell: Cell) -> dict[str, Any] | None:
    """What the cell's LoRA target list matched (`details.adapter`), or None without an adapter."""
    found = cell.details.get("adapter")
    return found if isinstance(found, dict) and isinstance(found.get("matched"), int) else None


def fewer_adapter_modules(change: SilentChange) -> bool:
    """An `adapter_modules` change where the newer release's target list matches fewer modules."""
    return change.field == "adapter_modules" and change.after["matched"] < change.before["matched"]


def lost_adapter_coverage(change: SilentChange) -> bool:
    """An `adapter_coverage` change where the newer release covers some projection fewer times (or not at all)."""
    return change.field == "adapter_coverage" and any(
        count > change.after.get(unit, 0) for unit, count in change.before.items())


def describe_coverage(change: SilentChange) -> str:
    """`adapter_coverage: LoRA covers less: lost mlp.gate_proj x1, shared_experts.up_proj x1`."""
    old, new = change.before, change.after
    lost = [f"{k} x{old[k] - new.get(k, 0)}" for k in sorted(old) if old[k] > new.get(k, 0)]
    gained = [f"{k} x{new[k] - old.get(k, 0)}" for k in sorted(new) if new[k] > old.get(k, 0)]
    parts = ([f"lost {', '.join(lost)}"] if lost else []) + ([f"gained {', '.join(gained)}"] if gained else [])
    return f"adapter_coverage: LoRA covers {'less' if lost else 'more'}: {'; '.join(parts)}"


def describe_adapter(change: SilentChange) -> str:
    """`LoRA target_modules [...] match fewer modules: 14 -> 0 (lost layers.*.self_attn.q_proj x2, ...)`."""
    before, after = change.before, change.after
    old, new = before.get("modules") or {}, after.get("modules") or {}
    lost = [f"{k} x{old[k] - new.get(k, 0)}" for k in sorted(old) if old[k] > new.get(k, 0)]
    gained = [f"{k} x{new[k] - old.get(k, 0)}" for k in sorted(new) if new[k] > old.get(k, 0)]
    how = "fewer" if after["matched"] < before["matched"] else "other" if after["matched"] == before["matched"] else "more"
    parts = ([f"lost {', '.join(lost)}"] if lost else []) + ([f"gained {', '.join(gained)}"] if gained else [])
    return (f"adapter_modules: LoRA target_modules {short_value(after.get('target_modules'))} match {how} modules: "
            f"{before['matched']} -> {after['matched']}" + (f" ({'; '.join(parts)})" if parts else ""))


def unusable_checkpoints(failing: tuple[Cell, ...]) -> list[Cell]:
    """Failing cross-release cells of a checkpoint the reading release cannot use."""
    return [c for c in failing if c.error_type != DRIFT_ERROR]


def drifted_checkpoints(failing: tuple[Cell, ...]) -> list[Cell]:
    """Failing cross-release cells of a checkpoint read cleanly whose numbers moved (drift)."""
    return [c for c in failing if c.error_type == DRIFT_ERROR]


def upgrade_exit_code(view: UpgradeView) -> int:
    """1 when something breaks when upgrading (checkpoints saved by the old release and API paths
    that are gone too), else 0."""
    return 1 if (view.breaks or view.old_checkpoint_failures or view.new_checkpoint_failures or view.surface_losses
                 or view.adapter_losses) else 0


def format_upgrade(view: UpgradeView) -> str:
    """The terminal text `compat-matrix check` prints, worst first."""
    losses = view.surface_losses
    lines = [
        f"transformers {view.from_release} -> {view.to_release}: {view.compared} cells in both; "
        f"{len(view.breaks)} break, {len(view.fixes)} fixed, {len(view.silent)} silent changes"
        + (f", {len(losses)} API paths gone" if losses else "")
    ]
    if view.breaks:
        lines += ["", f"Breaks when upgrading ({len(view.breaks)}):"] + [_status_line(c) for c in view.breaks]
    if losses:
        lines += ["", f"API paths gone when upgrading ({len(losses)}):"]
        lines += [_loss_lines(loss, view.from_release, view.to_release) for loss in losses]
    if view.adapter_losses:
        lines += ["", f"LoRA target lists matching fewer modules or covering less when upgrading ({len(view.adapter_losses)}):"]
        lines += [f"  {SYMBOL['fail']} {s.cell.grid_id}\n      {describe_silent(s)}" for s in view.adapter_losses]
    for writer, reader, cells, failing in (
        (view.from_release, view.to_release, view.old_checkpoints, view.old_checkpoint_failures),
        (view.to_release, view.from_release, view.new_checkpoints, view.new_checkpoint_failures),
    ):
        unusable, drifted = unusable_checkpoints(failing), drifted_checkpoints(failing)
        if unusable:
            lines += ["", f"Checkpoints saved by {writer} that {reader} fails to use ({len(unusable)} of {len(cells)}):"]
            lines += [f"  {SYMBOL[c.status]} {c.cell_id}  {c.status}\n      {_error(c)}" for c in unusable]
        if drifted:
            lines += ["", f"Checkpoints saved by {writer} that {reader} reads cleanly but computes other numbers on "
                          f"(drift; {len(drifted)} of {len(cells)}):"]
            lines += [f"  {SYMBOL[c.status]} {c.cell_id}\n      {_error(c)}" for c in drifted]
    if view.fixes:
        lines += ["", f"Fixed by upgrading ({len(view.fixes)}):"] + [_status_line(c) for c in view.fixes]
    if view.silent:
        lines += ["", f"Silent changes in cells that pass in both ({len(view.silent)}):"]
        lines += [f"  {s.cell.grid_id}  {describe_silent(s)}" for s in view.silent]
    for starts, heading in ((True, "New requirements"), (False, "Requirements dropped")):
        found = [c for c in view.requirements if c.starts == starts]
        if found:
            lines += ["", f"{heading} ({len(found)}): skipped for want of a package, not broken"]
            lines += [f"  {SYMBOL['skipped']} {c.after.grid_id}  {c.title()}" for c in found]
    if view.not_comparable:
        lines += ["", f"Not comparable, no verdict on one side ({len(view.not_comparable)}):"]
        lines += [_status_line(c) for c in view.not_comparable]
    for label, ids in ((f"Only in {view.from_release}", view.only_in_from), (f"Only in {view.to_release}", view.only_in_to)):
        if ids:
            lines += ["", f"{label} ({len(ids)}), not compared:"] + [f"  {cell_id}" for cell_id in ids]
    if not (view.breaks or view.old_checkpoint_failures or view.new_checkpoint_failures or view.fixes or view.silent or losses):
        lines += ["", "No differences."]
    return "\n".join(lines) + "\n"


def describe_surface(entry: dict[str, Any]) -> str:
    """`value`, `missing (error)` or `raises (error)`: one release's record of an API path, on one line."""
    error = " ".join(str(entry.get("error", "")).split())
    if not entry.get("exists"):
        return f"missing ({error})" if error else "missing"
    if error:
        return f"raises ({error})"
    return short_value(entry.get("value"))


def _loss_lines(loss: SurfaceLoss, from_release: str, to_release: str) -> str:
    width = max(len(from_release), len(to_release)) + 1
    return (f"  {SYMBOL['fail']} {loss.cell.grid_id}  {loss.path}\n"
            f"      {(from_release + ':').ljust(width)} {describe_surface(loss.before)}\n"
            f"      {(to_release + ':').ljust(width)} {describe_surface(loss.after)}")


def short_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS] + f"... (cut, {len(text)} chars)"


def describe_silent(change: SilentChange) -> str:
    """One line: the field and how it moved (added/removed keys for key sets)."""
    if change.field == "surface":
        return f"surface {change.path}: {short_value(change.before)} -> {short_value(change.after)}"
    if change.field == "adapter_modules":
        return describe_adapter(change)
    if change.field == "adapter_coverage":
        return describe_coverage(change)
    if change.field == "adapter_trainable":
        return f"adapter_trainable: {change.before} -> {change.after} trainable LoRA parameters"
    if change.field in ("missing_keys", "unexpected_keys"):
        added = sorted(set(change.after) - set(change.before))
        removed = sorted(set(change.before) - set(change.after))
        parts = ([f"+{', +'.join(added)}"] if added else []) + ([f"-{', -'.join(removed)}"] if removed else [])
        return f"{change.field}: {' '.join(parts)}"
    return f"{change.field}: {change.before} -> {change.after}"


def _status_line(change: StatusChange) -> str:
    """Symbol, cell, both statuses, and the error of the failing side (the new one for a break)."""
    after = change.after
    broke = rank(after.status) > rank(change.before.status)
    failing = after if broke else change.before
    line = f"  {SYMBOL[after.status]} {after.grid_id}  {change.before.status} -> {after.status}"
    if failing.error_type or failing.message:
        line += f"\n      {'' if broke else 'was '}{_error(failing)}"
    return line


def _error(cell: Cell) -> str:
    message = " ".join(cell.message.split())
    if len(message) > MESSAGE_CHARS:
        message = message[:MESSAGE_CHARS] + f"... (cut, {len(cell.message)} chars)"
    return f"{cell.error_type or cell.status}: {message}"


def _keys(value: Any) -> set[str]:
    if value is None:
        return set()
    return {str(v) for v in value} if isinstance(value, (list, tuple, set)) else {str(value)}


def _number(value: Any) -> float | None:
    """The value when it is a number (details are free-form JSON), else None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
