"""`check A B` cold, warm and from the results store, in one session on one machine, and the store's
hit rate and size.

- cold: an empty store (the environments made by a first untimed call when absent);
- warm: `--no-store`, environments present, a fresh --out (what `check` cost before the store);
- store: the store the cold call filled, a fresh --out.

    .venv/bin/python bench/bench_check.py --from 5.24.0 --to 5.25.0 [--models qwen2 llava] [--work /tmp/bench-check]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from same_statuses import compare, outcomes  # noqa: E402
STORE = "results-store"
"""The store folder under --work (beside each call's --out folder, never one of them)."""


LOADS: dict[str, tuple[float, float]] = {}
"""Each call's 1-minute load average at its start and end: the machine may be shared."""


def check(work: Path, name: str, pair: list[str], models: list[str], *extra: str) -> tuple[float, str]:
    """One `compat-matrix check` into its own --out: (seconds, stderr)."""
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    command = [str(REPO / ".venv" / "bin" / "compat-matrix"), "check", "--from", pair[0], "--to", pair[1],
               "--out", str(out), *(["--models", *models] if models else []), *extra]
    env = {**os.environ, "COMPAT_MATRIX_STORE": str(work / STORE)}
    start, load = time.monotonic(), os.getloadavg()[0]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    LOADS[name] = (load, os.getloadavg()[0])
    (work / f"{name}.out").write_text(done.stdout, encoding="utf-8")
    (work / f"{name}.err").write_text(done.stderr, encoding="utf-8")
    if done.returncode not in (0, 1) or "Traceback" in done.stderr:
        raise SystemExit(f"{name}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return seconds, done.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="from_release", default="5.24.0")
    parser.add_argument("--to", dest="to_release", default="5.25.0")
    parser.add_argument("--models", nargs="*", default=[])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-check"))
    parser.add_argument("--envs-ready", action="store_true", help="skip the untimed call that makes the environments")
    parser.add_argument("--no-warm", dest="warm", action="store_false", help="skip the --no-store call")
    args = parser.parse_args()
    pair, work = [args.from_release, args.to_release], args.work
    work.mkdir(parents=True, exist_ok=True)
    if not args.envs_ready:
        check(work, "setup", pair, args.models, "--no-store", "--no-drift")  # environments and checkpoints, untimed
    shutil.rmtree(work / STORE, ignore_errors=True)
    cold, _ = check(work, "cold", pair, args.models)
    warm = check(work, "warm", pair, args.models, "--no-store")[0] if args.warm else float("nan")
    stored, err = check(work, "from-store", pair, args.models)
    reused = [(int(a), int(b)) for a, b in re.findall(r"store: reused (\d+) of (\d+) cells", err)]
    drift = [(int(a), int(b)) for a, b in re.findall(r"store: reused (\d+) of (\d+) records", err)]
    hit, total = sum(a for a, _ in reused), sum(b for _, b in reused)
    size = sum(p.stat().st_size for p in (work / STORE).rglob("*.jsonl"))
    print(f"check {pair[0]} -> {pair[1]} ({', '.join(args.models) or 'default matrix'}):")
    print(f"  cold (empty store) {cold:.0f} s, warm (--no-store) {warm:.0f} s, from the store {stored:.0f} s "
          f"(cold / store {cold / stored:.1f}x)")
    print("  load average (1 min) at start and end: " + ", ".join(f"{name} {a:.1f}-{b:.1f}" for name, (a, b) in LOADS.items()))
    differences = compare(work / "cold", work / "from-store")
    print(f"  from the store against cold: {len(outcomes(work / 'cold'))} outcomes (cell statuses, error types, "
          f"expectations, drift records), {len(differences)} differ" + "".join(f"\n    {d}" for d in differences[:20]))
    same_text = (work / "cold.out").read_text(encoding="utf-8") == (work / "from-store.out").read_text(encoding="utf-8")
    print(f"  check's printed answer: {'the same' if same_text else 'differs'} (cold.out, from-store.out)")
    print(f"  store: {hit} of {total} cells reused ({100 * hit / max(total, 1):.0f}%), drift records "
          f"{sum(a for a, _ in drift)} of {sum(b for _, b in drift)}; {size / 1024**2:.1f} MiB on disk")
    return 0


if __name__ == "__main__":
    sys.exit(main())
