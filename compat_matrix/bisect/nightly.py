"""The nightly's regression bisect: when today's `latest` regressed against yesterday's `latest`, find
the first bad release between the two and add it to the regression issue's text.

    python -m compat_matrix.bisect.nightly site/report.json baseline/report.json regressions.md

Does nothing (exit 0, says why) when there is no baseline, `latest` did not move, or no regression
is in today's `latest`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from reports.report import Report


@dataclass(frozen=True)
class Plan:
    good: str
    bad: str
    models: list[str]
    strategies: list[str]
    probes: list[str]


def latest_of(report: Report) -> str | None:
    """The version `latest` resolved to in a report."""
    return next((r.transformers for r in report.releases if "latest" in r.requested), None)


def plan(today: Report, yesterday: Report) -> Plan | str:
    """What to bisect, or why nothing."""
    bad, good = latest_of(today), latest_of(yesterday)
    if bad is None or good is None:
        return "no `latest` release in one of the two reports"
    if Version(bad) <= Version(good):
        return f"`latest` did not move ({good})"
    regressed = [c for c in today.regressions if c.transformers == bad]
    if not regressed:
        return f"no regression in transformers {bad}"
    return Plan(good, bad, sorted({c.model for c in regressed}), sorted({c.strategy for c in regressed}),
                sorted({c.probe for c in regressed}))


def summary(found: dict, regressed_ids: set[str]) -> list[str]:
    """Markdown lines naming the first bad release of every regressed cell."""
    lines = ["", f"**First bad release** (bisect {found['good']} -> {found['bad']}, "
                 f"{len(found['releases_run'])} releases run):", ""]
    for cell in found["cells"]:
        if cell["cell_id"] not in regressed_ids:
            continue
        if cell["verdict"] == "boundary":
            lines.append(f"- `{cell['cell_id']}`: first bad **{cell['first_bad']}** (last good {cell['last_good']}): "
                         f"{cell['what_changed'][:200]}")
        else:
            lines.append(f"- `{cell['cell_id']}`: {cell['verdict']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    today_path, yesterday_path, markdown = (Path(a) for a in (argv or sys.argv[1:]))
    if not yesterday_path.is_file():
        print("nightly bisect: no baseline report, nothing to compare `latest` with")
        return 0
    today = Report.read(today_path)
    what = plan(today, Report.read(yesterday_path))
    if isinstance(what, str):
        print(f"nightly bisect: nothing to do: {what}")
        return 0
    command = [sys.executable, "-m", "compat_matrix.cli", "bisect", "--good", what.good, "--bad", what.bad, "--json",
               "--models", *what.models, "--strategies", *what.strategies, "--probes", *what.probes]
    print("nightly bisect: " + " ".join(command[2:]), flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    sys.stderr.write(done.stderr[-5000:])
    if done.returncode:
        with markdown.open("a", encoding="utf-8") as out:
            out.write(f"\nBisect between {what.good} and {what.bad} failed (exit {done.returncode}); see the run log.\n")
        return 0
    regressed = {c.cell_id for c in today.regressions if c.transformers == what.bad}
    with markdown.open("a", encoding="utf-8") as out:
        out.write("\n".join(summary(json.loads(done.stdout), regressed)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
