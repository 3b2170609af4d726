"""Throwaway release environments (bisect's), kept in a least-recently-used cache with a size cap.

Bisecting 30 releases makes 30 environments; they live under `<cache>/envs/<env>` and, after each
new one, the least recently used are removed until the folder fits the cap (COMPAT_MATRIX_ENV_CACHE_GB,
default 5). uv links most of an environment's files from its package cache, so an environment
counts only what it alone holds (tens of MB; a copy-mode install, e.g. a cache on another disk,
counts in full). uv rebuilds a removed one in seconds from its package cache.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from compat_matrix.envs.release_sets import cache_root

DEFAULT_CAP_GB = 5.0
USED_MARK = ".compat-matrix-used"
"""Touched whenever an environment is used: its mtime is the LRU order."""


class EnvCacheError(ValueError):
    """A bad cap: the message names the variable or option and the fix."""


def env_root() -> Path:
    return cache_root() / "envs"


def cap_bytes(value: str | None = None) -> int:
    """The cap in bytes from `value` or COMPAT_MATRIX_ENV_CACHE_GB (GB, a number > 0)."""
    raw = value if value is not None else os.environ.get("COMPAT_MATRIX_ENV_CACHE_GB", str(DEFAULT_CAP_GB))
    try:
        gb = float(raw)
    except ValueError:
        gb = -1.0
    if gb <= 0:
        raise EnvCacheError(f"environment cache cap {raw!r}: give a size in GB above 0, e.g. COMPAT_MATRIX_ENV_CACHE_GB=5")
    return int(gb * 1024**3)


@dataclass(frozen=True)
class CachedEnv:
    name: str
    path: Path
    size: int
    """Bytes its removal frees: files hard-linked from uv's package cache (torch, transformers: most of
    an environment) stay on disk in that cache whatever happens, so they do not count."""
    last_used: float


def folder_size(path: Path) -> int:
    """Bytes of the files only this folder holds (one link). Counting every link made each uv
    environment ~1 GB instead of the few MB it really occupies, so the cap removed environments
    that freed nothing, and removing one takes ~10 s on a busy disk."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                stat = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if stat.st_nlink == 1:
                total += stat.st_blocks * 512
    return total


def mark_used(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / USED_MARK).touch()


def list_envs(root: Path | None = None) -> list[CachedEnv]:
    """Cached environments, most recently used first."""
    root = root or env_root()
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        if path.is_dir():
            mark = path / USED_MARK
            used = mark.stat().st_mtime if mark.exists() else path.stat().st_mtime
            found.append(CachedEnv(path.name, path, folder_size(path), used))
    return sorted(found, key=lambda e: -e.last_used)


def prune(cap: int, keep: tuple[str, ...] = (), root: Path | None = None) -> list[CachedEnv]:
    """Remove least recently used environments (never those in `keep`) until the rest fit in `cap`."""
    envs = list_envs(root)
    total = sum(e.size for e in envs)
    removed = []
    for env in reversed(envs):
        if total <= cap:
            break
        if env.name in keep:
            continue
        shutil.rmtree(env.path, ignore_errors=True)
        total -= env.size
        removed.append(env)
    return removed


def describe(envs: list[CachedEnv]) -> str:
    lines = [f"{e.name:<16} {e.size / 1024**3:6.2f} GB  last used {time.strftime('%Y-%m-%d %H:%M', time.localtime(e.last_used))}"
             for e in envs]
    total = sum(e.size for e in envs) / 1024**3
    return "\n".join(lines + [f"{len(envs)} environments, {total:.2f} GB in {env_root()}"])
