"""compat-matrix outside this repository: the tox configuration it uses, the `install:` list, where it
finds matrix.yaml, what it says without tox, and what `init` writes."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from compat_matrix.cli import common, run as run_commands
from compat_matrix.cli.common import UsageProblem, find_matrix
from compat_matrix.cli import main
from compat_matrix.envs.tox_setup import ENVS, HARNESS_PACKAGES, install_lines, tox_setup, uv_binary
from compat_matrix.init import scaffold
from compat_matrix.spec.schema import REVISION_PLACEHOLDER
from compat_matrix.spec.validate import MatrixError, load_matrix
from reports.version import VERSION

REPO = Path(__file__).resolve().parent.parent
TOX_TEXT = (REPO / "tox.ini").read_text(encoding="utf-8")
PACKAGED = {"tox.ini", "requirements/none.txt",
            *re.findall(r"\{env:COMPAT_MATRIX_HARNESS:\{toxinidir\}\}/([\w./-]+)", TOX_TEXT)} - {"compat_tests"}
"""What a release environment reads besides the harness packages: tox.ini, the files it names under
COMPAT_MATRIX_HARNESS, and the empty `install:` default; each is packaged under compat_matrix/envs."""


def test_the_packaged_tox_files_are_the_repositorys_own() -> None:
    assert {"tox.ini", "requirements/harness.txt"} <= PACKAGED
    for name in PACKAGED:
        assert (ENVS / name).resolve() == (REPO / name).resolve(), f"compat_matrix/envs/{name} must be a link to ../../{name}"
    data = {str(p.relative_to(ENVS)) for p in ENVS.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    assert data == PACKAGED, "compat_matrix/envs/ holds exactly what tox.ini names besides its modules (add or remove the link)"


@pytest.mark.slow
def test_the_wheel_carries_what_release_environments_need(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(REPO), "-w", str(tmp_path)],
                   check=True, capture_output=True, timeout=600)
    wheel = zipfile.ZipFile(next(tmp_path.glob("compat_matrix-*.whl")))
    names = set(wheel.namelist())
    for name in PACKAGED:
        assert wheel.read(f"compat_matrix/envs/{name}") == (REPO / name).read_bytes(), name
    needed = {"compat_tests/plugin.py", "compat_tests/conftest.py", "compat_tests/test_matrix.py",
              "compat_tests/tiny/checkpoint.py", "compat_tests/remote_code/tiny_decoder/modeling_tiny_decoder.py",
              "compat_tests/probes/grpo_step.py", "reports/index_template.html", "loader/kwargs.py",
              "compat_matrix/init/templates/matrix.yml", "compat_matrix/init/templates/nightly.yml",
              "compat_matrix/init/templates/known-models.yaml"}
    assert needed <= names, sorted(needed - names)
    assert wheel.read("compat_matrix/init/templates/known-models.yaml") == (REPO / "matrix.yaml").read_bytes()


def test_install_entries_are_made_absolute_from_the_matrix_folder(tmp_path: Path) -> None:
    (tmp_path / "vendored").mkdir()
    lines = install_lines(("-e .", "./vendored", "vendored", "trl==0.20.0", "git+https://github.com/huggingface/peft@v0.17.1"),
                          tmp_path / "matrix.yaml")
    root = str(tmp_path.resolve())
    assert lines == [f"-e {root}", f"{root}/vendored", f"{root}/vendored", "trl==0.20.0",
                     "git+https://github.com/huggingface/peft@v0.17.1"]


def test_outside_a_checkout_the_packaged_configuration_runs_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPAT_MATRIX_CACHE", str(tmp_path / "cache"))
    project = tmp_path / "project"
    project.mkdir()
    setup = tox_setup(project / "matrix.yaml", project / "out", ("-e .",))
    assert setup.config == tmp_path / "cache" / "harness" / "tox.ini"
    assert setup.config.read_text() == (REPO / "tox.ini").read_text()
    for name in HARNESS_PACKAGES:
        assert (setup.harness / name).resolve() == (REPO / name).resolve()
    assert setup.install_file.read_text().splitlines()[1:] == [f"-e {project.resolve()}"]
    uv = uv_binary()  # tox-uv's uv, for install_training; where it is missing, pip installs trl and peft
    assert setup.environ() == {"COMPAT_MATRIX_HARNESS": str(setup.harness), "COMPAT_MATRIX_INSTALL": str(setup.install_file),
                               **({"COMPAT_MATRIX_UV": uv} if uv else {})}
    assert uv is None or Path(uv).is_file()
    assert "tf4_57_6" in setup.listed_envs() and str(setup.workdir).startswith(str(tmp_path / "cache" / "tox"))
    (project / "tox.ini").write_text("[tox]\nenv_list = mine\n")
    own = tox_setup(project / "matrix.yaml", project / "out")
    assert own.config == project / "tox.ini" and own.listed_envs() == {"mine"}
    assert own.install_file.name == "none.txt", "no install: list, no requirements file of its own"


def test_in_this_repository_its_own_tox_ini_and_folders_are_used() -> None:
    setup = tox_setup(REPO / "matrix.yaml", REPO / "compat-report")
    assert setup.config == REPO / "tox.ini" and setup.harness == REPO and setup.workdir == REPO / ".tox"


def test_matrix_yaml_is_found_upward_from_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "matrix.yaml").write_text("transformers: [4.57.6]\nmodels: []\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_matrix(deep) == tmp_path / "matrix.yaml"
    monkeypatch.setattr(common, "DEFAULT_MATRIX", tmp_path / "absent.yaml")
    with pytest.raises(UsageProblem, match="no matrix.yaml in .* or any folder above it: pass --matrix FILE"):
        find_matrix(Path("/"))


def test_without_tox_the_run_stops_before_any_cell_and_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import compat_matrix.run.runner

    started: list[object] = []
    monkeypatch.setattr(compat_matrix.run.runner, "tox_available", lambda: False)
    monkeypatch.setattr(compat_matrix.run.runner, "run_release", lambda *a, **k: started.append(a))
    code = main(["--matrix", str(REPO / "matrix.yaml"), "run", "--transformers", "4.57.6", "--models", "llama",
                     "--out", str(tmp_path)])
    assert code == 2 and started == []
    assert "pip install 'tox>=4.20'" in capsys.readouterr().err


def test_init_writes_tiny_recipes_for_known_types_and_a_pinned_placeholder_otherwise(tmp_path: Path,
                                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["init", str(tmp_path), "--models", "Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2.5-VL-3B-Instruct",
                     "meta-llama/Llama-3.2-1B-Instruct", "tiiuae/falcon-7b", "--install", "-e .",
                     "--strategy", "mine=mypkg.models:load", "--probe", "step=mypkg.checks:step", "--package", "compat-matrix==9.9",
                     "--workflow-repo", "acme/compat-matrix"])
    assert code == 0
    text = (tmp_path / "matrix.yaml").read_text()
    assert text.startswith("# compat-matrix: what is tested") and "same model type as Qwen/Qwen2.5-VL-7B-Instruct" in text
    with pytest.raises(MatrixError, match=f"revision is still '{REVISION_PLACEHOLDER}'"):
        load_matrix(tmp_path / "matrix.yaml")
    (tmp_path / "matrix.yaml").write_text(text.replace(REVISION_PLACEHOLDER, "a1" * 20))
    matrix = load_matrix(tmp_path / "matrix.yaml")
    assert [(m.key, m.hub_id, m.source) for m in matrix.models] == [
        ("qwen2_5_vl", "Qwen/Qwen2.5-VL-7B-Instruct", "tiny"), ("llama", "meta-llama/Llama-3.2-1B-Instruct", "tiny"),
        ("falcon_7b", "tiiuae/falcon-7b", "hub")]
    assert matrix.user_strategies["mine"].callable == "mypkg.models:load" and matrix.install == ("-e .",)
    assert "step" in matrix.user_probes
    assert any("VLM-R1 break" in e.reason for e in matrix.expectations), "the measured expectations come along"
    assert all(e.repro is None for e in matrix.expectations), "repro scripts stay in compat-matrix's repository"
    assert main(["--matrix", str(tmp_path / "matrix.yaml"), "validate"]) == 0
    workflow = yaml.safe_load((tmp_path / scaffold.WORKFLOW_PATH).read_text())["jobs"]["matrix"]
    assert workflow["uses"] == f"acme/compat-matrix/.github/workflows/matrix.yml@v{VERSION}"
    assert workflow["with"]["package"] == "compat-matrix==9.9", "a package other than the tag's release is passed on"
    assert main(["init", str(tmp_path)]) == 2, "an existing matrix.yaml is not overwritten without --force"


def test_init_standalone_writes_the_whole_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["init", str(tmp_path), "--models", "meta-llama/Llama-3.2-1B-Instruct", "--standalone",
                     "--package", "compat-matrix==9.9"]) == 0
    workflow = yaml.safe_load((tmp_path / scaffold.WORKFLOW_PATH).read_text())
    assert {"plan", "test", "cross-release", "report", "deploy", "regressions"} <= set(workflow["jobs"])
    assert workflow["env"]["COMPAT_MATRIX_PACKAGE"] == "${{ inputs.package || 'compat-matrix==9.9' }}"
    assert "uses: ./" not in (tmp_path / scaffold.WORKFLOW_PATH).read_text()


def test_a_known_model_type_is_found_by_the_longest_key_in_the_id() -> None:
    known = scaffold.known_models()
    assert scaffold.match_known("org/Qwen2-VL-7B", known)["key"] == "qwen2_vl"  # type: ignore[index]
    assert scaffold.match_known("org/Qwen2.5-0.5B", known)["key"] == "qwen2"  # type: ignore[index]
    assert scaffold.match_known("org/gemma-3-27b-it", known)["key"] == "gemma3"  # type: ignore[index]
    assert scaffold.match_known("org/gemma-2-9b-it", known)["key"] == "gemma2"  # type: ignore[index]
    assert scaffold.match_known("org/Mistral-Small-24B", known)["key"] == "mistral"  # type: ignore[index]
    assert scaffold.match_known("tiiuae/falcon-7b", known) is None


@pytest.mark.parametrize("round_trip_only", [False, True])
def test_round_trip_only_leaves_the_as_published_cells_to_the_cross_release_job(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, round_trip_only: bool) -> None:
    import compat_matrix.run.published
    import compat_matrix.run.runner

    runs: list[dict[str, object]] = []

    def run_release(*args: object, **kwargs: object) -> object:
        runs.append(kwargs)
        return type("Run", (), {"interrupted": False, "env": "tf4_57_6", "lines": []})()

    monkeypatch.setattr(compat_matrix.run.runner, "tox_available", lambda: True)
    monkeypatch.setattr(compat_matrix.run.runner, "run_release", run_release)
    monkeypatch.setattr(compat_matrix.run.runner, "installed_release", lambda path: "4.57.6")
    monkeypatch.setattr(compat_matrix.run.published, "build_writers", lambda *a, **k: None)
    monkeypatch.setattr(run_commands, "report_into", lambda *a, **k: 0)
    flags = ["--round-trip-only"] if round_trip_only else []
    assert main(["--matrix", str(REPO / "matrix.yaml"), "run", "--transformers", "4.57.6", "--models", "llama",
                     "--out", str(tmp_path), *flags]) == 0
    assert [run.get("published_in") for run in runs] == ([None] if round_trip_only else [None, "4.57.6"])
    assert main(["--matrix", str(REPO / "matrix.yaml"), "run", "--transformers", "4.57.6", "--round-trip-only",
                     "--cross-release", "--out", str(tmp_path)]) == 2, "the two flags contradict each other"


def test_version_is_the_one_the_package_and_the_report_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"compat-matrix {VERSION}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", VERSION)
    assert (REPO / "CHANGELOG.md").read_text(encoding="utf-8").count(f"\n## {VERSION} ") == 1, "CHANGELOG.md has this version"
