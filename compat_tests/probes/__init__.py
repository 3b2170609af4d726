"""Every probe, by name, in run order: the probe called `name` is the `PROBE` of
`compat_tests/probes/<name>.py`, for each name of `reports.status.PROBE_ORDER`, the one list of
probe names (the matrix file's validation and the report read it there)."""

from __future__ import annotations

from importlib import import_module

from compat_tests.probes.base import Probe
from reports.status import PROBE_ORDER


def _probe(name: str) -> Probe:
    probe: Probe = import_module(f"{__name__}.{name}").PROBE
    if probe.name != name:
        raise ImportError(f"compat_tests/probes/{name}.py's PROBE is named {probe.name!r}: name it {name!r}, as its module")
    return probe


PROBES: dict[str, Probe] = {name: _probe(name) for name in PROBE_ORDER}
