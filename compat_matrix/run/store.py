"""The results store: every finished cell and drift record kept by its key, so later runs reuse them.

A folder of per-release files, `<store>/<release>/cells.jsonl` and `<release>/drift.jsonl`, one
JSON line per entry: `{"key", "stored_at", "line" | "record"}`. The key is a sha256 over what
decides the outcome (`cell_key`); an entry is reused only under the same key, so a changed recipe,
harness module, library version or setting simply misses. Appends are one write each under the
file's flock (`results_io`): a killed run leaves at most a torn last line, which readers skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, TextIO

from compat_matrix.envs.install_training import extra_constraints, needs_training
from compat_matrix.envs.releases import SPECIAL
from compat_matrix.run.harness_hash import build_hash, drift_hash, probe_hash
from compat_matrix.spec.cells import Cell
from compat_matrix.spec.layout import cache_root
from compat_matrix.spec.records import WRITER, expected_of, now
from compat_matrix.spec.results_io import ResultsWriter, holding, read_lines
from compat_matrix.spec.schema import RECORDED_LIBRARIES, REMOTE_CODE_ROOT, TRAINING_PACKAGES, Matrix, ModelEntry

STORE_ENV = "COMPAT_MATRIX_STORE"
CELLS, DRIFT, BUILDS = "cells.jsonl", "drift.jsonl", "builds.jsonl"
"""Per release: result lines, drift records, stored as-published builds (`compat_matrix/run/builds.py`)."""
TRL_LIBRARIES = ("trl", "peft", "accelerate")
"""What a probe that trains through TRL imports besides transformers."""
STORED_STATUSES = ("pass", "fail", "unsupported", "skipped")
"""`error` is the harness's own trouble (a timeout, a crash, a run that stopped): never kept."""
FROM_STORE = "from_store"
"""Field of a reused line: when the store got it."""
PASSING_WRITER_ERRORS = frozenset({"CellTimeout", "NoLearningSignal", "MemoryError", "OutOfMemoryError", "OSError",
                                   "HarnessError"})
"""A writer that could not save for one of these may save next time: its readers' skips are not kept."""


def default_store() -> Path:
    """COMPAT_MATRIX_STORE, else `<cache>/store` beside the tiny checkpoints."""
    return Path(os.environ.get(STORE_ENV) or cache_root() / "store")


@dataclass(frozen=True)
class EnvFacts:
    """The versions a release environment runs with: what enters a key besides the matrix and the code."""

    transformers: str
    torch: str | None
    python: str
    """major.minor"""
    libraries: dict[str, str | None]
    device: str
    present: frozenset[str] = frozenset()
    """Installed distributions and top-level modules, normalised (`package_name`): a cell skipped for
    needing a package is reused only while that package is still absent."""


def machine_device(matrix: Matrix) -> str:
    """Where cells run here (`cpu` or `cuda`), told without importing torch: a stored CPU cell is not a GPU result."""
    if matrix.settings.device != "auto":
        return matrix.settings.device
    return "cuda" if Path("/proc/driver/nvidia/gpus").is_dir() and any(Path("/proc/driver/nvidia/gpus").iterdir()) else "cpu"


_DIST_INFO = re.compile(r"^([A-Za-z0-9_.\-]+)-([^-]+)\.dist-info$")


def env_facts(env_dir: Path, device: str) -> EnvFacts | None:
    """Versions installed in a tox environment, read from its `site-packages` (None: no environment there)."""
    site = sorted(env_dir.glob("lib/python3.*/site-packages"))
    if not site:
        return None
    installed, modules = {}, set()
    for entry in site[-1].iterdir():
        match = _DIST_INFO.match(entry.name)
        if match:
            installed[package_name(match.group(1))] = match.group(2)
        elif entry.is_dir() or entry.suffix == ".py":
            modules.add(package_name(entry.stem))
    if "transformers" not in installed:
        return None
    return EnvFacts(installed["transformers"], installed.get("torch"), site[-1].parent.name.removeprefix("python"),
                    {name: installed.get(package_name(name)) for name in RECORDED_LIBRARIES}, device,
                    frozenset(installed) | frozenset(modules))


def package_name(name: str) -> str:
    """A distribution or module name as the store compares them (`Pillow`, `pillow`: `pillow`; `-` and `.` as `_`)."""
    return re.sub(r"[-.]", "_", name.lower())


def writer_verdict(line: dict[str, Any]) -> bool:
    """Whether a reader's `skipped` line is its writer's outcome (the release that writes the adapter it reads
    tried and failed or could not, for this recipe and profile: both in the reader's key, with `saved_by` and
    the harness code), which the store keeps; a writer that has not run yet, or failed for the machine's
    sake (a timeout, memory), may save next time."""
    writer = (line.get("details") or {}).get(WRITER)
    return (isinstance(writer, dict) and writer.get("status") in ("fail", "unsupported")
            and writer.get("error_type") not in PASSING_WRITER_ERRORS)


def _needs(line: dict[str, Any]) -> str | None:
    """The package a `skipped` line says it needs (None: it needs none)."""
    needs = (line.get("details") or {}).get("needs")
    return str(needs) if needs else None


def line_facts(line: dict[str, Any]) -> EnvFacts:
    """The facts a result line records about the environment it ran in."""
    python = ".".join(str(line.get("python", "")).split(".")[:2])
    return EnvFacts(str(line.get("transformers")), line.get("torch"), python, dict(line.get("libraries") or {}),
                    str(line.get("device")))


def needed_libraries(matrix: Matrix, cell: Cell) -> tuple[str, ...]:
    """Libraries besides torch and transformers a cell's outcome depends on (huggingface_hub reads every config)."""
    adapter = matrix.model(cell.model).load_kwargs[cell.profile].adapter is not None
    return ("tokenizers", "huggingface_hub", *(TRL_LIBRARIES if needs_training([cell.probe]) else ("peft",) if adapter else ()))


def _remote_code(entry: ModelEntry) -> str | None:
    if entry.recipe is None or entry.recipe.remote_code is None:
        return None
    total = hashlib.sha256()
    for path in sorted((REMOTE_CODE_ROOT / entry.recipe.remote_code.sources).glob("*.py")):
        total.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return total.hexdigest()


def _sha(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


class Keys:
    """The keys of one matrix's cells and drift records (the matrix parts computed once per model)."""

    def __init__(self, matrix: Matrix):
        self.matrix = matrix
        self._models: dict[str, Any] = {}
        self._cells: dict[tuple[Any, ...], str] = {}
        # the code as the run starts, which is what its cells run: a checkout that changes under a
        # long run must not label old results with the new code's hash
        self._code = {probe: probe_hash(probe) for probe in matrix.probe_names}
        self.drift_code = drift_hash()
        self._callables = {*(f"strategy:{k}" for k in matrix.user_strategies), *(f"probe:{k}" for k in matrix.user_probes)}

    def _model(self, key: str) -> Any:
        if key not in self._models:
            entry = self.matrix.model(key)
            self._models[key] = {"entry": entry.model_dump(mode="json", exclude={"expectations", "load_kwargs"}),
                                 "remote_code": _remote_code(entry)}
        return self._models[key]

    def model_entry(self, key: str) -> str:
        """The hash of a model's entry (recipe, remote-code files) as keys hold it: a stored build records it."""
        return _sha(self._model(key))

    def _common(self, facts: EnvFacts, model: str) -> dict[str, Any]:
        return {"transformers": facts.transformers, "torch": facts.torch, "python": facts.python,
                "device": facts.device, "model": self._model(model), "install": list(self.matrix.install)}

    def _user_code(self, cell: Cell) -> bool:
        return f"strategy:{cell.strategy}" in self._callables or f"probe:{cell.probe}" in self._callables

    def cell(self, cell: Cell, facts: EnvFacts) -> str | None:
        """The key of `cell` in an environment with `facts`; None (never stored) when a library it needs
        is absent there (what it reports then depends on why, which the key cannot tell) or when it runs
        the user's own strategy or probe (code outside the harness, whose edits the key cannot see)."""
        libraries = {name: facts.libraries.get(name) for name in needed_libraries(self.matrix, cell)}
        if None in libraries.values() or self._user_code(cell):
            return None
        # a check looks its as-published cells up twice (which writers to build, then the run): computed once
        memo = (cell, facts.transformers, facts.torch, facts.python, facts.device, tuple(libraries.items()))
        if memo not in self._cells:
            self._cells[memo] = self._cell(cell, facts, libraries)
        return self._cells[memo]

    def _cell(self, cell: Cell, facts: EnvFacts, libraries: dict[str, str | None]) -> str:
        entry = self.matrix.model(cell.model)
        # the environment's versions are read before its trl/peft are brought in line with this run's pins
        # (tox's commands_pre): a run pinning them otherwise must not take another run's lines for its own
        training = set(libraries) & set(TRAINING_PACKAGES)
        return _sha({**self._common(facts, cell.model), "cell": cell.id, "saved_by": cell.saved_by,
                     "profile": entry.load_kwargs[cell.profile].model_dump(mode="json"),
                     "settings": self.matrix.settings.model_dump(mode="json"), "libraries": libraries,
                     "harness": self._code.get(cell.probe) or probe_hash(cell.probe),
                     **({"training_constraints": extra_constraints()} if training else {})})

    def identity(self) -> str:
        """What every cell key holds besides the environment and the cell: the harness code and matrix.yaml's
        models, settings and install list (expectations aside). Lines a killed run left behind are stored
        by the run that resumes it only under the same identity."""
        return _sha({"code": self._code, "settings": self.matrix.settings.model_dump(mode="json"),
                     "install": list(self.matrix.install),
                     "models": [{**m.model_dump(mode="json", exclude={"expectations"}), "remote_code": _remote_code(m)}
                                for m in self.matrix.models]})

    def drift(self, model: str, facts: EnvFacts) -> str:
        """The key of a model's drift record in an environment with `facts`."""
        return _sha({**self._common(facts, model), "drift": self.drift_code,
                     "tokenizers": facts.libraries.get("tokenizers"),
                     "huggingface_hub": facts.libraries.get("huggingface_hub")})


def storable(release: str) -> bool:
    """`latest` and `main` move: their results are kept under the release they installed, never their name."""
    return release not in SPECIAL


def _drop_torn_tail(path: Path) -> None:
    """Cut a line a killed writer left half-written, so the next entry does not join it (and die with it)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("r+b") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) != b"\n":
            handle.seek(0)
            handle.truncate(handle.read().rfind(b"\n") + 1)


class Store:
    """One store folder: per-release files of keyed entries."""

    def __init__(self, root: Path):
        self.root = root
        self._read: dict[Path, tuple[tuple[int, int], dict[str, dict[str, Any]]]] = {}

    def file(self, release: str, name: str) -> Path:
        return self.root / release / name

    def entries(self, release: str, name: str = CELLS) -> dict[str, dict[str, Any]]:
        """{key: entry} of a release (a later entry under the same key wins); a file read before and not
        changed since is not parsed again (a run looks a release up for its own cells, its as-published
        writers and its as-published cells)."""
        path = self.file(release, name)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return {}
        seen = (stat.st_mtime_ns, stat.st_size)
        cached = self._read.get(path)
        if cached is None or cached[0] != seen:
            cached = (seen, {str(e["key"]): e for e in read_lines(path) if "key" in e})
            self._read[path] = cached
        return cached[1]

    def add(self, release: str, entries: Iterable[dict[str, Any]], name: str = CELLS) -> int:
        """Append keyed entries (one write each, under the file's lock); how many."""
        entries = list(entries)
        if not entries:
            return 0
        path = self.file(release, name)
        with holding(path):
            _drop_torn_tail(path)
            writer = ResultsWriter(path, fresh=False)
            try:
                for entry in entries:
                    writer.write(entry)
            finally:
                writer.close()
        return len(entries)

    def releases(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*.jsonl")) if self.root.is_dir() else 0


@dataclass
class Reuse:
    """What a release's run took from the store."""

    lines: list[dict[str, Any]]
    stored_at: list[str]

    def describe(self, total: int) -> str:
        if not self.lines:
            return f"store: no stored cell matches ({total} to run)"
        span = sorted(self.stored_at)
        when = span[0] if span[0] == span[-1] else f"{span[0]} .. {span[-1]}"
        return f"store: reused {len(self.lines)} of {total} cells (stored {when}); {total - len(self.lines)} to run"


def reusable(store: Store, keys: Keys, matrix: Matrix, cells: list[Cell], release: str, facts: EnvFacts,
             env: str) -> Reuse:
    """The stored lines for `cells` under their current keys, made current: this run's env name and
    matrix.yaml's expectation (a changed expectation re-judges a stored cell, it does not rerun it)."""
    stored = store.entries(release)
    lines, when = [], []
    for cell in cells:
        key = keys.cell(cell, facts)
        entry = stored.get(key) if key else None
        if entry is None:
            continue
        needs = _needs(entry["line"])
        if needs and package_name(needs) in facts.present:  # installed since: the cell gets further now
            continue
        line = {**entry["line"], "env": env, FROM_STORE: entry["stored_at"],
                "expected": expected_of(matrix, cell, facts.transformers, entry["line"].get("libraries"))}
        lines.append(line)
        when.append(str(entry["stored_at"]))
    return Reuse(lines, when)


IDENTITY_SUFFIX = ".store-identity"
"""Beside a results file: the identity (`Keys.identity`) of the run that writes it, and the cells
whose lines came from a run with another."""


def unverified_lines(results: Path, identity: str, resumed: set[str] | None) -> set[str]:
    """Cell ids of `results` whose lines an earlier run wrote under another identity (or one not recorded),
    so that they must not be stored under this run's keys; records this run's identity beside the file.
    `resumed`: the cells that already had a line when this run started (None: a fresh results file)."""
    sidecar = results.with_name(results.name + IDENTITY_SUFFIX)
    try:
        previous = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    earlier = set(previous.get("unverified") or ()) if isinstance(previous, dict) else set()
    if resumed is None:
        unverified: set[str] = set()
    elif isinstance(previous, dict) and previous.get("identity") == identity:
        unverified = earlier & resumed
    else:
        unverified = set(resumed)
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    temporary = sidecar.with_name(f".{sidecar.name}.tmp")
    temporary.write_text(json.dumps({"identity": identity, "unverified": sorted(unverified)}) + "\n", encoding="utf-8")
    os.replace(temporary, sidecar)
    return unverified


def keep(store: Store, keys: Keys, matrix: Matrix, lines: list[dict[str, Any]]) -> int:
    """Store the lines this run produced (not reused ones, not `error`s); how many."""
    by_release: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        if line.get(FROM_STORE) or line.get("status") not in STORED_STATUSES:
            continue
        cell = Cell.from_id(str(line.get("cell_id")))
        if cell is None or cell.model not in {m.key for m in matrix.models}:
            continue
        if cell.saved_by and line.get("status") == "skipped" and not _needs(line) and not writer_verdict(line):
            continue  # the writer's checkpoint or adapter may exist next time
        key = keys.cell(cell, line_facts(line))
        if key:
            by_release.setdefault(str(line["transformers"]), []).append({"key": key, "stored_at": now(), "line": line})
    return sum(store.add(release, entries) for release, entries in by_release.items())


@dataclass(frozen=True)
class Pruned:
    """What pruning did to one store file."""

    path: Path
    kept: int
    dropped: int
    other_models: int
    """Entries kept because this matrix.yaml does not list their model (another branch's, say)."""


def _current(entry: dict[str, Any], keys: Keys, models: set[str], name: str) -> bool | None:
    """Whether a run of this checkout could reuse `entry` (None: its model is not in this matrix, so it cannot tell).

    A build's key also holds its writer environment and writer cells, which only a run reads: pruning
    checks the build code and the model entry the entry records (older entries record neither: kept)."""
    if name in (DRIFT, BUILDS):
        record = entry.get("record") or {}
        model = record.get("model")
        if model not in models:
            return None
        if name == DRIFT:
            return entry.get("harness") in (None, keys.drift_code)
        return entry.get("harness") in (None, build_hash()) and entry.get("entry") in (None, keys.model_entry(str(model)))
    line = entry.get("line") or {}
    cell = Cell.from_id(str(line.get("cell_id")))
    if cell is None or cell.model not in models:
        return None
    return keys.cell(cell, line_facts(line)) == entry.get("key")


def prune(store: Store, keys: Keys) -> list[Pruned]:
    """Drop the entries no run of this checkout can reuse: cells stored by other harness code, recipes or
    settings (their key is no longer the one this checkout computes from the line), drift records of
    other drift code, builds of other build code or model entries, and entries a later one under the
    same key replaced. Each file is rewritten under its lock, through a temporary file: a killed prune
    leaves the old file whole."""
    models = {m.key for m in keys.matrix.models}
    done = []
    for release in store.releases():
        for name in (CELLS, DRIFT, BUILDS):
            path = store.file(release, name)
            if not path.is_file():
                continue
            with holding(path):
                entries = [e for e in read_lines(path) if "key" in e]
                latest = {str(e["key"]): i for i, e in enumerate(entries)}
                verdicts = [_current(e, keys, models, name) if latest[str(e["key"])] == i else False
                            for i, e in enumerate(entries)]
                kept = [e for e, verdict in zip(entries, verdicts) if verdict is not False]
                temporary = path.with_name(f".{path.name}.prune")
                temporary.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in kept), encoding="utf-8")
                os.replace(temporary, path)
            done.append(Pruned(path, len(kept), len(entries) - len(kept), sum(v is None for v in verdicts)))
    return done


def summary(store: Store, stream: TextIO) -> None:
    """One line per release: entries, and when the newest was stored."""
    for release in store.releases():
        cells = store.entries(release)
        drift = store.entries(release, DRIFT)
        builds = store.entries(release, BUILDS)
        newest = max((str(e.get("stored_at")) for e in cells.values()), default="-")
        print(f"{release:>10}  {len(cells):>6} cells  {len(drift):>3} drift records  {len(builds):>3} builds  newest {newest}",
              file=stream)
    print(f"{store.root}: {store.size_bytes() / 1024**2:.1f} MiB", file=stream)
