"""Which harness code a cell's result depends on, as a content hash, computed from the files at run time.

A stored cell is reused only while the code that produced it is unchanged. The code of a cell is:
- the core: every harness module that `compat_tests/test_matrix.py` imports, followed import by
  import (function-level imports too), except the probe registry (`compat_tests/probes/__init__.py`)
  and the probe modules (`compat_tests/probes/<name>.py` for each name of PROBE_ORDER): a change to
  one probe reruns no other probe's cells (PROBE_ORDER itself is core: the order is what a probe
  finds the loaded model in);
- its probe: the probe's module and every harness module that one imports (`forward` imports
  `load`, so a change to `load` reruns both).
Imports are read with `ast`, not by importing (the CLI never imports torch). Only the harness
packages count: transformers, torch, trl and peft enter the key by their installed versions.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

from reports.status import PROBE_ORDER

HARNESS_PACKAGES = ("compat_matrix", "compat_tests", "loader", "reports")
CELL_ROOT = "compat_tests.test_matrix"
"""The module pytest runs for every cell: where the core's imports start."""
PROBE_REGISTRY = "compat_tests.probes"
"""The package whose `__init__` imports the module of each probe of `PROBE_ORDER`, named as the probe."""
DRIFT_ROOT = "compat_tests.drift_record"
"""What a release runs to record drift (`compat-matrix drift`)."""


@lru_cache(maxsize=None)
def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def module_file(name: str) -> Path | None:
    """The source file of a harness module (`a.b` -> a/b.py or a/b/__init__.py), or None."""
    top, *rest = name.split(".")
    if top not in HARNESS_PACKAGES:
        return None
    folder = _package_dir(top)
    if folder is None:
        return None
    base = folder.joinpath(*rest)
    for candidate in (base.with_suffix(".py") if rest else None, base / "__init__.py"):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _imports(name: str, path: Path) -> set[str]:
    """Harness modules `path` imports anywhere in it (`from pkg import submodule` counts the submodule)."""
    return set(_imports_in(name, path.name == "__init__.py", path.read_bytes(), str(path)))


@lru_cache(maxsize=None)
def _imports_in(name: str, is_package: bool, source: bytes, filename: str) -> frozenset[str]:
    """`_imports` of one module's source, parsed once: the probes' closures share most modules (365
    parses of ~90 files took 2.4 s of every run's start); keyed by the bytes, so an edited file is read anew."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    modules: set[str] = set()
    for imported in found:
        parts = imported.split(".")
        # `import a.b.c` also runs a/__init__ and a/b/__init__
        modules.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(m for m in modules if module_file(m) is not None)


def closure(roots: tuple[str, ...], stop: frozenset[str] = frozenset()) -> dict[str, Path]:
    """Every harness module reachable from `roots` by imports, not entering the modules in `stop`."""
    seen: dict[str, Path] = {}
    todo = [r for r in roots if r not in stop]
    while todo:
        name = todo.pop()
        path = module_file(name)
        if name in seen or path is None:
            continue
        seen[name] = path
        todo += [m for m in _imports(name, path) if m not in seen and m not in stop]
    return seen


@lru_cache(maxsize=None)
def probe_modules() -> dict[str, str]:
    """{probe name: module} for the built-in probes: the registry's `compat_tests/probes/<name>.py`."""
    modules = {name: f"{PROBE_REGISTRY}.{name}" for name in PROBE_ORDER}
    return {name: module for name, module in modules.items() if module_file(module) is not None}


def digest(modules: dict[str, Path]) -> str:
    """sha256 over the modules' names and bytes."""
    total = hashlib.sha256()
    for name in sorted(modules):
        total.update(name.encode() + b"\0" + modules[name].read_bytes() + b"\0")
    return total.hexdigest()


def _registry() -> frozenset[str]:
    return frozenset({PROBE_REGISTRY, *probe_modules().values()})


@lru_cache(maxsize=None)
def core_modules() -> dict[str, Path]:
    return closure((CELL_ROOT,), stop=_registry())


@lru_cache(maxsize=None)
def probe_hash(probe: str) -> str:
    """The code a cell of `probe` runs: the core and the probe's own modules (a probe of the user's
    own: the core only; its code is the user's package, named in the key by its reference)."""
    module = probe_modules().get(probe)
    own = closure((module,), stop=frozenset({PROBE_REGISTRY})) if module else {}
    return digest({**core_modules(), **own})


@lru_cache(maxsize=None)
def drift_hash() -> str:
    """The code a drift record comes from."""
    return digest(closure((DRIFT_ROOT,)))


BUILD_ROOT = "compat_tests.build_published"
"""What a `written_by` release runs to build its as-published checkpoints and adapters."""


@lru_cache(maxsize=None)
def build_hash() -> str:
    """The code an as-published build comes from (it runs the writer cells: every probe is in it)."""
    return digest(closure((BUILD_ROOT,)))
