"""bisect's environment cache: least recently used removed first, down to the cap; bad caps refused."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from compat_matrix.cli import main
from compat_matrix.envs.env_cache import EnvCacheError, cap_bytes, list_envs, mark_used, prune


def make_env(root: Path, name: str, size: int, used: float) -> None:
    mark_used(root / name)
    (root / name / "blob").write_bytes(os.urandom(size))
    os.utime(root / name / ".compat-matrix-used", (used, used))


def test_prune_removes_the_least_recently_used_until_the_rest_fit(tmp_path: Path) -> None:
    now = time.time()
    for age, name in enumerate(["tf5_3_0", "tf5_2_0", "tf5_1_0", "tf5_0_0"]):
        make_env(tmp_path, name, 100_000, now - age * 60)
    assert [e.name for e in list_envs(tmp_path)] == ["tf5_3_0", "tf5_2_0", "tf5_1_0", "tf5_0_0"]
    one = list_envs(tmp_path)[0].size
    removed = prune(2 * one, keep=("tf5_0_0",), root=tmp_path)
    assert [e.name for e in removed] == ["tf5_1_0", "tf5_2_0"], "oldest first, never the one in use"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tf5_0_0", "tf5_3_0"]


def test_a_bad_cap_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPAT_MATRIX_ENV_CACHE_GB", "lots")
    with pytest.raises(EnvCacheError, match="COMPAT_MATRIX_ENV_CACHE_GB"):
        cap_bytes()
    assert cap_bytes("0.5") == 512 * 1024**2


def test_envs_command_lists_and_prunes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COMPAT_MATRIX_CACHE", str(tmp_path))
    make_env(tmp_path / "envs", "tf5_1_0", 10_000, time.time())
    assert main(["envs"]) == 0 and "tf5_1_0" in capsys.readouterr().out
    assert main(["envs", "prune", "--all"]) == 0
    assert "removed tf5_1_0" in capsys.readouterr().out and not list_envs(tmp_path / "envs")
    assert main(["envs", "--max-gb", "-1"]) == 2


def test_files_linked_from_a_package_cache_do_not_count_against_the_cap(tmp_path: Path) -> None:
    """uv hard-links torch and transformers from its cache: removing the env frees none of that."""
    make_env(tmp_path, "tf5_0_0", 64 * 1024, time.time())
    shared = tmp_path / "uv-cache-file"
    shared.write_bytes(os.urandom(1024 * 1024))
    os.link(shared, tmp_path / "tf5_0_0" / "libtorch.so")
    [env] = list_envs(tmp_path)
    assert 64 * 1024 <= env.size < 1024 * 1024
