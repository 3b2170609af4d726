"""pytest plugin: matrix options, cell parametrization, and the results file.

Only the controller writes `results/<env>.jsonl` (one line per cell, flushed as it finishes), so it
is safe under pytest-xdist; a cell whose worker crashed or timed out still gets an `error` line.
The controller holds the file's lock for the whole run (another run sharing the file waits, saying
so) unless `compat-matrix run` holds it for us; `--cm-resume` keeps the finished cells' lines and
runs the rest.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from compat_matrix.spec.cells import Cell, select_cells
from compat_matrix.spec.layout import results_file
from compat_matrix.spec.records import FINGERPRINT_KEYS, cell_record
from compat_matrix.spec.results_io import LOCK_HELD_ENV, ResultsNotWritten, ResultsWriter, holding, resume
from compat_matrix.spec.validate import DEFAULT_MATRIX, MatrixError, load_matrix

RESULT_PROPERTY = "compat_cell"
DISK_EXIT = 3
"""pytest's exit code when a results line could not be written."""
BACKSTOP_S = 60
"""Seconds past settings.cell_timeout_s after which pytest-timeout kills a worker stuck in C code."""


def _names(values: list[str] | None) -> list[str] | None:
    """`--cm-models a,b --cm-models c` -> [a, b, c]."""
    if not values:
        return None
    return [name for value in values for name in value.split(",") if name]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("compat-matrix")
    group.addoption("--cm-matrix", default=str(DEFAULT_MATRIX), help="matrix file (default: the repo's matrix.yaml)")
    group.addoption("--cm-models", action="append", help="only these model keys (comma-separated, repeatable)")
    group.addoption("--cm-strategies", action="append", help="only these strategies")
    group.addoption("--cm-probes", action="append", help="only these probes")
    group.addoption("--cm-profiles", action="append", help="only these load_kwargs profiles")
    group.addoption("--cm-cells", help="only the cell ids listed in this file, one a line (within the other filters)")
    group.addoption("--cm-results", default="results", help="folder for <env>.jsonl (default: results)")
    group.addoption("--cm-saved-by", action="append",
                    help="cross-release cells instead: load the tiny checkpoints these releases saved (results: <env>-cross.jsonl)")
    group.addoption("--cm-published", action="store_true",
                    help="as-published cells instead (with --cm-saved-by, beside the cross-release ones): every probe on "
                         "the checkpoint each model's written_by release saved (results: <env>-cross.jsonl)")
    group.addoption("--cm-resume", action="store_true",
                    help="keep the lines of cells that finished in the results file and run only the others")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "compat_cell: one cell of the compatibility matrix")
    if not hasattr(config, "workerinput"):
        cross = bool(config.getoption("--cm-saved-by")) or bool(config.getoption("--cm-published"))
        recorder = ResultsRecorder(config, Path(config.getoption("--cm-results")), cross,
                                   bool(config.getoption("--cm-resume")))
        config.pluginmanager.register(recorder, "compat-results")


def _done(config: pytest.Config) -> set[str]:
    """Cells a resumed run already has lines for (the controller's count, handed to xdist workers)."""
    if hasattr(config, "workerinput"):
        return set(config.workerinput.get("cm_done", ()))
    recorder = config.pluginmanager.get_plugin("compat-results")
    return recorder.done if recorder is not None else set()


def _published_in(config: pytest.Config) -> str | None:
    """The installed release, when as-published cells are asked for (read without importing it:
    the controller never imports torch)."""
    from importlib.metadata import version

    return version("transformers") if config.getoption("--cm-published") else None


_MATRIX = pytest.StashKey[Any]()


def matrix_of(config: pytest.Config) -> Any:
    """The validated matrix, loaded once per process; a bad file stops the run with every problem."""
    if _MATRIX not in config.stash:
        try:
            # model types unknown to this release are `unsupported` cells, not a bad matrix
            config.stash[_MATRIX] = load_matrix(config.getoption("--cm-matrix"), check_model_types=False)
        except MatrixError as exc:
            raise pytest.UsageError(f"invalid matrix file:\n{exc}") from None
    return config.stash[_MATRIX]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" not in metafunc.fixturenames:
        return
    config = metafunc.config
    try:
        cells = select_cells(matrix_of(config), _names(config.getoption("--cm-models")),
                             _names(config.getoption("--cm-strategies")), _names(config.getoption("--cm-probes")),
                             _names(config.getoption("--cm-saved-by")), _names(config.getoption("--cm-profiles")),
                             _published_in(config))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    listed = config.getoption("--cm-cells")
    if listed:
        cells = _only_listed(cells, Path(listed))
    metafunc.parametrize("cell", cells, ids=[c.id for c in cells])


def _only_listed(cells: list[Cell], listing: Path) -> list[Cell]:
    """The cells whose ids `listing` names; an id the other filters do not select is a usage error."""
    try:
        wanted = {line.strip() for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()}
    except OSError as exc:
        raise pytest.UsageError(f"--cm-cells {listing}: {exc.strerror}") from None
    unknown = sorted(wanted - {c.id for c in cells})
    if unknown:
        raise pytest.UsageError(f"--cm-cells {listing}: {len(unknown)} id(s) not in this matrix's selection, "
                                f"e.g. {unknown[0]!r}")
    return [c for c in cells if c.id in wanted]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    done = _done(config)
    if done:
        finished = [i for i in items if isinstance(c := getattr(getattr(i, "callspec", None), "params", {}).get("cell"), Cell)
                    and c.id in done]
        if finished:
            config.hook.pytest_deselected(items=finished)
            items[:] = [i for i in items if i not in finished]
    for item in items:
        callspec = getattr(item, "callspec", None)
        cell = callspec.params.get("cell") if callspec else None
        if isinstance(cell, Cell):
            timeout = matrix_of(config).settings.cell_timeout_s
            item.add_marker(pytest.mark.compat_cell)
            # backstop only: execute.run_cell enforces the limit itself (compat_tests/deadline.py)
            item.add_marker(pytest.mark.timeout(timeout + BACKSTOP_S, method="thread"))


@pytest.fixture(scope="session")
def matrix_state(pytestconfig: pytest.Config) -> Any:
    """Per-process caches (checkpoints, the loaded model): imports and builds happen once per worker."""
    from compat_tests.execute import MatrixState

    return MatrixState(matrix_of(pytestconfig))


def cell_from_nodeid(nodeid: str) -> Cell | None:
    """The cell a test's node id names, read between its brackets (xdist's `--dist loadgroup`, which a
    user may pass, suffixes ids with `@<group>`); None for a test that is no cell."""
    if "[" not in nodeid or "]" not in nodeid:
        return None
    return Cell.from_id(nodeid[nodeid.index("[") + 1:nodeid.rindex("]")])


class ResultsRecorder:
    """Controller-side plugin: one flushed JSON line per cell, so a killed run keeps what finished."""

    def __init__(self, config: pytest.Config, folder: Path, cross: bool = False, resumed: bool = False):
        from compat_tests.environment import env_name

        self.config = config
        self.path = results_file(folder, env_name(), cross)
        self.locks = ExitStack()
        if os.environ.get(LOCK_HELD_ENV) != str(self.path.resolve()):
            self.locks.enter_context(holding(self.path))
        self.done = resume(self.path) if resumed else set()
        self.writer = ResultsWriter(self.path, fresh=not resumed)
        self.written: set[str] = set()
        self.last_fingerprint: dict[str, Any] | None = None

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist: each worker deselects the cells a resumed run already has."""
        node.workerinput["cm_done"] = sorted(self.done)

    def write(self, record: dict[str, Any]) -> None:
        try:
            self.writer.write(record)
        except ResultsNotWritten as exc:
            pytest.exit(str(exc), returncode=DISK_EXIT)

    def crash_record(self, report: pytest.TestReport, cell: Cell) -> dict[str, Any]:
        """An `error` line for a cell that timed out, crashed its worker or broke the harness.

        Built here in the controller, which never imports torch: the machine facts are those of
        the last line a worker sent (device `unknown` when none has yet)."""
        from compat_tests.environment import env_name, fingerprint

        matrix = matrix_of(self.config)
        facts = self.last_fingerprint or fingerprint("unknown")
        record = cell_record(matrix, cell, env_name(), facts)
        text = str(report.longrepr or "")
        reason = next((line for line in reversed(text.strip().splitlines()) if line.strip()), "no output")
        if "Timeout" in text:
            reason = f"stuck past {matrix.settings.cell_timeout_s + BACKSTOP_S:g} s and killed: {reason}"
        record.update(status="error", error_type="HarnessError",
                      message=f"the cell did not finish ({report.when}): {reason}"[:4000])
        return record

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.nodeid in self.written:
            return
        record: dict[str, Any] | None = dict(report.user_properties).get(RESULT_PROPERTY)  # type: ignore[assignment]
        if record is not None and report.when == "call":
            self.written.add(report.nodeid)
            self.last_fingerprint = {key: record[key] for key in FINGERPRINT_KEYS}
            self.write(record)
        elif record is None and report.failed:
            cell = cell_from_nodeid(report.nodeid)
            if cell is not None:
                self.written.add(report.nodeid)
                self.write(self.crash_record(report, cell))

    def pytest_unconfigure(self) -> None:
        self.writer.close()
        self.locks.close()
