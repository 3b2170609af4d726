"""Release sets: exact releases, `latest`/`main`, and PEP 440 specifiers expanded on the package index.

`">=5.0,<5.6"` means every final release on the index in that range (pre-releases only when asked).
The index is asked once per run and its answer kept for a day in `<cache>/index/transformers.json`;
offline, an older answer is used and said so, and with none the specifier cannot be expanded.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from compat_matrix.envs.releases import SPECIAL, index_versions
from compat_matrix.spec.schema import is_specifier

INDEX_MAX_AGE_S = 24 * 3600
"""How long the index's answer is used before asking again."""


class ReleaseSetError(ValueError):
    """A specifier that cannot be expanded: no index, no cache, or nothing in range."""


def is_version(item: str) -> bool:
    """`4.57.6` is; `latest`, `main`, `4.57.x` are not."""
    try:
        Version(item)
    except InvalidVersion:
        return False
    return True


def parse_specifier(item: str) -> SpecifierSet:
    """The SpecifierSet of `item`, or ReleaseSetError saying how to write one."""
    try:
        return SpecifierSet(item)
    except InvalidSpecifier:
        raise ReleaseSetError(f"{item!r} is not a PEP 440 specifier; write e.g. '>=5.0,<5.6' or '==4.57.*'") from None


def cache_root() -> Path:
    """Same root as the tiny checkpoints: env COMPAT_MATRIX_CACHE, default ~/.cache/compat-matrix."""
    return Path(os.environ.get("COMPAT_MATRIX_CACHE") or Path.home() / ".cache" / "compat-matrix")


@dataclass(frozen=True)
class IndexAnswer:
    """transformers versions on the index (pre-releases included), and where they came from."""

    versions: tuple[str, ...]
    fetched_at: float
    from_cache: bool
    stale: bool = False
    """True when the index could not be asked and an answer older than a day was used."""

    def note(self) -> str:
        age_h = (time.time() - self.fetched_at) / 3600
        if self.stale:
            return f"package index unreachable: using its answer cached {age_h:.0f} h ago"
        return f"package index answer cached {age_h:.1f} h ago" if self.from_cache else "package index asked now"


class ReleaseIndex:
    """The index's transformers versions, asked at most once per process and cached on disk for a day."""

    def __init__(self, cache_file: Path | None = None, fetch: Callable[[], tuple[str, ...]] | None = None,
                 max_age_s: float = INDEX_MAX_AGE_S) -> None:
        self.cache_file = cache_file or cache_root() / "index" / "transformers.json"
        self.fetch = fetch or (lambda: index_versions(pre=True))
        self.max_age_s = max_age_s
        self._answer: IndexAnswer | None = None

    def _read_cache(self) -> IndexAnswer | None:
        try:
            data = json.loads(self.cache_file.read_text(encoding="utf-8"))
            return IndexAnswer(tuple(data["versions"]), float(data["fetched_at"]), from_cache=True)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def answer(self, needed_for: str, must_have: tuple[str, ...] = ()) -> IndexAnswer:
        """The versions; ReleaseSetError naming `needed_for` when neither index nor cache answers.

        A cached answer lacking one of `must_have` is refreshed: a release published since."""
        if self._answer is not None and set(must_have) <= set(self._answer.versions):
            return self._answer
        cached = self._read_cache()
        if cached and time.time() - cached.fetched_at < self.max_age_s and set(must_have) <= set(cached.versions):
            self._answer = cached
            return cached
        try:
            versions = tuple(self.fetch())
        except (RuntimeError, OSError) as exc:
            if cached is None:
                raise ReleaseSetError(f"{needed_for} cannot be looked up: the package index cannot be reached and no list of "
                                      f"releases is cached in {self.cache_file} ({exc}); run once with network access "
                                      "or list exact releases") from None
            self._answer = IndexAnswer(cached.versions, cached.fetched_at, from_cache=True, stale=True)
            return self._answer
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        self.cache_file.write_text(json.dumps({"fetched_at": time.time(), "versions": list(versions)}), encoding="utf-8")
        self._answer = IndexAnswer(versions, time.time(), from_cache=False)
        return self._answer


def final_releases(versions: tuple[str, ...], pre: bool = False) -> list[Version]:
    """Parsable versions, oldest first; pre- and dev releases only with `pre` (post-releases are final)."""
    parsed = []
    for raw in versions:
        try:
            version = Version(raw)
        except InvalidVersion:
            continue
        if pre or not (version.is_prerelease or version.is_devrelease):
            parsed.append(version)
    return sorted(set(parsed))


@dataclass(frozen=True)
class ResolvedSet:
    """What was asked for, what it expanded to, and the index note (None: no specifier, index not asked)."""

    requested: tuple[str, ...]
    releases: tuple[str, ...]
    index_note: str | None
    index_releases: tuple[str, ...] = ()
    """Every final release on the index from the oldest of `releases` to the newest (empty: index not
    asked): two releases of the set are neighbours when no final release lies between them here."""

    def to_json(self) -> dict[str, object]:
        return {"requested": list(self.requested), "releases": list(self.releases), "index": self.index_note,
                "index_releases": list(self.index_releases)}


def span(versions: tuple[str, ...], releases: list[str] | tuple[str, ...], pre: bool = False) -> tuple[str, ...]:
    """The final releases among the index's `versions` from the oldest of `releases` to the newest."""
    parsed = [Version(r) for r in releases if is_version(r)]
    if not parsed:
        return ()
    low, high = min(parsed), max(parsed)
    return tuple(str(v) for v in final_releases(versions, pre) if low <= v <= high)


def results_releases(folder: Path) -> list[str]:
    """The releases a results folder already holds (`tf4_57_6.jsonl`, `tf4_57_6-cross.jsonl`), `latest` and
    `main` aside: a run into a folder with an earlier run's results reports on both runs' releases."""
    stems = {path.name.removesuffix(".jsonl").removesuffix("-cross") for path in folder.glob("tf*.jsonl")}
    return sorted({found for stem in stems if is_version(found := stem[2:].replace("_", "."))}, key=Version)


def resolve(items: list[str] | tuple[str, ...], index: ReleaseIndex, pre: bool = False) -> ResolvedSet:
    """Expand specifiers in place (oldest first within one), keep exact releases as written, drop repeats."""
    releases: list[str] = []
    note = None
    for item in items:
        if not is_specifier(item):
            expanded = [item]
        else:
            specifier = parse_specifier(item)
            answer = index.answer(f"the release set {item!r}")
            note = answer.note()
            expanded = [str(v) for v in final_releases(answer.versions, pre) if specifier.contains(v, prereleases=pre)]
            if not expanded:
                raise ReleaseSetError(f"the release set {item!r} matches no {'' if pre else 'final '}transformers release "
                                      f"on the package index ({note})")
        releases += [r for r in expanded if r not in releases]
    return ResolvedSet(tuple(items), tuple(releases), note)


def between(low: str, high: str, index: ReleaseIndex, pre: bool = False) -> list[str]:
    """Final releases from `low` to `high` inclusive, oldest first (either may be the newer one)."""
    a, b = sorted((Version(low), Version(high)))
    answer = index.answer(f"the releases between {low} and {high}")
    found = [str(v) for v in final_releases(answer.versions, pre) if a <= v <= b]
    for end in (low, high):
        if end not in found and end not in SPECIAL:
            found.append(end)
    return sorted(found, key=Version)


def print_resolved(resolved: ResolvedSet, stream: TextIO | None = None) -> None:
    """One line before anything runs: what a specifier became, so nobody wonders what was tested."""
    if resolved.index_note is None:
        return
    print(f"releases: {', '.join(resolved.releases)} (from {', '.join(resolved.requested)}; {resolved.index_note})",
          file=stream or sys.stderr, flush=True)
