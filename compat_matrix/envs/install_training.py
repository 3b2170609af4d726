"""Install trl and peft (with accelerate) into a release environment, after torch and transformers.

Each package gets the newest release whose requirements accept the installed transformers: pip's
resolver chooses it, with torch and transformers held to the installed versions by a constraints
file (so no other torch, and never a CUDA build, is pulled in), unless `training_pins` in matrix.yaml
fixes a version for this release. A package that cannot be installed does not stop the environment:
the reason goes to `<env>/compat-matrix-training.json`, and the probes needing it say `unsupported`
with that reason. Run by tox (`commands_pre`); `COMPAT_MATRIX_FILE` (set by `compat-matrix run`)
names the matrix file. `COMPAT_MATRIX_TRAINING_CONSTRAINTS` names a pip constraints file added to
those (CI pins trl and peft with it, requirements/ci-training.txt, so that a new trl or peft release
never changes CI's verdicts; following them is the nightly's job). When `COMPAT_MATRIX_PROBES` (set by `compat-matrix run` and bisect) names no probe
that trains, nothing is installed: resolving trl and peft costs more than the whole run of a few
load/forward cells, which is what each release of a bisect runs; only peft when a selected cell's
load profile carries an adapter (`COMPAT_MATRIX_ADAPTERS=1`).

    python -m compat_matrix.envs.install_training
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from compat_matrix.spec.schema import PROBE_ORDER, TRAINING_PACKAGES
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix

REPORT = Path(sys.prefix) / "compat-matrix-training.json"
"""What was asked for and what went wrong, per package; read by `compat_tests.training`."""

TRAINING_PROBES = ("trl_grpo",)
"""Built-in probes that import trl or peft."""

CONSTRAINTS_ENV = "COMPAT_MATRIX_TRAINING_CONSTRAINTS"
"""A pip constraints file that also holds for trl, peft and what they pull in (unset: none)."""

OUTPUT_TAIL = 1500
"""Characters of pip's output kept as the reason of a failed install."""


def requirement(package: str, pin: str | None) -> str:
    return f"{package}=={pin}" if pin else package


UV_ENV = "COMPAT_MATRIX_UV"
"""The uv binary tox-uv made this environment with (`compat-matrix` sets it; tox passes COMPAT_MATRIX_*)."""


def installer() -> list[str]:
    """uv (`COMPAT_MATRIX_UV`) into this environment, else its own pip (seeded by tox-uv). uv picks the same
    newest trl/peft that fit the held torch and transformers as pip does, from the same indexes (UV_FIND_LINKS
    is the tox env's PIP_FIND_LINKS), in ~1 s where pip took ~17 s for a new release (backtracking through
    trl releases for an old transformers took pip most of a minute). With COMPAT_MATRIX_TORCH_INDEX, pip:
    uv takes a package from the first index that has it, pip the best version over all of them."""
    uv = os.environ.get(UV_ENV)
    extra = os.environ.get("COMPAT_MATRIX_TORCH_INDEX")
    if uv and Path(uv).is_file() and not extra:
        return [uv, "pip", "install", "--quiet", "--python", sys.executable]
    return [sys.executable, "-m", "pip", "install", "--quiet", *(["--extra-index-url", extra] if extra else [])]


def install(requirements: list[str], constraints: Path) -> tuple[bool, str]:
    """Install `requirements` with torch and transformers held by `constraints`; (ok, output tail)."""
    command = [*installer(), "--constraint", str(constraints), *requirements]
    done = subprocess.run(command, capture_output=True, text=True)
    return done.returncode == 0, (done.stdout + done.stderr)[-OUTPUT_TAIL:]


def needs_training(probes: list[str]) -> bool:
    """True when a probe trains through trl/peft; a probe of the user's own (not built in) may, so it counts."""
    return any(p in TRAINING_PROBES or p not in PROBE_ORDER for p in probes)


def packages_needed(probes: list[str], adapters: bool) -> tuple[str, ...]:
    """trl and peft for a probe that trains; only peft when the only need is a load profile's adapter
    (`COMPAT_MATRIX_ADAPTERS`): peft alone resolves in seconds, trl's resolution takes most of a minute."""
    if needs_training(probes):
        return TRAINING_PACKAGES
    return ("peft",) if adapters else ()


def main() -> int:
    selected = os.environ.get("COMPAT_MATRIX_PROBES")
    packages: tuple[str, ...] = TRAINING_PACKAGES
    if selected:
        packages = packages_needed(selected.split(","), os.environ.get("COMPAT_MATRIX_ADAPTERS") == "1")
        if not packages:
            print(f"trl, peft: not installed (no selected probe trains, no selected profile has an adapter: {selected})")
            return 0
    matrix = load_matrix(os.environ.get("COMPAT_MATRIX_FILE") or DEFAULT_MATRIX, check_model_types=False)
    release = importlib.metadata.version("transformers")
    wanted = {package: requirement(package, matrix.training_pin(package, release)) for package in packages}
    extra = extra_constraints()
    if _done_before(release, wanted, extra):
        return 0
    report: dict[str, dict[str, str | None]] = {"transformers": {"requested": release, "error": None},
                                                "constraints": {"requested": extra, "error": None}}
    with tempfile.TemporaryDirectory() as folder:
        constraints = Path(folder) / "installed.txt"
        constraints.write_text(f"torch=={importlib.metadata.version('torch')}\ntransformers=={release}\n{extra}")
        for package, asked in wanted.items():
            ok, output = install([asked], constraints)
            report[package] = {"requested": asked, "error": None if ok else
                               f"no {asked} installs beside transformers {release} and torch (pip: {output.strip()})"}
            print(f"{package}: {_installed(package) or 'not installed'} (asked {asked}, transformers {release})")
    REPORT.write_text(json.dumps(report, indent=2))
    return 0


def extra_constraints() -> str:
    """The text of the `COMPAT_MATRIX_TRAINING_CONSTRAINTS` file ('' when unset); a missing file is an
    error that names the variable, not a silent install of whatever is newest."""
    path = os.environ.get(CONSTRAINTS_ENV)
    if not path:
        return ""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SystemExit(f"{CONSTRAINTS_ENV}={path}: cannot read it ({exc.strerror}); point it at a pip constraints "
                         "file or unset it") from None
    return text if text.endswith("\n") or not text else text + "\n"


def _done_before(release: str, wanted: dict[str, str], extra: str = "") -> bool:
    """True when the last run here installed the same requests for the same transformers, and they
    are still installed (or no version fitted): tox runs this before every command, so a second run
    costs nothing and a release without a compatible TRL does not re-run a long resolver search."""
    try:
        last = json.loads(REPORT.read_text())
    except (OSError, ValueError):
        return False
    return (last.get("transformers", {}).get("requested") == release
            and (last.get("constraints") or {}).get("requested", "") == extra
            and all(last.get(p, {}).get("requested") == asked and (_installed(p) or _unresolvable(last[p].get("error")))
                    for p, asked in wanted.items()))


def _unresolvable(error: str | None) -> bool:
    """pip or uv found no version that fits (not a network or disk error, which may pass next time)."""
    signs = ("ResolutionImpossible", "No matching distribution", "No solution found when resolving")
    return bool(error) and any(sign in str(error) for sign in signs)


def _installed(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
