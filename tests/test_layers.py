"""Who may import whom: `reports` sits below `compat_matrix` (no cycle); inside `compat_matrix` the
subpackages form layers, the spec at the bottom; release environments (probes and fixtures) take from
`compat_matrix` only the spec and the environment setup, and from `reports` only its shared
vocabulary, never the read side; and the outcome exceptions sit at the bottom of `compat_tests`, so
fixtures and probes do not depend on each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def imported(file: Path) -> set[str]:
    """Every module `file` imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO / folder).rglob("*.py") if "remote_code" not in p.parts)


def offending(file: Path, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(m for m in imported(file) if any(m == f or m.startswith(f + ".") for f in forbidden))


@pytest.mark.parametrize("file", files("reports"), ids=lambda p: str(p.relative_to(REPO)))
def test_reports_imports_neither_the_matrix_nor_the_harness(file: Path) -> None:
    assert offending(file, ("compat_matrix", "compat_tests", "loader")) == []


FIXTURES = ["compat_tests/sources.py", "compat_tests/size_guard.py", "compat_tests/environment.py",
            "compat_tests/deadline.py", *(str(p.relative_to(REPO)) for p in files("compat_tests/tiny"))]


@pytest.mark.parametrize("name", FIXTURES)
def test_fixtures_do_not_import_the_probes_or_the_harness(name: str) -> None:
    assert offending(REPO / name, ("compat_tests.probes", "compat_tests.execute", "compat_tests.plugin")) == []


def test_outcomes_import_nothing_of_the_project() -> None:
    assert offending(REPO / "compat_tests" / "outcomes.py", ("compat_tests", "compat_matrix", "loader", "reports")) == []


def test_the_check_sees_a_planted_cycle(tmp_path: Path) -> None:
    planted = tmp_path / "rejudge.py"
    planted.write_text("def f():\n    from compat_matrix.spec.validate import load_matrix\n")
    assert offending(planted, ("compat_matrix",)) == ["compat_matrix.spec.validate"]


VOCABULARY = ("reports.status", "reports.module_paths")
"""What of `reports` the spec and the harness may import: names and statuses, module paths; no reading of results."""


LAYERS = {
    "spec": (),
    "envs": ("spec",),
    "run": ("spec", "envs"),
    "bisect": ("spec", "envs", "run"),
    "judge": ("spec", "envs", "run", "bisect"),
    "repro": ("spec", "envs", "run"),
    "init": ("spec",),
}
"""What each subpackage of `compat_matrix` may import of it besides itself; only the CLI takes from all."""
IN_RELEASE_ENVIRONMENTS = ("compat_matrix.spec", "compat_matrix.envs")
"""What of `compat_matrix` the harness (run inside release environments) may import."""


def outside_layer(file: Path, package: str) -> list[str]:
    allowed = tuple(f"compat_matrix.{p}" for p in (package, *LAYERS[package]))
    return [m for m in offending(file, ("compat_matrix",)) if not any(m == a or m.startswith(a + ".") for a in allowed)]


@pytest.mark.parametrize("file", [p for name in LAYERS for p in files(f"compat_matrix/{name}")],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_each_subpackage_imports_only_the_layers_below_it(file: Path) -> None:
    assert outside_layer(file, file.relative_to(REPO / "compat_matrix").parts[0]) == []


def test_every_subpackage_has_its_layer() -> None:
    packages = {p.parent.name for p in (REPO / "compat_matrix").glob("*/__init__.py")}
    assert packages == set(LAYERS) | {"cli"}


REGISTRIES = ("loader.strategies", "compat_tests.rewards")
"""The registries whose names the spec reads (light: their implementations import transformers and
torch when they run, `tests/test_vocabulary.py` checks the spec imports neither)."""


def test_the_spec_is_the_bottom_of_compat_matrix() -> None:
    for spec in files("compat_matrix/spec"):
        assert [m for m in offending(spec, ("compat_tests", "loader")) if m not in REGISTRIES] == []
        assert [m for m in offending(spec, ("reports",)) if m not in VOCABULARY] == []


@pytest.mark.parametrize("name", REGISTRIES)
def test_the_registries_the_spec_reads_import_nothing_of_compat_matrix(name: str) -> None:
    path = REPO / name.replace(".", "/")
    for file in ([path / "__init__.py", *path.glob("*.py")] if path.is_dir() else [path.with_suffix(".py")]):
        assert offending(file, ("compat_matrix", "compat_tests.probes")) == [], file


@pytest.mark.parametrize("file", files("compat_tests", "loader"), ids=lambda p: str(p.relative_to(REPO)))
def test_the_harness_takes_only_the_spec_and_the_environment_setup(file: Path) -> None:
    assert [m for m in offending(file, ("compat_matrix",))
            if not any(m == a or m.startswith(a + ".") for a in IN_RELEASE_ENVIRONMENTS)] == []


def test_the_layer_check_sees_a_planted_import_upwards(tmp_path: Path) -> None:
    planted = tmp_path / "compat_matrix" / "spec" / "cells.py"
    planted.parent.mkdir(parents=True)
    planted.write_text("def f():\n    from compat_matrix.envs.release_sets import between\n"
                       "from compat_matrix.spec.schema import Matrix\n")
    assert outside_layer(planted, "spec") == ["compat_matrix.envs.release_sets"]
    assert outside_layer(planted, "run") == []


@pytest.mark.parametrize("file", files("compat_tests"), ids=lambda p: str(p.relative_to(REPO)))
def test_the_harness_takes_only_the_vocabulary_of_reports(file: Path) -> None:
    assert [m for m in offending(file, ("reports",)) if m not in VOCABULARY] == []


@pytest.mark.parametrize("name", VOCABULARY)
def test_the_vocabulary_imports_nothing_of_the_project(name: str) -> None:
    path = REPO / (name.replace(".", "/") + ".py")
    assert offending(path, ("compat_matrix", "compat_tests", "loader", "reports")) == []


def test_the_checks_see_a_planted_import_against_the_layers(tmp_path: Path) -> None:
    planted = tmp_path / "lora.py"
    planted.write_text("from reports.drift import normalised\nfrom compat_matrix.envs.release_sets import is_specifier\n")
    assert [m for m in offending(planted, ("reports",)) if m not in VOCABULARY] == ["reports.drift"]
    assert offending(planted, ("compat_matrix",)) == ["compat_matrix.envs.release_sets"]
