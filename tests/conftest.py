"""Options for tests/e2e, which check the report of a matrix run that scripts/test.sh just made; and
a results store of the test session's own."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def own_results_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Runs the tests start (through the CLI, in subprocesses too) store into a folder of this session:
    cells another session stored under the same key would otherwise stand in for the ones under test."""
    before = os.environ.get("COMPAT_MATRIX_STORE")
    os.environ["COMPAT_MATRIX_STORE"] = str(tmp_path_factory.mktemp("store"))
    yield
    if before is None:
        os.environ.pop("COMPAT_MATRIX_STORE", None)
    else:
        os.environ["COMPAT_MATRIX_STORE"] = before


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("compat-matrix e2e")
    group.addoption("--report-dir", default=None, help="output folder of a `compat-matrix run` to check (tests/e2e)")
    group.addoption("--releases", default=None, help="space-separated releases that run covered (tests/e2e)")
    group.addoption("--cross-release", action="store_true", help="that run had --cross-release (tests/e2e)")
    group.addoption("--bisect-dir", default=None,
                    help="folder of scripts/test.sh's bisect run: bisect.json and the matrix --record wrote (tests/e2e)")
    group.addoption("--cross-bisect-dir", default=None,
                    help="folder of scripts/test.sh's cross-release bisect: bisect.json and the matrix --record wrote (tests/e2e)")
    group.addoption("--history-dir", default=None,
                    help="folder of scripts/test.sh's history runs from the store: first, second, third and their .err (tests/e2e)")
