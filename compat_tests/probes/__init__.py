"""Every probe, by name, in run order; `reports.status.PROBE_ORDER` lists the same names."""

from __future__ import annotations

from compat_tests.probes import adapter_roundtrip, forward, generate, grpo, load, surface, trl_grpo
from compat_tests.probes.base import Probe

PROBES: dict[str, Probe] = {p.name: p for p in (load.PROBE, forward.PROBE, surface.PROBE, generate.PROBE, grpo.PROBE,
                                               trl_grpo.PROBE, adapter_roundtrip.PROBE)}
