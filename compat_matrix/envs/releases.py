"""transformers releases: what the package index has, `latest`, `main`, and tox env names."""

from __future__ import annotations

import functools
import re
import subprocess
import sys

from packaging.version import InvalidVersion, Version

SPECIAL = ("latest", "main")
"""`latest`: the newest release on the index at run time; `main`: transformers' git main branch."""


class UnknownRelease(ValueError):
    """A requested release is not on the package index."""


def env_name(release: str) -> str:
    """tox env name of a release: `tf4_57_6`, `tflatest`, `tfmain` (never a Python-version look)."""
    return "tf" + release.replace(".", "_")


@functools.cache
def index_versions(pre: bool = False) -> tuple[str, ...]:
    """transformers versions on the package index, newest first (pip's own view, mirrors included).

    With `pre`, pre-releases too. Callers go through `release_sets.ReleaseIndex`, which caches it."""
    out = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "transformers", *(["--pre"] if pre else [])],
                         capture_output=True, text=True, timeout=300)
    match = re.search(r"Available versions:\s*(.+)", out.stdout)
    if not match:
        raise RuntimeError(f"could not list transformers releases from the package index: {out.stderr.strip()[-500:]}")
    return tuple(v.strip() for v in match.group(1).split(","))


def nearest(release: str, available: tuple[str, ...], count: int = 5) -> list[str]:
    """The releases closest to `release` (by version order), for 'did you mean' messages."""
    try:
        wanted = Version(release)
    except InvalidVersion:
        return list(available[:count])
    ordered = sorted(available, key=Version)
    below = [v for v in ordered if Version(v) < wanted][-(count // 2 + 1):]
    above = [v for v in ordered if Version(v) > wanted][: count - len(below)]
    return below + above


def check_releases(releases: list[str], available: tuple[str, ...] | None = None) -> None:
    """Raise `UnknownRelease` naming every release not on the index and the nearest ones."""
    problems = []
    for release in releases:
        if release in SPECIAL:
            continue
        try:
            Version(release)
        except InvalidVersion:
            problems.append(f"{release!r} is not a release; write an exact version such as 4.57.6, or "
                            f"{' or '.join(sorted(SPECIAL))}")
            continue
        available = available if available is not None else index_versions()
        if release not in available:
            problems.append(f"transformers {release} is not on the package index; nearest: {', '.join(nearest(release, available))}")
    if problems:
        raise UnknownRelease("\n".join(problems))
