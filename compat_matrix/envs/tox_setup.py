"""The tox configuration a run uses, wherever compat-matrix is installed (tox stays the engine).

A `tox.ini` or `tox.toml` beside the matrix file is used as it is (this repository's own tox.ini,
or a user's override). Elsewhere the tox.ini the package carries is used: `compat_matrix/envs/`
holds links to this repository's tox.ini and requirement files, so the wheel ships the very files
the repository runs with and the two cannot drift.

Either way the release environments import the harness (compat_matrix, compat_tests, loader,
reports) from a cache folder of links to the installed packages (COMPAT_MATRIX_HARNESS), and
install the matrix's `install:` list (COMPAT_MATRIX_INSTALL, a requirements file per run).
"""

from __future__ import annotations

import configparser
import hashlib
import importlib.util
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

ENVS = Path(__file__).resolve().parent
TOX_FILES = ("tox.ini", "requirements/*.txt")
"""The packaged tox files in `ENVS`, beside this package's modules."""
"""Package data: tox.ini, requirements/ and scripts/ as the repository has them (links in a checkout)."""
HARNESS_PACKAGES = ("compat_matrix", "compat_tests", "loader", "reports")
OWN_CONFIGS = ("tox.ini", "tox.toml")


def cache_folder() -> Path:
    """COMPAT_MATRIX_CACHE, default ~/.cache/compat-matrix (the tiny checkpoints' cache too)."""
    return Path(os.environ.get("COMPAT_MATRIX_CACHE") or Path.home() / ".cache" / "compat-matrix")


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the installed compat-matrix lacks its {name} package: reinstall compat-matrix")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def _staged(path: Path) -> Path:
    """A private name beside `path` to build it under before the atomic rename: one per process
    and thread (bisect runs two releases at once from threads of one process; with the pid alone
    one thread renamed the other's staged link away: FileNotFoundError)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")


def _replace_link(link: Path, target: Path) -> None:
    if link.is_symlink() and link.resolve() == target:
        return
    staged = _staged(link)
    staged.unlink(missing_ok=True)
    staged.symlink_to(target, target_is_directory=True)
    os.replace(staged, link)


def _write_if_changed(path: Path, text: str) -> None:
    """Same content, same file: tox reinstalls an environment when a requirements file changes."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = _staged(path)
    staged.write_text(text, encoding="utf-8")
    os.replace(staged, path)


def harness_folder() -> Path:
    """`<cache>/harness`: links to the installed harness packages, and the packaged tox files.

    Its path stays the same from run to run (tox would reinstall every environment if its
    requirement paths moved); what is in it follows the installed compat-matrix."""
    folder = cache_folder() / "harness"
    folder.mkdir(parents=True, exist_ok=True)
    for name in HARNESS_PACKAGES:
        _replace_link(folder / name, _package_dir(name))
    for source in sorted(p for pattern in TOX_FILES for p in ENVS.glob(pattern)):
        _write_if_changed(folder / source.relative_to(ENVS), source.read_text(encoding="utf-8"))
    return folder


def install_lines(install: tuple[str, ...], matrix_file: Path) -> list[str]:
    """`install:` as requirement lines; `-e .` and folders are made absolute from the matrix's folder."""
    base = matrix_file.resolve().parent
    lines = []
    for entry in install:
        editable = entry.startswith(("-e ", "--editable "))
        target = entry.split(None, 1)[1].strip() if editable else entry.strip()
        local = target.startswith((".", "/", "~")) or (base / target).is_dir()
        if local:
            target = str((base / Path(target).expanduser()).resolve())
        lines.append(f"-e {target}" if editable else target)
    return lines


def listed_envs(config: Path) -> set[str]:
    """Env names in a tox configuration's env_list (a release not listed runs in `tfany`)."""
    if config.suffix == ".toml":
        import tomllib  # tox.toml needs a tox (4.21+) that runs on no Python older than tomllib's 3.11

        data = tomllib.loads(config.read_text(encoding="utf-8"))
        return {str(e) for e in data.get("env_list", data.get("tool", {}).get("tox", {}).get("env_list", []))}
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(config)
    listed = parser.get("tox", "env_list", fallback="").replace("\n", ",").split(",")
    return {e.strip() for e in listed if e.strip()}


@dataclass(frozen=True)
class ToxSetup:
    """How to call tox for one matrix file: which configuration, which work folder, which environment."""

    config: Path
    workdir: Path
    harness: Path
    install_file: Path

    @property
    def root(self) -> Path:
        return self.config.parent

    def listed_envs(self) -> set[str]:
        return listed_envs(self.config)

    def tox(self, *args: str) -> list[str]:
        """`python -m tox` with this configuration and work folder."""
        return [sys.executable, "-m", "tox", "-c", str(self.config), "--root", str(self.root),
                "--workdir", str(self.workdir), *args]

    def environ(self) -> dict[str, str]:
        uv = uv_binary()
        return {"COMPAT_MATRIX_HARNESS": str(self.harness), "COMPAT_MATRIX_INSTALL": str(self.install_file),
                **({"COMPAT_MATRIX_UV": uv} if uv else {})}


def uv_binary() -> str | None:
    """The uv that tox-uv makes environments with (compat_matrix.envs.install_training installs trl and peft with it)."""
    try:
        from uv import find_uv_bin
    except ImportError:
        return None
    try:
        return str(find_uv_bin())
    except FileNotFoundError:
        return None


def tox_setup(matrix_file: Path, out: Path, install: tuple[str, ...] = ()) -> ToxSetup:
    """The configuration beside `matrix_file`, else the packaged one in the cache; `install:` written under `out`."""
    folder = matrix_file.resolve().parent
    # a source checkout (this repository) is its own harness: the paths tox sees stay those of a plain `tox -e ...`
    harness = folder if (folder / "compat_tests" / "plugin.py").is_file() else harness_folder()
    own = next((folder / name for name in OWN_CONFIGS if (folder / name).is_file()), None)
    if own is not None:
        config, workdir = own, folder / ".tox"
    else:  # one work folder per matrix folder: two projects' `install:` lists never share an environment
        digest = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
        config, workdir = harness / "tox.ini", cache_folder() / "tox" / f"{folder.name}-{digest}"
    lines = install_lines(install, matrix_file)
    install_file = harness / "requirements" / "none.txt"
    if lines:
        install_file = out.resolve() / "install-requirements.txt"
        _write_if_changed(install_file, "# matrix.yaml install: (written by compat-matrix run)\n" + "\n".join(lines) + "\n")
    return ToxSetup(config, workdir, harness, install_file)

