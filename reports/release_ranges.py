"""Sets of tested releases as ranges a person reads ("4.49.0-4.57.6, 5.24.0") and as the PEP 440
specifiers an expectation needs, bounded by the releases actually tested.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from reports.merge import version_key


def runs(subset: Collection[str], releases: Sequence[str]) -> list[tuple[int, int]]:
    """Index ranges (first, last) of consecutive `releases` that are in `subset`, in order."""
    found: list[tuple[int, int]] = []
    for i, release in enumerate(releases):
        if release not in subset:
            continue
        if found and found[-1][1] == i - 1:
            found[-1] = (found[-1][0], i)
        else:
            found.append((i, i))
    return found


def describe(subset: Collection[str], releases: Sequence[str]) -> str:
    """"all 6 releases", or "4.49.0-4.57.6, 5.24.0" (releases not in `releases` are named after)."""
    if releases and set(releases) <= set(subset) and len(releases) > 1:
        return f"all {len(releases)} releases"
    parts = [releases[a] if a == b else f"{releases[a]}-{releases[b]}" for a, b in runs(subset, releases)]
    parts += sorted(set(subset) - set(releases))
    return ", ".join(parts)


def specifiers(subset: Collection[str], releases: Sequence[str], first_bad: str | None = None) -> list[str]:
    """One PEP 440 specifier per run of consecutive tested releases ("" for all of them).

    Bounds are the tested releases themselves (`>=4.52.4,<=4.57.6`): what lies between two tested
    releases is unknown, and a narrow range lets an untested release that fails show up. An open
    end stays open (the oldest and newest tested release). `first_bad`, where a bisect established
    it, is the exact lower bound of the run that holds it."""
    out: list[str] = []
    last = len(releases) - 1
    for a, b in runs(subset, releases):
        low = first_bad if first_bad and _between(first_bad, releases, a) else (releases[a] if a > 0 else None)
        high = releases[b] if b < last else None
        if low and high and low == high:
            out.append(f"=={low}")
        else:
            out.append(",".join(([f">={low}"] if low else []) + ([f"<={high}"] if high else [])))
    return out


def _between(first_bad: str, releases: Sequence[str], index: int) -> bool:
    """`first_bad` lies after the tested release before `index` and not after the one at `index`."""
    after_previous = index == 0 or version_key(first_bad) > version_key(releases[index - 1])
    return after_previous and version_key(first_bad) <= version_key(releases[index])
