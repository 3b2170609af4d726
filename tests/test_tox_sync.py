"""matrix.yaml is the one source of truth: tox.ini and the strategy/probe registries must agree."""

from __future__ import annotations

import configparser
from pathlib import Path

from compat_matrix.releases import env_name
from compat_matrix.runner import listed_envs
from compat_matrix.spec import REWARD_NAMES, STRATEGY_NAMES
from reports.status import PROBE_ORDER
from compat_matrix.validate import DEFAULT_MATRIX, load_matrix

TOX_INI = Path(__file__).resolve().parent.parent / "tox.ini"


def _tox() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(TOX_INI)
    return parser


def test_tox_envs_match_the_matrix_releases() -> None:
    wanted = {env_name(r) for r in load_matrix(DEFAULT_MATRIX).transformers}
    listed = listed_envs()
    missing, extra = sorted(wanted - listed), sorted(listed - wanted)
    assert not missing, f"tox.ini env_list lacks {missing}: add them to env_list and give each a " \
                        f"'<env>: COMPAT_MATRIX_REQUESTED = <release>' line in [testenv] set_env"
    assert not extra, f"tox.ini lists {extra}, which matrix.yaml's transformers list does not: remove them or add the releases"


def test_each_listed_release_env_pins_its_release() -> None:
    set_env = _tox().get("testenv", "set_env")
    for release in load_matrix(DEFAULT_MATRIX).transformers:
        line = f"{env_name(release)}: COMPAT_MATRIX_REQUESTED = {release}"
        assert line in set_env, f"tox.ini [testenv] set_env needs the line '{line}'"


def test_every_env_has_a_description_and_the_pass_env_the_issue_asks_for() -> None:
    tox = _tox()
    for section in [s for s in tox.sections() if s.startswith("testenv")]:
        assert tox.get(section, "description", fallback=None) or section != "testenv"
    pass_env = tox.get("testenv", "pass_env").split()
    assert {"HF_*", "CUDA_*", "PYTEST_*", "GITHUB_*"} <= set(pass_env)
    assert "torch==" in tox.get("testenv", "deps") and "2.13.0" in tox.get("testenv", "deps")


def test_strategy_and_probe_registries_match_the_vocabulary() -> None:
    import loader
    from compat_tests.probes import PROBES

    assert tuple(loader.STRATEGIES) == STRATEGY_NAMES, "loader.STRATEGIES and compat_matrix.spec.STRATEGY_NAMES differ"
    assert tuple(PROBES) == PROBE_ORDER, "compat_tests.probes.PROBES and reports.status.PROBE_ORDER differ"
    from compat_tests.probes.rewards import REWARDS

    assert tuple(REWARDS) == REWARD_NAMES, "compat_tests.probes.rewards.REWARDS and compat_matrix.spec.REWARD_NAMES differ"
