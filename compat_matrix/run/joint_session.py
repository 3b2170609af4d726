"""pytest plugin: a release's own cells run in the session of its as-published cells (one pytest start, not two).

The matrix plugin (`compat_tests.plugin`, frozen with the harness code) selects one kind of cell per
session and writes one results file. A history run (`--published-only`) started pytest twice per
release, once for its 72 hub-entry cells (~10 s of tox, xdist start and collection, the cells
skipping in well under a second) and once for its ~1,800 as-published cells. The runner loads this
plugin (`-p`, controller and xdist workers) with `OWN_CELLS_ENV` naming a file of own cell ids, in run
order: they join the session's parametrization, and each line goes to the file it always went to,
`<env>.jsonl` (own cells: no `saved_by`) or `<env>-cross.jsonl`. The cells run as before: nothing
here is in a cell's code, so results and their store keys do not change.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from compat_matrix.spec.cells import Cell
from compat_matrix.spec.layout import results_file
from compat_matrix.spec.results_io import LOCK_HELD_ENV

OWN_CELLS_ENV = "COMPAT_MATRIX_OWN_CELLS"
"""A file of the own cell ids this session also runs, one a line, in run order (runner.OWN_CELLS_ENV)."""
OWN_LOCK_HELD_ENV = "COMPAT_MATRIX_OWN_LOCK_HELD"
"""The own results file whose lock the runner holds for this session (runner.OWN_LOCK_HELD_ENV)."""


_OWN = pytest.StashKey[list[Cell]]()


def own_cells() -> list[Cell]:
    """The own cells named by OWN_CELLS_ENV; none without it. An id that does not parse is an error."""
    listing = os.environ.get(OWN_CELLS_ENV)
    if not listing:
        return []
    cells = []
    for raw in Path(listing).read_text(encoding="utf-8").splitlines():
        if not raw.strip():
            continue
        cell = Cell.from_id(raw.strip())
        if cell is None or cell.saved_by is not None:
            raise pytest.UsageError(f"{OWN_CELLS_ENV}={listing}: {raw.strip()!r} is not an own cell id "
                                    "(model-strategy-profile-probe, no @release)")
        cells.append(cell)
    return cells


@pytest.hookimpl(wrapper=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> Generator[None, Any, Any]:
    """Put the own cells before the as-published ones in the matrix plugin's `cell` parametrization."""
    own = metafunc.config.stash.get(_OWN, []) if "cell" in metafunc.fixturenames else []
    if not own:
        return (yield)
    parametrize = metafunc.parametrize

    def with_own(argnames: Any, argvalues: Any, *args: Any, ids: Any = None, **kwargs: Any) -> None:
        if argnames == "cell":
            argvalues = [*own, *argvalues]
            ids = [c.id for c in own] + list(ids if ids is not None else (c.id for c in argvalues[len(own):]))
        parametrize(argnames, argvalues, *args, ids=ids, **kwargs)

    metafunc.parametrize = with_own  # type: ignore[method-assign]
    try:
        return (yield)
    finally:
        metafunc.parametrize = parametrize  # type: ignore[method-assign]


def _is_own(nodeid: str) -> bool | None:
    """Whether a test is an own cell (no `saved_by`); None for a test that is no cell."""
    from compat_tests.plugin import cell_from_nodeid

    cell = cell_from_nodeid(nodeid)
    return None if cell is None else cell.saved_by is None


def _recorder(config: pytest.Config, folder: Path, cross: bool, resumed: bool) -> Any:
    """A results recorder for the cells of one kind (own, or the rest) and their file."""
    from compat_tests.environment import env_name
    from compat_tests.plugin import ResultsRecorder

    class Routed(ResultsRecorder):  # type: ignore[misc]
        def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
            own = _is_own(report.nodeid)
            if own is None or own != cross:  # own cells to <env>.jsonl, the rest to <env>-cross.jsonl
                super().pytest_runtest_logreport(report)

        @pytest.hookimpl(optionalhook=True)
        def pytest_configure_node(self, node: Any) -> None:
            if cross:  # one recorder hands workers the finished cells (both files')
                super().pytest_configure_node(node)

    path = results_file(folder, env_name(), cross).resolve()
    held = os.environ.get(LOCK_HELD_ENV)
    if not cross and os.environ.get(OWN_LOCK_HELD_ENV) == str(path):
        os.environ[LOCK_HELD_ENV] = str(path)  # the runner holds this file's lock too
    try:
        return Routed(config, folder, cross, resumed)
    finally:
        if held is None:
            os.environ.pop(LOCK_HELD_ENV, None)
        else:
            os.environ[LOCK_HELD_ENV] = held


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Read the own cells (a bad listing stops the run before any cell, naming the file); in the
    controller, the matrix plugin's one recorder becomes two, each writing its own cells' lines."""
    config.stash[_OWN] = own_cells()
    if hasattr(config, "workerinput") or not config.stash[_OWN]:
        return
    single = config.pluginmanager.get_plugin("compat-results")
    if single is None:
        return
    if not single.path.name.endswith("-cross.jsonl"):
        raise pytest.UsageError(f"{OWN_CELLS_ENV} joins own cells to a session of as-published or cross-release "
                                f"cells (--cm-published / --cm-saved-by); this one writes {single.path.name}")
    resumed = bool(config.getoption("--cm-resume"))
    folder = Path(config.getoption("--cm-results"))
    config.pluginmanager.unregister(single, "compat-results")
    single.writer.close()
    single.locks.close()
    own = _recorder(config, folder, cross=False, resumed=resumed)
    rest = _recorder(config, folder, cross=True, resumed=resumed)
    rest.done |= own.done
    config.pluginmanager.register(rest, "compat-results")
    config.pluginmanager.register(own, "compat-results-own")
