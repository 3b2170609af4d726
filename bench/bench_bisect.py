"""Bisect timing and release-environment creation, pip against uv, in one run (ratios, not asserts).

    .venv/bin/python bench/bench_bisect.py --model qwen2_5_vl            # bisect 5.0.0 -> 5.24.0, forward cells
    .venv/bin/python bench/bench_bisect.py --envs-only --release 5.1.0  # pip vs uv for one new environment

Bisect runs with --no-reuse (every tested release runs its cells); with --fresh-envs, bisect's cached
release environments are removed first, so each release's environment is made (by uv) during the
bisect; per release it reports the environment's setup seconds (from tox's own timing, in the
background preparation's log where bisect made it ahead) and the seconds of its test runs. For
pip against uv, environments are made in throwaway folders, each installer twice so the second run
has a warm package cache.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def env_seconds(release: str, runner: str, folder: Path) -> float:
    """Wall seconds of `tox --notest` making the `tfany` env for `release` with `runner`."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tox", "--root", str(REPO), "-e", "tfany", "--notest",
                           "-x", f"testenv:tfany.runner={runner}", "-x", f"testenv:tfany.env_dir={folder}"],
                          cwd=REPO, env={**os.environ, "COMPAT_MATRIX_REQUESTED": release}, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"tox failed for {release} with {runner}:\n{done.stdout[-2000:]}")
    return time.monotonic() - started


def bench_envs(release: str) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for runner, label in (("virtualenv", "pip"), ("uv-venv-runner", "uv")):
            for attempt in range(2):
                folder = Path(scratch) / f"{label}{attempt}"
                times.setdefault(label, []).append(round(env_seconds(release, runner, folder), 1))
                shutil.rmtree(folder, ignore_errors=True)
    return times


TOX_TIMING = re.compile(r"OK \((?P<total>[\d.]+)(?:=setup\[(?P<setup>[\d.]+)\])?")


def tox_timings(log: Path) -> list[tuple[float, float]]:
    """(total, setup) seconds of each tox call the log holds (`--notest`: all of it is setup)."""
    if not log.is_file():
        return []
    return [(float(m["total"]), float(m["setup"] or m["total"]))
            for m in TOX_TIMING.finditer(log.read_text(errors="replace"))]


def per_release(runs: Path) -> dict[str, dict[str, float]]:
    """Per release folder of a bisect's --out: environment setup and test-run seconds."""
    found: dict[str, dict[str, float]] = {}
    for folder in sorted(p for p in runs.iterdir() if p.is_dir()):
        prepared = tox_timings(folder / "logs" / "prepare.log")
        ran = [t for log in sorted((folder / "logs").glob("tf*.log")) for t in tox_timings(log)]
        found[folder.name] = {"env_s": round(sum(s for _, s in prepared + ran), 1),
                              "env_made_ahead": bool(prepared),
                              "runs_s": round(sum(total - setup for total, setup in ran), 1)}
    return found


def bench_bisect(model: str, good: str, bad: str, fresh_envs: bool) -> dict[str, object]:
    if fresh_envs:
        subprocess.run([sys.executable, "-m", "compat_matrix.cli", "envs", "prune", "--all"], cwd=REPO, check=True,
                       capture_output=True)
    with tempfile.TemporaryDirectory() as out:
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "compat_matrix.cli", "bisect", "--good", good, "--bad", bad,
                               "--models", model, "--probes", "forward", "--profiles", "default", "--no-reuse", "--json",
                               "--out", out], cwd=REPO, capture_output=True, text=True)
        seconds = time.monotonic() - started
        if done.returncode:
            raise SystemExit(f"bisect failed:\n{done.stderr[-2000:]}")
        releases = per_release(Path(out) / "bisect")
    result = json.loads(done.stdout)
    verdicts: dict[str, int] = {}
    for cell in result["cells"]:
        verdicts[cell["verdict"]] = verdicts.get(cell["verdict"], 0) + 1
    made = [r["env_s"] for r in releases.values() if r["env_s"] > 2]
    return {"seconds": round(seconds, 1), "releases_in_range": len(result["releases"]),
            "releases_run": len(result["releases_run"]), "cells": len(result["cells"]), "verdicts": verdicts,
            "seconds_per_release_run": round(seconds / max(1, len(result["releases_run"])), 1),
            "env_seconds_made": made, "envs_made_ahead": sum(r["env_made_ahead"] for r in releases.values()),
            "per_release": releases, "load_average": os.getloadavg()[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2_5_vl")
    parser.add_argument("--good", default="5.0.0")
    parser.add_argument("--bad", default="5.24.0")
    parser.add_argument("--release", default="5.1.0", help="release whose environment is timed")
    parser.add_argument("--envs-only", action="store_true")
    parser.add_argument("--bisect-only", action="store_true")
    parser.add_argument("--fresh-envs", action="store_true", help="remove bisect's cached environments first")
    args = parser.parse_args()
    report: dict[str, object] = {}
    if not args.bisect_only:
        envs = bench_envs(args.release)
        report["env_seconds"] = envs
        report["pip_over_uv_warm"] = round(envs["pip"][1] / envs["uv"][1], 1)
    if not args.envs_only:
        report["bisect"] = bench_bisect(args.model, args.good, args.bad, args.fresh_envs)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
