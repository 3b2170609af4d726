"""trl and peft are installed into a release environment only when a selected probe may train:
bisecting load/forward cells over many releases does not pay pip's resolver for each."""

from __future__ import annotations

from pathlib import Path

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
    monkeypatch.setattr(install_training, "_done_before", lambda *args: False)
    monkeypatch.setattr(install_training, "REPORT", install_training.REPORT.with_name("never-written.json"))
    monkeypatch.setenv("COMPAT_MATRIX_PROBES", "forward,load")
    assert install_training.main() == 0 and calls == []
    assert "not installed (no selected probe trains, no selected profile has an adapter: forward,load)" in capsys.readouterr().out


def installed_by_main(monkeypatch: pytest.MonkeyPatch, tmp_path, **env: str) -> list[str]:
    """The packages `main` asks pip for under these environment variables (pip itself not run)."""
    calls: list[list[str]] = []
    monkeypatch.setattr(install_training, "install", lambda requirements, constraints: calls.append(requirements) or (True, ""))
    monkeypatch.setattr(install_training, "_done_before", lambda *args: False)
    monkeypatch.setattr(install_training, "REPORT", tmp_path / "training.json")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert install_training.main() == 0
    return [r[0].split("==")[0] for r in calls]


def test_a_selection_with_a_training_probe_installs_both(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    assert installed_by_main(monkeypatch, tmp_path, COMPAT_MATRIX_PROBES="load,trl_grpo") == ["trl", "peft"]



def test_a_selection_whose_profile_has_an_adapter_installs_peft_only(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    assert installed_by_main(monkeypatch, tmp_path, COMPAT_MATRIX_PROBES="grpo_step,load", COMPAT_MATRIX_ADAPTERS="1") == ["peft"]


def test_a_constraints_file_in_the_environment_holds_for_every_training_install(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """CI pins trl and peft this way (requirements/ci-training.txt): a new release of either must not change its verdicts."""
    pins = tmp_path / "pins.txt"
    pins.write_text("peft==0.21.2\ntrl==1.16.0")
    seen: list[str] = []
    monkeypatch.setattr(install_training, "install", lambda requirements, constraints: seen.append(constraints.read_text()) or (True, ""))
    monkeypatch.setattr(install_training, "REPORT", tmp_path / "training.json")
    monkeypatch.setenv("COMPAT_MATRIX_PROBES", "trl_grpo")
    monkeypatch.setenv(install_training.CONSTRAINTS_ENV, str(pins))
    assert install_training.main() == 0
    assert len(seen) == 2 and all(text.endswith("peft==0.21.2\ntrl==1.16.0\n") and "transformers==" in text for text in seen)
    installed = {"trl": "1.16.0", "peft": "0.21.2"}
    monkeypatch.setattr(install_training, "_installed", lambda package: installed.get(package))
    wanted = {"trl": "trl", "peft": "peft"}
    release = install_training.importlib.metadata.version("transformers")
    assert install_training._done_before(release, wanted, "peft==0.21.2\ntrl==1.16.0\n")
    assert not install_training._done_before(release, wanted, "peft==0.22.0\n"), "other pins: install again"
    assert not install_training._done_before(release, wanted, ""), "pins dropped: install the newest again"


def test_an_unreadable_constraints_file_stops_with_the_variable_named(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv(install_training.CONSTRAINTS_ENV, str(tmp_path / "missing.txt"))
    with pytest.raises(SystemExit, match="COMPAT_MATRIX_TRAINING_CONSTRAINTS=.*missing.txt: cannot read it"):
        install_training.extra_constraints()


def test_trl_and_peft_install_with_the_uv_tox_made_the_environment_with_unless_a_torch_index_is_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    uv = tmp_path / "uv"
    uv.write_text("")
    monkeypatch.delenv("COMPAT_MATRIX_TORCH_INDEX", raising=False)
    monkeypatch.delenv(install_training.UV_ENV, raising=False)
    assert install_training.installer()[:3] == [sys.executable, "-m", "pip"]
    monkeypatch.setenv(install_training.UV_ENV, str(tmp_path / "gone"))
    assert install_training.installer()[:3] == [sys.executable, "-m", "pip"], "a uv that is not there: pip"
    monkeypatch.setenv(install_training.UV_ENV, str(uv))
    assert install_training.installer() == [str(uv), "pip", "install", "--quiet", "--python", sys.executable]
    monkeypatch.setenv("COMPAT_MATRIX_TORCH_INDEX", "https://download.pytorch.org/whl/cu128")
    assert install_training.installer()[:3] == [sys.executable, "-m", "pip"], "first-index uv would take torch's index"


def test_uv_finding_no_version_is_remembered_as_pip_finding_none_is() -> None:
    said = ("no trl installs beside transformers 4.49.0 and torch (pip:   x No solution found when resolving "
            "dependencies:\n  Because only trl<=0.15 is available ...)")
    assert install_training._unresolvable(said)
    assert not install_training._unresolvable("Could not fetch URL https://pypi.org/simple/trl/: connection error")


def test_compat_matrix_tells_tox_where_its_uv_is() -> None:
    from compat_matrix.envs.tox_setup import uv_binary

    found = uv_binary()
    assert found is None or found.endswith("uv")
