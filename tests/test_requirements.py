"""The requirements files install what pyproject.toml declares, and nothing it does not."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
PINNED_BY_TOX = {"torch", "transformers"}
"""tox.ini installs these per release environment; requirements/harness.txt leaves them out."""
CLI_ONLY = {"tox", "tox-uv"}
"""The CLI runs tox; the release environments it makes do not need it."""


def listed(path: Path) -> dict[str, str]:
    """name -> specifier of each requirement line (`-r` includes and comments skipped)."""
    found = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            found[requirement.name.lower()] = str(requirement.specifier)
    return found


def declared(*groups: str) -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = [line for g in groups for line in (project["dependencies"] if g == "" else project["optional-dependencies"][g])]
    return {Requirement(line).name.lower(): str(Requirement(line).specifier) for line in lines}


def test_harness_requirements_are_the_dependencies_and_the_harness_extra() -> None:
    expected = {k: v for k, v in declared("", "harness").items() if k not in PINNED_BY_TOX | CLI_ONLY}
    assert listed(REPO / "requirements" / "harness.txt") == expected


def test_dev_requirements_are_the_dev_extra_less_what_harness_txt_brings() -> None:
    harness = listed(REPO / "requirements" / "harness.txt")
    dev = listed(REPO / "requirements" / "dev.txt")
    extra = declared("dev")
    assert set(dev) <= set(extra), f"in requirements/dev.txt, not in pyproject's dev extra: {sorted(set(dev) - set(extra))}"
    assert {k: v for k, v in extra.items() if k not in harness} == {k: v for k, v in dev.items() if k not in harness}
    assert all(extra[k] == harness[k] for k in extra.keys() & harness.keys()), "a specifier differs"


def test_the_check_sees_a_planted_difference(tmp_path: Path) -> None:
    planted = tmp_path / "harness.txt"
    planted.write_text((REPO / "requirements" / "harness.txt").read_text().replace("pytest-timeout>=2.3\n", ""))
    expected = {k: v for k, v in declared("", "harness").items() if k not in PINNED_BY_TOX | CLI_ONLY}
    assert listed(planted) != expected and "pytest-timeout" in set(expected) - set(listed(planted))
