"""`report.json`: the merged data every renderer reads, and how it is written and read back.

Data first: Markdown, HTML, JUnit, the step summary and the upgrade view are all rendered
from this object, and a stored `report.json` is the baseline and history of later runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from reports.results import CellResult, Expected
from reports.status import Status

REPORT_SCHEMA_VERSION = 1
"""Version of the `report.json` layout (README.md); results lines have their own version."""

ProblemKind = Literal["missing_path", "unreadable", "bad_json", "schema_version", "invalid", "duplicate", "bad_history", "not_in_matrix"]
ChangeKind = Literal["regression", "fix"]
CauseKind = Literal["regression", "dependency", "expected", "silent", "fix"]
Against = Literal["expectation", "baseline"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Origin(_Frozen):
    """Where a line came from, so every message can name file and line."""

    file: str
    line: int


class Cell(CellResult):
    """A results line as merged into the report, with its origin."""

    origin: Origin
    """Results file and line (`source` is taken: it is the checkpoint source)."""


class Problem(_Frozen):
    """Input the report could not use as it was: a bad line, a bad file, or a duplicate cell."""

    kind: ProblemKind
    file: str
    line: int | None = None
    message: str


class Change(_Frozen):
    """A regression or a fix: the cell, what it should have been or was, what it is now."""

    kind: ChangeKind
    against: tuple[Against, ...]
    """What the cell is compared with; both when the expectation and the baseline agree."""
    transformers: str
    cell_id: str
    model: str
    strategy: str
    load_kwargs: str
    probe: str
    saved_by: str | None = None
    before: str
    """The baseline status when `against` holds `baseline`, else the expected status (`pass` without an expectation)."""
    now: Status
    expected: Expected | None = None
    baseline_status: str | None = None
    error_type: str | None = None
    message: str = ""


class Reproduction(_Frozen):
    """The script `compat-matrix repro --causes` wrote for a cause, and what verifying it showed."""

    script: str | None
    """Path relative to report.json's folder (`repro/<cause id>.py`); null where none could be written."""
    cell: str | None = None
    """`<transformers>/<cell_id>` the script is for."""
    good: str | None = None
    """The release where the same cell passes, where the script was also run."""
    lines: int | None = None
    verified: bool = False
    """The script fails in the cell's release with the cause's signature (and passes in `good`)."""
    verdict: str
    """`--verify`'s one line, or why there is no script or no verification."""


class Cause(_Frozen):
    """Cells that fail (or change, or got fixed) for one reason, derived from `cells` (reports/causes.py)."""

    id: str
    """Stable across runs (a hash of kind and signature): the page links `#cause-<id>`."""
    kind: CauseKind
    stage: str
    """`load`, `forward`, `API surface`, `generation`, `training`, `cross-release read`, ...; a silent change names its field."""
    error_type: str
    signature: str
    """The masked message the cells share (reports/signature.py)."""
    title: str
    status: str
    """The worst status of its cells (`pass` for silent changes and fixes)."""
    breaks: int
    """Distinct breaks: a load that failed counts once, not once per probe it kept from running."""
    cells: tuple[str, ...]
    """`<transformers>/<cell_id>` of every cell it covers."""
    models: tuple[str, ...]
    strategies: tuple[str, ...]
    load_kwargs: tuple[str, ...]
    probes: tuple[str, ...]
    releases: tuple[str, ...]
    """Releases (columns) it was seen in, in version order."""
    saved_by: tuple[str, ...] = ()
    """Releases whose checkpoints it concerns (cross-release causes)."""
    scope: str
    """Models x strategies x profiles x probes, compressed ("qwen2_5_vl x 3 strategies x 5 probes")."""
    release_ranges: str
    """`releases` as ranges of the tested releases ("4.49.0-4.57.6, 5.24.0")."""
    first_bad: str | None = None
    """The exact first bad release, where a bisect established it (null: only the tested releases are known)."""
    example_cell: str
    example: str
    """The full message of `example_cell` (error type first)."""
    expectations: tuple[str, ...] = ()
    """The matrix.yaml reasons its cells meet (expected failures) or no longer meet (fixes)."""
    repro: tuple[str, ...] = ()
    """Scripts that reproduce it (the `repro:` of the expectations its cells meet)."""
    expectation_yaml: str = ""
    """matrix.yaml `expectations:` entries that would record it, ready to paste (empty for silent changes)."""
    reproduction: Reproduction | None = None
    """Its script from `compat-matrix repro --causes` (null until that step ran on this report)."""


class Environment(_Frozen):
    """The fingerprint of one run that contributed cells to a release."""

    env: str
    python: str
    torch: str
    transformers: str
    device: str
    gpu_name: str | None = None
    git_commit: str | None = None
    cells: int
    """How many of the release's cells this run wrote."""


class Release(_Frozen):
    """One column of the grid: a resolved transformers version."""

    transformers: str
    requested: tuple[str, ...]
    """Every name it was asked for under (`4.57.6`, `latest`); `check --from latest` matches these."""
    environments: tuple[Environment, ...]
    counts: dict[str, int]
    """Cells per status."""
    cells: int


class BaselineInfo(_Frozen):
    """The earlier report regressions were computed against."""

    path: str
    generated_at: str
    missing_cells: tuple[str, ...] = ()
    """`<transformers>/<cell_id>` the baseline had and this report lacks (lost, renamed or not run)."""


class TrendPoint(_Frozen):
    """One earlier report, summarised for the trend strip."""

    generated_at: str
    file: str
    cells: int
    counts: dict[str, int]
    regressions: int
    fixes: int


class ReleaseSet(_Frozen):
    """The releases a run was asked for (specifiers included) and what they expanded to."""

    requested: tuple[str, ...]
    releases: tuple[str, ...]
    index: str | None = None
    """Where the expansion came from (index asked now, or a cached answer and its age)."""
    index_releases: tuple[str, ...] = ()
    """Every final release on the index over the set's span (empty: not known): a boundary between two
    releases of the report is exact when they are neighbours here."""


class Report(_Frozen):
    """The whole of `report.json`."""

    schema_version: int = REPORT_SCHEMA_VERSION
    results_schema_version: int
    generated_at: str
    generator: str = ""
    """The compat-matrix that built it (`compat-matrix 0.1.0`); empty in reports from before it was kept."""
    releases: tuple[Release, ...]
    """In version order."""
    cells: tuple[Cell, ...]
    regressions: tuple[Change, ...] = ()
    fixes: tuple[Change, ...] = ()
    causes: tuple[Cause, ...] = ()
    """Derived from `cells`, `regressions` and `fixes`: regressions first, then expected failures,
    silent changes, fixes; worst first within each kind."""
    problems: tuple[Problem, ...] = ()
    baseline: BaselineInfo | None = None
    trend: tuple[TrendPoint, ...] = ()
    """Earlier reports, oldest first (from `--history`)."""
    release_set: ReleaseSet | None = None
    """What `--transformers` or matrix.yaml asked for, when a specifier was expanded (`--release-set`)."""

    def write(self, path: Path) -> None:
        """Indented a little: people diff and grep stored reports."""
        path.write_text(self.model_dump_json(indent=1) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> Report:
        """Read a stored report; ValueError with the path and the reason when it cannot be used."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read a report.json: {exc}") from None
        version = data.get("schema_version") if isinstance(data, dict) else None
        if version != REPORT_SCHEMA_VERSION:
            raise ValueError(f"{path}: report schema_version {version!r}; this version of reports reads {REPORT_SCHEMA_VERSION}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ValueError(f"{path}: not a valid report.json: {exc}") from None
