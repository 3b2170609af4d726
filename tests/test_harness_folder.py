"""The harness folder tox installs from is made safely by several threads at once: bisect tests
two releases at once from threads of one process, and both make it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from compat_matrix.envs import tox_setup


def test_threads_of_one_process_make_the_harness_folder_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    errors: list[BaseException] = []
    for round_ in range(10):
        monkeypatch.setenv("COMPAT_MATRIX_CACHE", str(tmp_path / str(round_)))
        start = threading.Barrier(4)

        def make() -> None:
            start.wait()
            try:
                tox_setup.harness_folder()
            except BaseException as error:  # noqa: BLE001 - collected and shown below
                errors.append(error)

        threads = [threading.Thread(target=make) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors
    folder = tmp_path / "0" / "harness"
    assert {p.name for p in folder.iterdir() if p.name.startswith(".")} == set()  # no staged name left behind
    assert all((folder / name).is_symlink() for name in tox_setup.HARNESS_PACKAGES)
