"""`compat-matrix pins`: the PEP 440 specifier of the tested releases where every selected cell passes.

Shortest form first: a lower bound at the oldest passing release, an upper bound at the first
failing release after the newest passing one, and `!=` for failing releases in between. A bound
that rests on releases nobody tested (the index has releases between the failing and the passing
one) is flagged: bisect there before trusting it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from packaging.version import Version


@dataclass
class Pin:
    specifier: str
    passing: list[str]
    failing: list[str]
    gaps: list[str] = field(default_factory=list)
    """One line per bound resting on an untested span."""


def pin(outcomes: dict[str, bool], index: list[str] | None = None) -> Pin | None:
    """`outcomes`: tested release -> every selected cell passes there. None when none passes."""
    tested = sorted(outcomes, key=Version)
    passing = [r for r in tested if outcomes[r]]
    if not passing:
        return None
    failing = [r for r in tested if not outcomes[r]]
    low, high = passing[0], passing[-1]
    parts = [f">={low}"]
    above = [f for f in failing if Version(f) > Version(high)]
    if above:
        parts.append(f"<{above[0]}")
    parts += [f"!={f}" for f in failing if Version(low) < Version(f) < Version(high)]
    gaps = []
    below = [f for f in failing if Version(f) < Version(low)]
    known = [Version(v) for v in (index or [])]
    for bad, good, side in ((below[-1] if below else None, low, "lower"), (above[0] if above else None, high, "upper")):
        if bad is None:
            continue
        a, b = sorted((Version(bad), Version(good)))
        between = [v for v in known if a < v < b and not v.is_prerelease]
        if between or not known:
            what = f"{len(between)} releases" if known else "releases (index not consulted)"
            gaps.append(f"{side} bound: between {a} and {b} {what} untested: bisect first")
    return Pin(",".join(parts), passing, failing, gaps)
