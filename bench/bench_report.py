"""What a report weighs and what it costs to build: report.json (the complete record), index.html
(the first screen), the per-model cell files the page loads on demand, each raw and gzipped, and
the seconds to build and write them.

    python bench/bench_report.py RESULTS... [--as-releases 4.49.0 4.51.3 ...] [--out DIR] [--json FILE]

`--as-releases` measures a report larger than the results at hand: each named release that the
results lack gets a copy of one release's lines (relabelled, nothing else changed), e.g. a
two-release CI run copied to the six releases of the default matrix. Say so wherever such a
number is quoted.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reports.build import build_report  # noqa: E402
from reports.cli import write_outputs  # noqa: E402


def relabelled(sources: list[Path], releases: list[str], folder: Path) -> list[Path]:
    """For each release in `releases` not in `sources`, a copy of the lines of one release that is
    (the one with the same major version where there is one), relabelled."""
    by_release: dict[str, list[dict]] = {}
    for source in sources:
        for path in sorted(source.rglob("*.jsonl")) if source.is_dir() else [source]:
            for text in path.read_text(encoding="utf-8").splitlines():
                if text.strip():
                    line = json.loads(text)
                    by_release.setdefault(line["transformers"], []).append(line)
    written = []
    for release in [r for r in releases if r not in by_release]:
        same_major = [r for r in by_release if r.split(".")[0] == release.split(".")[0]]
        original = (same_major or list(by_release))[0]
        env = "tf" + release.replace(".", "_")
        copies = []
        for line in by_release[original]:
            copy = {**line, "transformers": release, "transformers_requested": release, "env": env}
            if line.get("saved_by") == original:
                copy["saved_by"] = release  # a round trip stays one
            copies.append(json.dumps(copy))
        path = folder / f"{env}.jsonl"
        path.write_text("\n".join(copies) + "\n", encoding="utf-8")
        written.append(path)
    return written


def sizes(path: Path) -> dict[str, int]:
    data = path.read_bytes()
    return {"bytes": len(data), "gzip_bytes": len(gzip.compress(data, 6))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--as-releases", nargs="+", default=[], help="copy every line to these releases too")
    parser.add_argument("--out", type=Path, help="where to write the report (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-report-"))
    out = args.out or scratch / "site"
    inputs = [*args.results, *relabelled(args.results, args.as_releases, scratch)]
    start = time.perf_counter()
    report = build_report(inputs)
    built = time.perf_counter()
    write_outputs(report, out)
    written = time.perf_counter()
    cell_files = sorted((out / "cells").glob("*.js")) if (out / "cells").is_dir() else []
    numbers = {
        "cells": len(report.cells), "releases": [r.transformers for r in report.releases],
        "relabelled_releases": args.as_releases,
        "report_json": sizes(out / "report.json"), "index_html": sizes(out / "index.html"),
        "cell_files": {"count": len(cell_files), "bytes": sum(p.stat().st_size for p in cell_files),
                       "largest_bytes": max((p.stat().st_size for p in cell_files), default=0),
                       "gzip_bytes": sum(sizes(p)["gzip_bytes"] for p in cell_files)},
        "build_s": round(built - start, 2), "write_s": round(written - built, 2),
    }
    print(json.dumps(numbers, indent=1))
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
