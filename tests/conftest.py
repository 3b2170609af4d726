"""Options for tests/e2e, which check the report of a matrix run that scripts/test.sh just made."""

from __future__ import annotations

import pytest


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
