"""Run a cell's script in its release's environment and judge it against what the cell itself did.

Reproduced means: the script fails in the cell's release with the cell's cause signature (error
type and masked message, `reports/signature.py`) and, with a good release, passes there. A script
that passes where the cell fails does not reproduce it: the failure is compat-matrix's, a finding
about the harness.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from compat_matrix.envs.env_cache import env_root
from compat_matrix.envs.releases import env_name
from compat_matrix.repro.script import Script
from reports.signature import Signature, inner_error, mask, signature

STEP_TIMEOUT_S = 600
"""One run of a script (build, load, one step of a tiny model: seconds; uv may install first)."""

GOT = "got: "
"""What a script prints (with sys.exit, on stderr) before a check's failure: `<ErrorType>: <message>`."""

TRACEBACK = "Traceback (most recent call last):"

OUTPUT_KEPT = 1500
"""Characters of a script's output kept for the verdict."""


IMPORT_NAMES = {"pillow": "PIL"}
"""A script's dependencies whose folder in site-packages is not their pip name."""


@dataclass(frozen=True)
class ScriptRun:
    """One run of a script (all its steps) under one reading release."""

    release: str
    exit_code: int
    error_type: str | None
    message: str
    output: str

    @property
    def failed(self) -> bool:
        return self.exit_code == 1 and self.error_type is not None


def parse_failure(output: str) -> tuple[str | None, str]:
    """(error type, message) of a script's failure: after its last `got: ` line, else the exception its
    last traceback ends with (the type without its module); (None, "") when there is neither."""
    lines = output.splitlines()
    at = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith(GOT)), None)
    if at is not None:
        text = "\n".join([lines[at][len(GOT):], *lines[at + 1:]]).strip()
    else:
        start = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith(TRACEBACK)), None)
        if start is None:
            return None, ""
        end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace()), None)
        if end is None:
            return None, ""
        text = "\n".join(lines[end:]).strip()
    kind, sep, message = text.partition(": ")
    if not re.fullmatch(r"[A-Za-z_][\w.]*", kind):
        return None, text
    return kind.rsplit(".", 1)[-1], message if sep else ""


def release_python(release: str, needs: Iterable[str], tox_workdir: Path | None) -> str | None:
    """A Python of an existing environment with exactly this transformers release, torch and `needs`
    installed: the release's tox environment, else bisect's cached one; None when there is none.
    Judged by the installed distributions' folders, without starting Python (torch takes seconds)."""
    folders = [tox_workdir / env_name(release)] if tox_workdir else []
    for folder in [*folders, env_root() / env_name(release)]:
        python = folder / "bin" / "python"
        for site in folder.glob("lib/python3*/site-packages"):
            found = [f"transformers-{release}.dist-info", "torch", *(IMPORT_NAMES.get(n, n) for n in needs)]
            if python.is_file() and all((site / name).exists() for name in found):
                return str(python)
    return None


def _uv() -> str:
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.is_file() else (shutil.which("uv") or "uv")


def _command(script: Path, release: str, pinned: str, needs: tuple[str, ...], tox_workdir: Path | None) -> list[str]:
    """How to run `script` under `release`: an environment that has it, else `uv run` on the script's
    own metadata (pinned to `pinned`), with `--with transformers==release` where they differ."""
    python = release_python(release, needs, tox_workdir)
    if python:
        return [python, str(script)]
    extra = ["--with", f"transformers=={release}"] if release != pinned else []
    return [_uv(), "run", "--quiet", *extra, str(script)]


def _environ() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    if "UV_FIND_LINKS" not in env and env.get("PIP_FIND_LINKS"):
        env["UV_FIND_LINKS"] = env["PIP_FIND_LINKS"]  # uv sees the local torch wheel only this way
    if env.get("COMPAT_MATRIX_TORCH_INDEX"):  # as tox.ini: torch from that index, never PyPI's CUDA build
        env["UV_EXTRA_INDEX_URL"] = env["COMPAT_MATRIX_TORCH_INDEX"]
    return env


def run_script(script: Script, path: Path, release: str, pinned: str, writer: str | None,
               tox_workdir: Path | None) -> ScriptRun:
    """Run every step of `script` (saved at `path`): `write` under `writer`, the others under `release`."""
    output = []
    with tempfile.TemporaryDirectory(prefix="repro-") as folder:
        result = None
        for step in script.steps:
            runs_in = writer if step[:1] == ("write",) and writer else release
            command = _command(path, runs_in, pinned, script.needs, tox_workdir) + [*step, *([folder] if step else [])]
            try:
                result = subprocess.run(command, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, env=_environ())
            except subprocess.TimeoutExpired:
                return ScriptRun(release, 124, None, "", f"step {step or 'run'} timed out after {STEP_TIMEOUT_S} s")
            output.append(f"$ {' '.join(command)}\n{result.stdout}{result.stderr[-OUTPUT_KEPT:]}")
            if result.returncode != 0:
                break
    assert result is not None
    error_type, message = parse_failure(result.stdout + "\n" + result.stderr)
    return ScriptRun(release, result.returncode, error_type, message, "\n".join(output)[-OUTPUT_KEPT:])


@dataclass(frozen=True)
class CellOutcome:
    """What the cell did in the matrix run (from a report, or a run of just this cell)."""

    status: str
    error_type: str | None
    message: str


@dataclass(frozen=True)
class Verdict:
    """Whether the script reproduces the cell, in plain words."""

    cell_id: str
    release: str
    good: str | None
    reproduced: bool
    """The script fails in the release with the cell's cause signature."""
    good_passes: bool | None
    """The script passes in the good release (None: no good release given)."""
    summary: str
    bad_run: ScriptRun
    good_run: ScriptRun | None = None

    @property
    def verified(self) -> bool:
        return self.reproduced and self.good_passes is not False


def cell_signature(outcome: CellOutcome, probe: str, cross_release: bool, names: Iterable[str]) -> Signature:
    error_type, message = inner_error(outcome.error_type, outcome.message)
    return signature(probe, error_type, message, cross_release, names, outcome.status)


def judge(cell_id: str, probe: str, cross_release: bool, names: Iterable[str], outcome: CellOutcome,
          bad: ScriptRun, good: ScriptRun | None) -> Verdict:
    """Compare the script's failure with the cell's, by error type and masked message."""
    names = list(names)
    expected = cell_signature(outcome, probe, cross_release, names)
    said = f"{outcome.error_type}: {outcome.message.splitlines()[0] if outcome.message else ''}"
    good_passes = None if good is None else good.exit_code == 0
    good_release = good.release if good else None
    if outcome.status not in ("fail", "error"):
        summary = f"the cell is `{outcome.status}` in {bad.release}: nothing to reproduce"
        return Verdict(cell_id, bad.release, good_release, False, good_passes, summary, bad, good)
    if bad.exit_code == 0:
        summary = (f"does NOT reproduce: the script passes in {bad.release}, where the cell fails with {said}. "
                   "The failure comes from compat-matrix's harness (or a condition the script leaves out), not from "
                   "the libraries: a finding about our harness")
        return Verdict(cell_id, bad.release, good_release, False, good_passes, summary, bad, good)
    if not bad.failed:
        summary = (f"the script itself broke in {bad.release} (exit {bad.exit_code}, no `got:` line): "
                   f"{bad.output.strip().splitlines()[-1] if bad.output.strip() else 'no output'}")
        return Verdict(cell_id, bad.release, good_release, False, good_passes, summary, bad, good)
    got = signature(probe, bad.error_type, bad.message, cross_release, names)
    same = (got.error_type, got.text) == (expected.error_type, expected.text)
    part = partial(bad, outcome, names) if not same else None
    if part:
        summary = (f"reproduces only part of the cell's failure in {bad.release}: {', '.join(part[0])} as the cell; the cell "
                   f"also fails {', '.join(part[1])}, a check this script does not make (another break: a cause of its own "
                   "where it fails alone): not the same cause")
    elif not same:
        summary = (f"does NOT reproduce the cause: the script fails in {bad.release} with {bad.error_type}: "
                   f"{bad.message.splitlines()[0] if bad.message else ''}; the cell with {said}")
    else:
        summary = f"reproduces in {bad.release} ({expected.stage}: {expected.error_type}: {expected.text[:160]})"
    if good is not None:
        summary += (f"; passes in {good.release}" if good_passes else
                    f"; but does not pass in {good.release} either (exit {good.exit_code}: "
                    f"{good.error_type}: {good.message.splitlines()[0] if good.message else ''})")
    return Verdict(cell_id, bad.release, good_release, same, good_passes, summary, bad, good)


_CHECK_PART = re.compile(r"; (?=[a-z_]+: )")
"""Where a probe's message joins its failed checks (`grad_adapter: ...; logprob_match: ...`)."""


def checks(message: str) -> dict[str, str]:
    """A CheckFailed message's parts by check name (`{}` where it is not one check per part)."""
    parts = [p.partition(": ") for p in _CHECK_PART.split(message.strip())]
    if not all(sep and re.fullmatch(r"[a-z_]+", name) for name, sep, _ in parts):
        return {}
    return {name: text for name, _, text in parts}


def partial(bad: ScriptRun, outcome: CellOutcome, names: list[str]) -> tuple[list[str], list[str]] | None:
    """(the checks the script failed as the cell did, the cell's other failed checks) where the script fails a part of
    the cell's checks, each part worded alike; None otherwise."""
    got, cell = checks(bad.message), checks(outcome.message)
    if bad.error_type != outcome.error_type or not got or not set(got) < set(cell):
        return None
    if any(mask(text, names) != mask(cell[name], names) for name, text in got.items()):
        return None
    return list(got), [name for name in cell if name not in got]
