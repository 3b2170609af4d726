"""A history run's time per release, read from its tox logs: the environment (tox setup), trl/peft
(install_training), the release's own cells, its as-published and cross-release cells, drift; and
the store's size on disk. A release whose own cells ran in its as-published cells' pytest session
(`runner.run_joint`) has one log, `<env>-cross.log`: its own cells show as "joint", its environment
and trl/peft from that log; an environment made while the previous release ran (`run/ahead.py`)
shows its seconds from `<env>-setup.log` as "ahead N" (off the run's critical path).

    .venv/bin/python bench/bench_history.py compat-report [--store ~/.cache/compat-matrix/store]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

TOX_TIMES = re.compile(r"(?:OK|FAIL code \d+) \(([\d.]+)=setup\[([\d.]+)\]\+cmd\[([\d.,]+)\] seconds\)")
"""tox's last line: total, environment setup, then each command (commands_pre first)."""


def times(log: Path) -> tuple[float, float, float] | None:
    """(environment, commands_pre, tests) seconds of one tox log; None when it did not finish OK."""
    found = TOX_TIMES.findall(log.read_text(encoding="utf-8", errors="replace")) if log.is_file() else []
    if not found:
        return None
    _, setup, commands = found[-1]
    parts = [float(c) for c in commands.split(",")]
    return float(setup), sum(parts[:-1]), parts[-1]


def made_ahead(log: Path) -> float | None:
    """Seconds of an environment made ahead (tox --notest, then install_training: two tox runs in one log)."""
    text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
    found = re.findall(r"OK \(([\d.]+)(?:=| seconds)", text)
    return sum(float(f) for f in found) if found else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the run's --out folder")
    parser.add_argument("--store", type=Path, help="the store folder, for its size")
    args = parser.parse_args()
    logs = args.out / "logs"
    envs = sorted({p.name.split(".")[0].removesuffix("-cross") for p in logs.glob("tf*.log")
                   if not p.name.split(".")[0].endswith(("-build", "-drift", "-setup"))})
    print("| release env | environment s | trl/peft s | own cells s | as-published + cross s | drift s |")
    print("| --- | --: | --: | --: | --: | --: |")
    for env in envs:
        own, cross, drift = times(logs / f"{env}.log"), times(logs / f"{env}-cross.log"), times(logs / f"{env}-drift.log")
        made = made_ahead(logs / f"{env}-setup.log")

        def show(value: float | None) -> str:
            return f"{value:.0f}" if value is not None else "-"

        first = own or cross  # the release's first tox run made (or checked) its environment
        environment = show(first[0] if first else None) + (f" (ahead {made:.0f})" if made is not None else "")
        own_cells = show(own[2]) if own else "joint" if cross and not (logs / f"{env}.log").is_file() else "-"
        print(f"| {env} | {environment} | {show(first[1] if first else None)} | {own_cells} "
              f"| {show(cross[2] if cross else None)} | {show(drift[2] if drift else None)} |")
    if args.store:
        size = sum(p.stat().st_size for p in args.store.rglob("*.jsonl"))
        lines = sum(1 for p in args.store.rglob("cells.jsonl") for _ in p.open(encoding="utf-8"))
        print(f"\nstore {args.store}: {lines} cell entries, {size / 1024**2:.1f} MiB ({size / max(lines, 1) / 1024:.1f} KiB a cell)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
