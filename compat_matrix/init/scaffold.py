"""`compat-matrix init`: a commented matrix.yaml and the nightly workflow, for any repository.

Known model types get the tiny recipe and the measured expectations this project's own matrix.yaml
has for them (the package carries that file: `templates/known-models.yaml`); any other hub id gets a
`source: hub` entry, pinned to the hub's current commit where the hub answers, else to a placeholder
that validation refuses until a commit is filled in.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from compat_matrix.spec.schema import REVISION_PLACEHOLDER
from reports.version import VERSION

TEMPLATES = Path(__file__).resolve().parent / "templates"
WORKFLOW_PATH = Path(".github") / "workflows" / "compat-matrix.yml"
REUSABLE_PATH = ".github/workflows/matrix.yml"
PINNED_RELEASE = re.compile(r"inputs\.package \|\| 'compat-matrix==([^']+)'")
"""The release the reusable workflow installs when its caller names no package: this version's."""
STANDALONE_HEADER = """# The compatibility matrix of this repository's matrix.yaml, every night: one job per transformers
# release (on a GPU runner when vars.COMPAT_MATRIX_RUNNER names one), then one report published to
# GitHub Pages and an issue for regressions. Written by `compat-matrix init --standalone`: a copy of
# compat-matrix's reusable workflow that calls nothing outside this repository (and gets none of its
# fixes: `compat-matrix init` writes a caller instead). Settings: compat-matrix's docs/nightly.md.
"""


def _squash(text: str) -> str:
    """`Qwen2.5-VL-3B` -> `qwen25vl3b`: ids and keys compared without case or punctuation."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


def known_models() -> list[dict[str, Any]]:
    """The tiny model entries of the packaged matrix (one per model type the tool knows)."""
    data = yaml.safe_load((TEMPLATES / "known-models.yaml").read_text(encoding="utf-8"))
    return [m for m in data["models"] if m.get("source", "tiny") == "tiny"]


def match_known(hub_id: str, known: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The known entry for a hub id: the same id, else the longest key found in the id's name."""
    for entry in known:
        if entry["hub_id"].lower() == hub_id.lower():
            return entry
    name = _squash(hub_id.split("/")[-1])
    found = [e for e in known if _squash(e["key"]) in name]
    return max(found, key=lambda e: len(_squash(e["key"])), default=None)


def hub_key(hub_id: str) -> str:
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]", "_", hub_id.split("/")[-1].lower())).strip("_") or "model"


def pinned_revision(hub_id: str) -> str:
    """The hub's current commit of `hub_id`, or the placeholder when the hub does not answer."""
    try:
        from huggingface_hub import HfApi

        sha = HfApi().model_info(hub_id, timeout=10).sha
    except Exception:  # offline, unknown id, gated: the user pins it by hand
        return REVISION_PLACEHOLDER
    return sha or REVISION_PLACEHOLDER


def installed_from() -> str:
    """What `pip install` takes to get this compat-matrix again: its URL where pip recorded one."""
    try:
        direct = metadata.distribution("compat-matrix").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        direct = None
    if direct:
        info = json.loads(direct)
        url = info.get("url", "")
        vcs = info.get("vcs_info")
        if vcs and url:
            return f"compat-matrix @ git+{url}@{vcs.get('commit_id', '')}".rstrip("@")
        if url.startswith(("http://", "https://")):
            return f"compat-matrix @ {url}"
    return f"compat-matrix=={VERSION}"


@dataclass
class Plan:
    """What init writes into matrix.yaml."""

    models: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Comment lines for the models section (ids that share a tiny recipe, placeholders to fill)."""


def plan_models(hub_ids: list[str]) -> Plan:
    known = known_models()
    if not hub_ids:
        return Plan(models=list(known))
    plan = Plan()
    chosen: dict[str, dict[str, Any]] = {}
    for hub_id in hub_ids:
        entry = match_known(hub_id, known)
        if entry is not None:
            if entry["key"] in chosen:
                plan.notes.append(f"{hub_id}: same model type as {chosen[entry['key']]['hub_id']}, whose tiny recipe covers it")
                continue
            chosen[entry["key"]] = {**entry, "hub_id": hub_id}
            plan.models.append(chosen[entry["key"]])
            continue
        revision = pinned_revision(hub_id)
        if revision == REVISION_PLACEHOLDER:
            plan.notes.append(f"{hub_id}: no tiny recipe for its model type and the hub did not answer: put the commit to "
                              f"test in place of {REVISION_PLACEHOLDER} (validation refuses the placeholder)")
        plan.models.append({"key": hub_key(hub_id), "hub_id": hub_id, "modality": "text", "source": "hub",
                            "revision": revision})
    return plan


def _expectations_for(data: dict[str, Any], keys: set[str]) -> list[dict[str, Any]]:
    """The packaged top-level expectations that concern these models (model lists narrowed to them),
    without `repro:`: those scripts live in compat-matrix's repository, not beside the user's matrix
    (`compat-matrix repro CELL --out PATH` writes one there)."""
    kept = []
    for expectation in data.get("expectations", []):
        models = expectation.get("models")
        if models:
            narrowed = [m for m in models if m in keys]
            if not narrowed:
                continue
            expectation = {**expectation, "models": narrowed}
        kept.append({key: value for key, value in expectation.items() if key != "repro"})
    return kept


def _block(comment: str, value: dict[str, Any]) -> str:
    lines = "".join(f"# {line}".rstrip() + "\n" for line in comment.strip().splitlines())
    return lines + yaml.safe_dump(value, sort_keys=False, width=110, allow_unicode=True) + "\n"


def render_matrix(hub_ids: list[str], install: list[str], strategies: dict[str, str], probes: dict[str, str]) -> str:
    """The commented matrix.yaml text."""
    data = yaml.safe_load((TEMPLATES / "known-models.yaml").read_text(encoding="utf-8"))
    plan = plan_models(hub_ids)
    keys = {m["key"] for m in plan.models}
    builtin_strategies = list(data.get("strategies") or [])
    builtin_probes = list(data.get("probes") or [])
    text = _block("""compat-matrix: what is tested, and what is known to fail. Written by `compat-matrix init`.
Check it with `compat-matrix validate`; run it with `compat-matrix run` (results and the report go to
./compat-report). Every key is documented in compat-matrix's compat_matrix/spec/schema.py and README.md.""",
                  {"transformers": data["transformers"]})
    text += _block("One torch for every release environment (a CPU or CUDA build, see README.md).", {"torch": data["torch"]})
    text += _block("""Loading strategies: the built-in ones, and loaders of your own code as
{name: my_loader, callable: "mypackage.models:load_policy"}, called as load_policy(path, **load_kwargs).""",
                   {"strategies": builtin_strategies + [{"name": n, "callable": c} for n, c in strategies.items()]})
    text += _block("""Probes, in run order: the built-in ones, and checks of your own as
{name: my_step, callable: "mypackage.checks:one_step"}; it gets a compat_matrix.spec.user.ProbeInput.""",
                   {"probes": builtin_probes + [{"name": n, "callable": c} for n, c in probes.items()]})
    install_comment = """What every release environment installs besides torch and transformers: your own package
("-e ." is the folder of this file), trl, peft, a git URL..."""
    text += _block(install_comment, {"install": install}) if install else \
        "".join(f"# {line}\n" for line in install_comment.splitlines()) + '# install: ["-e ."]\n\n'
    text += _block("Run-wide settings (cell time limit, device, probe constants).", {"settings": data["settings"]})
    text += _block("""Known outcomes, measured by compat-matrix on these tiny models: a cell that meets its
expectation is reported, not a regression. Add yours with a reason (and an upstream link).""",
                   {"expectations": _expectations_for(data, keys)})
    notes = "".join(f"\n{note}" for note in plan.notes)
    text += _block(f"""Models: a tiny random checkpoint built from a recipe stands for each hub id (offline, seconds);
source: hub entries run where the hub is reachable (`compat-matrix prefetch`).{notes}""", {"models": plan.models})
    return text


def source_repository() -> str:
    """`owner/name` of compat-matrix on GitHub, from the installed package's `Source` project URL."""
    try:
        urls = metadata.metadata("compat-matrix").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        urls = []
    for entry in urls:
        label, _, url = entry.partition(",")
        found = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?/?", url.strip())
        if label.strip().lower() == "source" and found:
            return found.group(1)
    raise RuntimeError("this compat-matrix is not installed or names no Source URL on github.com: "
                       "pass --workflow-repo OWNER/NAME")


def _replaced(text: str, old: str, new: str, template: str) -> str:
    """`text` with `old` replaced once; a template that lost `old` is a packaging bug, said as one."""
    if text.count(old) != 1:
        raise RuntimeError(f"templates/{template} should hold {old!r} exactly once: the packaged workflow changed")
    return text.replace(old, new)


def render_caller(repository: str, tag: str, package: str | None = None) -> str:
    """The workflow a repository keeps: this repository's nightly.yml, calling the reusable workflow
    of `repository` at `tag` (`package`: what it pip-installs, when not the tag's release)."""
    text = (TEMPLATES / "nightly.yml").read_text(encoding="utf-8")
    text = _replaced(text, "name: nightly\n", "name: compat-matrix\n", "nightly.yml")
    text = _replaced(text, "group: nightly-", "group: compat-matrix-", "nightly.yml")
    text = _replaced(text, f"uses: ./{REUSABLE_PATH}\n", f"uses: {repository}/{REUSABLE_PATH}@{tag}\n", "nightly.yml")
    own = re.search(r"^      package: \.  #.*\n", text, re.M)
    if own is None:
        raise RuntimeError("templates/nightly.yml should pass `package: .`: the packaged workflow changed")
    line = f"      package: {json.dumps(package)}\n" if package else ""
    return text[:own.start()] + line + text[own.end():]


def render_standalone(package: str) -> str:
    """The reusable workflow as a workflow of its own (schedule and dispatch inputs, no outside call),
    installing compat-matrix from `package`."""
    text = (TEMPLATES / "matrix.yml").read_text(encoding="utf-8")
    cron = re.search(r'^    - cron: "([^"]+)"', (TEMPLATES / "nightly.yml").read_text(encoding="utf-8"), re.M)
    call = re.search(r"^on:\n  workflow_call:\n(?P<inputs>    inputs:\n(?:      .*\n|        .*\n|          .*\n)+)"
                     r"    secrets:\n(?:      .*\n|        .*\n)+", text, re.M)
    if cron is None or call is None:
        raise RuntimeError("templates/matrix.yml or nightly.yml lost its workflow_call inputs or schedule")
    on = (f'on:\n  schedule:\n    - cron: "{cron.group(1)}"  # off the hour: GitHub delays or drops runs at :00\n'
          f"  workflow_dispatch:\n{call.group('inputs')}")
    text = text[:call.start()] + on + text[call.end():]
    header = text[:text.index("name: ")]
    text = _replaced(text, header, STANDALONE_HEADER, "matrix.yml")
    text = _replaced(text, "name: compat-matrix (reusable)\n", "name: compat-matrix\n", "matrix.yml")
    text = _replaced(text, "\nenv:\n", "\n# One run at a time: a second one waits rather than cancel a half-done matrix.\n"
                     "concurrency:\n  group: compat-matrix-${{ github.ref }}\n  cancel-in-progress: false\n\nenv:\n",
                     "matrix.yml")
    pinned = PINNED_RELEASE.search(text)
    if pinned is None:
        raise RuntimeError("templates/matrix.yml should default `package` to a compat-matrix release")
    quoted = "'" + package.replace("'", "''") + "'"
    return text[:pinned.start()] + f"inputs.package || {quoted}" + text[pinned.end():]


def write_files(folder: Path, files: dict[Path, str], force: bool) -> list[Path]:
    """Write each file under `folder`; an existing one is left alone unless `force` (then nothing is written)."""
    existing = [folder / p for p in files if (folder / p).exists()]
    if existing and not force:
        raise FileExistsError(", ".join(str(p) for p in existing))
    written = []
    for relative, text in files.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written
