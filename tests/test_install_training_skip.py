"""trl and peft are installed into a release environment only when a selected probe may train:
bisecting load/forward cells over many releases does not pay pip's resolver for each."""

from __future__ import annotations

import pytest

from compat_matrix.envs import install_training


def test_only_training_probes_and_probes_of_the_users_own_need_trl() -> None:
    assert not install_training.needs_training(["load", "forward", "grpo_step"])
    assert install_training.needs_training(["load", "trl_grpo"])
    assert install_training.needs_training(["load", "my_lora_step"]), "a user probe may import trl"


def test_nothing_is_installed_when_no_selected_probe_trains(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(install_training, "install", lambda requirements, constraints: calls.append(requirements) or (True, ""))
    monkeypatch.setattr(install_training, "_done_before", lambda release, wanted: False)
    monkeypatch.setattr(install_training, "REPORT", install_training.REPORT.with_name("never-written.json"))
    monkeypatch.setenv("COMPAT_MATRIX_PROBES", "forward,load")
    assert install_training.main() == 0 and calls == []
    assert "not installed (no selected probe trains, no selected profile has an adapter: forward,load)" in capsys.readouterr().out


def installed_by_main(monkeypatch: pytest.MonkeyPatch, tmp_path, **env: str) -> list[str]:
    """The packages `main` asks pip for under these environment variables (pip itself not run)."""
    calls: list[list[str]] = []
    monkeypatch.setattr(install_training, "install", lambda requirements, constraints: calls.append(requirements) or (True, ""))
    monkeypatch.setattr(install_training, "_done_before", lambda release, wanted: False)
    monkeypatch.setattr(install_training, "REPORT", tmp_path / "training.json")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert install_training.main() == 0
    return [r[0].split("==")[0] for r in calls]


def test_a_selection_with_a_training_probe_installs_both(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    assert installed_by_main(monkeypatch, tmp_path, COMPAT_MATRIX_PROBES="load,trl_grpo") == ["trl", "peft"]



def test_a_selection_whose_profile_has_an_adapter_installs_peft_only(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    assert installed_by_main(monkeypatch, tmp_path, COMPAT_MATRIX_PROBES="grpo_step,load", COMPAT_MATRIX_ADAPTERS="1") == ["peft"]
