"""Our `grpo_step` against TRL's GRPOTrainer (`trl_grpo`) on the same tiny checkpoint, in one process
and one run: medians of each, their ratio, and where our step's time goes.

Like with like: the same checkpoint loaded by the same strategy, the same G, prompts, completion
length, dtype and thread count, run alternately (ours, then TRL's, in every repeat) so that a
shared machine's load falls on both alike. Each repeat is a whole cell through `run_cell`, as a
matrix run has it: `grpo_step` finds its group's model loaded (the earlier probes of the group
loaded it; an untimed `load` cell stands in for them), and includes every check; TRL's cell loads
the model itself (`grpo_step` changed it), so its `step_s` (`trainer.train()`, without the
import, the load and the trainer's init) is the time compared. trl is imported before the timed
repeats, as a run pays it once per worker.

TRL runs twice per repeat: as the `trl_grpo` probe runs it (our step's training micro-batch,
`micro_batch_sizes[0]` rows, gradient accumulation over the rest, generation once for all, as the
GRPO recipes train), and with all G x P completions in one micro-batch (the fewest forwards TRL
can make, what the probe did before it trained as the recipes do). Prints medians and ratios of wall seconds, and of CPU seconds (`cpu_`: what a busy,
shared machine inflates least: our whole cell, TRL's `trainer.train()`); nothing here asserts a time.

    .tox/tf4_57_6/bin/python bench/bench_grpo.py [--model llama] [--repeats 9] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


@contextlib.contextmanager
def trl_in_one_micro_batch() -> Iterator[None]:
    """`trl_grpo` trains all P x G completions in one micro-batch (no gradient accumulation)."""
    from compat_tests.probes import trl_grpo

    original = trl_grpo.micro_batching

    def one(ctx: Any, options: set[str]) -> Any:
        total = ctx.settings.grpo.group_size * ctx.settings.grpo.prompts
        return trl_grpo.MicroBatching(total, 1, "bench: one micro-batch")

    trl_grpo.micro_batching = one
    try:
        yield
    finally:
        trl_grpo.micro_batching = original


def cpu_timed_train(trl: Any, seconds: list[float]) -> None:
    """Append the CPU seconds of every `GRPOTrainer.train()` to `seconds`."""
    train = trl.GRPOTrainer.train

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return train(self, *args, **kwargs)
        finally:
            seconds.append(time.process_time() - start)

    trl.GRPOTrainer.train = timed


def run(model: str, repeats: int, threads: int) -> dict[str, list[dict[str, Any]]]:
    """`repeats` rounds of: our cell, TRL's cell, TRL's cell at our micro-batch (after one untimed round).
    Each record gets `cpu_s`: CPU seconds of our whole cell, of TRL's `trainer.train()`."""
    import torch

    try:
        import trl
    except ImportError as exc:
        raise SystemExit(f"bench_grpo compares with TRL, which this environment lacks ({exc}); "
                         "tox's release environments get it from compat_matrix/envs/install_training.py") from None

    from compat_matrix.spec.cells import Cell
    from compat_matrix.spec.validate import load_matrix
    from compat_tests.execute import MatrixState, run_cell

    state = MatrixState(load_matrix(check_model_types=False))
    torch.set_num_threads(threads)
    trained: list[float] = []
    cpu_timed_train(trl, trained)

    def cell(probe: str) -> dict[str, Any]:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # TRL's logs
            start = time.process_time()
            record = run_cell(state, Cell(model, "smart", "default", probe))
            record["cpu_s"] = trained.pop() if trained else time.process_time() - start
            return record

    def ours() -> dict[str, Any]:
        cell("load")  # the group's model is loaded when grpo_step runs, as after generate in a matrix run
        return cell("grpo_step")

    def trl_one_micro_batch() -> dict[str, Any]:
        with trl_in_one_micro_batch():
            return cell("trl_grpo")

    kinds: dict[str, Callable[[], dict[str, Any]]] = {"ours": ours, "trl": lambda: cell("trl_grpo"),
                                                      "trl_one_micro_batch": trl_one_micro_batch}
    for name, take in list(kinds.items()):  # builds or reads the checkpoint, warms trl up
        first = take()
        if first["status"] == "skipped" and name != "ours":  # an image-text model without torchvision
            print(f"{name} skipped on {model}: {first['message']}", file=sys.stderr)
            del kinds[name]
        elif first["status"] != "pass":
            raise SystemExit(f"{name} on {model} did not pass: {first['message']}")
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in kinds}
    for _ in range(repeats):
        for name, take in kinds.items():
            records[name].append(take())
    failed = [r["message"] for rs in records.values() for r in rs if r["status"] != "pass"]
    if failed:
        raise SystemExit(f"a cell on {model} did not pass: {failed[0]}")
    return records


def median(records: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r["details"][key] if key in r["details"] else r[key] for r in records), 4)


def numbers(model: str, repeats: int, records: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    ours = records["ours"]
    phases = [key for key in ours[0]["details"] if key.endswith("_s") and key != "time_s"]
    found: dict[str, Any] = {
        "model": model, "repeats": repeats, "transformers": ours[0]["transformers"],
        "grpo_step_cell_s": median(ours, "duration_s"),
        "grpo_step_probe_s": median(ours, "time_s"),
        "grpo_step_phases_s": {key.removesuffix("_s"): median(ours, key) for key in phases},
        "cpu_grpo_step_cell_s": median(ours, "cpu_s"),
    }
    trl, trl_one = records.get("trl"), records.get("trl_one_micro_batch")
    if not trl or not trl_one:
        return found
    found.update({
        "trl": trl[0]["details"]["trl"],
        "trl_micro_batch_rows": trl[0]["details"].get("micro_batch_rows"),
        "trl_gradient_accumulation_steps": trl[0]["details"].get("gradient_accumulation_steps"),
        "trl_step_s": median(trl, "step_s"),
        "trl_init_s": median(trl, "init_s"),
        "trl_cell_s": median(trl, "duration_s"),
        "trl_one_micro_batch_step_s": median(trl_one, "step_s"),
        "cpu_trl_step_s": median(trl, "cpu_s"),
        "cpu_trl_one_micro_batch_step_s": median(trl_one, "cpu_s"),
    })
    for prefix in ("", "cpu_"):
        cell = found[f"{prefix}grpo_step_cell_s"]
        found[f"{prefix}ratio_to_trl_step"] = round(cell / found[f"{prefix}trl_step_s"], 3)
        found[f"{prefix}ratio_to_trl_one_micro_batch_step"] = round(cell / found[f"{prefix}trl_one_micro_batch_step_s"], 3)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama", help="a tiny model key (default: llama); TRL skips image-text models without torchvision")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both (default 1: what each of `compat-matrix run`'s two workers has on 2 cores)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    os.environ.setdefault("COMPAT_MATRIX_ENV", "bench")  # as tox sets it (else every line looks the release up)
    from transformers.utils import logging

    logging.set_verbosity_error()  # the Trainer's per-step notices, on a stream redirect_stderr does not reach
    load_before = os.getloadavg()[0]
    records = run(args.model, args.repeats, args.threads)
    found = numbers(args.model, args.repeats, records)
    found["threads"] = args.threads
    found["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    text = json.dumps(found, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
