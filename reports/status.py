"""The status vocabulary: cell statuses and their order, the probe order, the worst-status rule,
and what meeting an expectation means.

One place for these rules so the matrix file (`compat_matrix.spec.schema`), the harness, the grid, the
regressions, the upgrade view and JUnit agree. Plain Python: importable without torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

Status = Literal["pass", "skipped", "unsupported", "fail", "error"]

STATUS_ORDER: tuple[Status, ...] = ("pass", "skipped", "unsupported", "fail", "error")
"""Best to worst (reports/README.md): a grid cell shows the worst of its probes."""

FAILING: frozenset[str] = frozenset({"fail", "error"})
"""Statuses that are a problem when no expectation says otherwise."""

PROBE_ORDER: tuple[str, ...] = ("load", "forward", "surface", "generate", "grpo_step", "trl_grpo", "adapter_roundtrip")
"""Every probe, in the order they run on one loaded model: the one list of probe names
(`compat_tests.probes.PROBES` imports `compat_tests/probes/<name>.py` for each); later probes reuse the loaded model, so `surface` runs before `generate` and `grpo_step`
and sees the model as loaded."""

ADAPTER_PROBES: tuple[str, ...] = ("adapter_roundtrip",)
"""Probes that work on a load profile's adapter: a profile without `adapter:` has no cells of theirs."""

SYMBOL: dict[str, str] = {"pass": "✓", "skipped": "↷", "unsupported": "∅", "fail": "✗", "error": "‼"}
"""Plain-text symbols (HTML, terminal): each status has its own shape, so colour is optional."""

EMOJI: dict[str, str] = {"pass": "✅", "skipped": "⏭️", "unsupported": "➖", "fail": "❌", "error": "💥"}
"""Markdown symbols: GitHub shows these in colour and each still has its own shape."""


def rank(status: str) -> int:
    """Position in STATUS_ORDER; higher is worse."""
    return STATUS_ORDER.index(status)


def worst(statuses: Iterable[str]) -> str:
    """The worst status of a non-empty collection (ValueError when empty: an empty cell has none)."""
    return max(statuses, key=rank)


def probe_rank(probe: str) -> tuple[int, str]:
    """Sort key: known probes in run order, unknown ones after, by name."""
    return (PROBE_ORDER.index(probe), "") if probe in PROBE_ORDER else (len(PROBE_ORDER), probe)


def meets_expectation(status: str, expected_status: str | None) -> bool:
    """Without an expectation a cell must not fail or error; with one it must match exactly."""
    if expected_status is None:
        return status not in FAILING
    return status == expected_status
