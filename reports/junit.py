"""JUnit XML, one file per release, for CI test-result views.

Expected failures (a `fail`/`error` that its matrix.yaml expectation predicts) are written as
skipped, as pytest does for xfail, so a known breakage does not turn the CI view red.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from reports.report import Cell, Report
from reports.status import FAILING, meets_expectation
from reports.text import shorten, xml_text

MESSAGE_ATTR_CHARS = 500
"""The `message` attribute is cut to this; the element text keeps the whole message."""


def junit_filename(release: str) -> str:
    """`junit-<release>.xml`, with anything unsafe in a file name replaced."""
    return f"junit-{re.sub(r'[^A-Za-z0-9._-]', '_', release)}.xml"


def write_junit(report: Report, out_dir: Path) -> list[Path]:
    """Write one JUnit file per release into `out_dir`; returns their paths."""
    paths = []
    for release in report.releases:
        path = out_dir / junit_filename(release.transformers)
        path.write_bytes(junit_xml(report, release.transformers))
        paths.append(path)
    return paths


def junit_xml(report: Report, release: str) -> bytes:
    """The JUnit document of one release: a testsuite per model, a testcase per cell."""
    cells = [c for c in report.cells if c.transformers == release]
    root = ET.Element("testsuites", name=xml_text(f"compat-matrix transformers {release}"))
    by_model: dict[str, list[Cell]] = {}
    for cell in cells:
        by_model.setdefault(cell.model, []).append(cell)
    for model, members in by_model.items():
        suite = ET.SubElement(root, "testsuite", name=xml_text(f"{model} @ transformers {release}"))
        properties = ET.SubElement(suite, "properties")
        first = members[0]
        for name in ("transformers", "transformers_requested", "torch", "python", "device", "gpu_name", "git_commit", "env"):
            ET.SubElement(properties, "property", name=name, value=xml_text(str(getattr(first, name) or "")))
        for cell in members:
            _testcase(suite, cell)
        _count(suite, members)
    _count(root, cells)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _testcase(suite: ET.Element, cell: Cell) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        classname=xml_text(f"{cell.model}.{cell.strategy}.{cell.load_kwargs}"),
        name=xml_text(cell.cell_id),
        time=f"{cell.duration_s:.3f}",
    )
    text = xml_text(f"{cell.error_type}: {cell.message}" if cell.error_type else cell.message)
    if cell.status in FAILING and _expected(cell):
        reason = cell.expected.reason if cell.expected else ""
        ET.SubElement(
            case, "skipped", message=shorten(xml_text(f"expected {cell.status}: {reason}"), MESSAGE_ATTR_CHARS)
        ).text = text
    elif cell.status in FAILING:
        tag = "failure" if cell.status == "fail" else "error"
        ET.SubElement(
            case, tag, type=xml_text(cell.error_type or cell.status), message=shorten(text, MESSAGE_ATTR_CHARS)
        ).text = text
    elif cell.status != "pass":
        ET.SubElement(case, "skipped", message=shorten(xml_text(f"{cell.status}: {cell.message}"), MESSAGE_ATTR_CHARS))


def _expected(cell: Cell) -> bool:
    return cell.expected is not None and meets_expectation(cell.status, cell.expected.status)


def _count(element: ET.Element, cells: list[Cell]) -> None:
    expected = sum(1 for c in cells if c.status in FAILING and _expected(c))
    element.set("tests", str(len(cells)))
    element.set("failures", str(sum(1 for c in cells if c.status == "fail" and not _expected(c))))
    element.set("errors", str(sum(1 for c in cells if c.status == "error" and not _expected(c))))
    element.set("skipped", str(sum(1 for c in cells if c.status in ("skipped", "unsupported")) + expected))
    element.set("time", f"{sum(c.duration_s for c in cells):.3f}")
