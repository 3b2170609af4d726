"""The saved-by x loaded-by grid shows the best loading route, not the worst of every strategy."""

from __future__ import annotations

import json
from pathlib import Path

from reports.build import build_report
from reports.grid import build_grid

FIXTURES = Path(__file__).parent / "fixtures" / "results"
BASE = json.loads((FIXTURES / "nightly" / "tf457.jsonl").read_text().splitlines()[0])


def cross_line(strategy: str, probe: str, status: str) -> dict:
    return {**BASE, "model": "qwen2", "strategy": strategy, "load_kwargs": "default", "probe": probe, "status": status,
            "saved_by": "4.49.0", "cell_id": f"qwen2-{strategy}-default-{probe}@4.49.0", "expected": None,
            "message": "" if status == "pass" else "planted"}


def test_a_route_that_works_makes_the_cell_pass_and_the_others_stay_inside(tmp_path: Path) -> None:
    lines = [cross_line("auto_model", p, "fail") for p in ("load", "forward")]
    lines += [cross_line("explicit_class", p, "pass") for p in ("load", "forward")]
    (tmp_path / "tf457-cross.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    group = next(g for g in build_grid(build_report([tmp_path])).groups if g.cross)
    cell = group.cross.cells[("4.49.0", BASE["transformers"])]
    assert cell.worst == "pass"
    assert {p.strategy for p in cell.probes} == {"auto_model", "explicit_class"}


def test_when_every_route_fails_the_cell_fails(tmp_path: Path) -> None:
    lines = [cross_line(s, "load", "fail") for s in ("auto_model", "explicit_class")]
    (tmp_path / "tf457-cross.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    group = next(g for g in build_grid(build_report([tmp_path])).groups if g.cross)
    assert group.cross.cells[("4.49.0", BASE["transformers"])].worst == "fail"


def test_an_absent_route_does_not_hide_failing_ones(tmp_path: Path) -> None:
    lines = [cross_line("explicit_class", "load", "unsupported"), cross_line("smart", "load", "fail")]
    (tmp_path / "tf457-cross.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    group = next(g for g in build_grid(build_report([tmp_path])).groups if g.cross)
    assert group.cross.cells[("4.49.0", BASE["transformers"])].worst == "fail"
