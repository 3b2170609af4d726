"""The MoE table of docs/moe.md from a run's result lines: per model and release, the smart load,
forward and grpo_step of the release's own checkpoint, the modules and trainable parameters of the
`lora` profile, and the adapters 4.57.6 saved as that release reads them, with trl and peft versions.

    compat-matrix run --transformers 4.57.6 5.0.0 5.24.0 --models qwen3_moe mixtral deepseek_v3 olmoe gpt_oss \
        qwen3_vl_moe --strategies smart --cross-release --out runs/moe
    python bench/moe_table.py runs/moe [more run folders]

A cell the runs lack is shown as `-`, never guessed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

MOE = ("qwen3_moe", "mixtral", "deepseek_v3", "olmoe", "gpt_oss", "qwen3_vl_moe")
ADAPTER_PROFILES = ("lora", "lora_attention", "lora_params", "lora_vision")
"""Shown for a model where the runs hold that profile (`lora_vision`: the image-text model only)."""
WRITER = "4.57.6"
"""The release whose adapters every release reads (the last 4.x: the adapters teams carry to 5.x)."""

Key = tuple[str, str, str, str, str | None]


def read_lines(folders: list[Path]) -> dict[Key, dict[str, Any]]:
    """(model, release, profile, probe, saved_by) -> the smart cell's line, later runs winning."""
    lines = {}
    for folder in folders:
        for file in sorted((folder / "results").glob("*.jsonl")):
            for text in file.read_text().splitlines():
                line = json.loads(text)
                if line["model"] in MOE and line["strategy"] == "smart":
                    lines[(line["model"], line["transformers"], line["load_kwargs"], line["probe"], line["saved_by"])] = line
    return lines


def why(line: dict[str, Any]) -> str:
    """A few words of the cell's message: the check that failed and its count or exception."""
    message = line["message"].removeprefix("not run, the load failed: ")
    details = line.get("details") or {}
    if message.startswith("adapter_keys"):
        return f"{details.get('not_loaded_count')} of {details.get('saved_tensors')} tensors not loaded"
    if message.startswith("adapter_load"):
        return "from_pretrained raises " + message.split(" raised ")[-1].split(":")[0]
    if "could not save" in message or "has saved no adapter" in message:
        return "the writer saved none"
    if "ignore_mismatched_sizes" in message:
        return "the base checkpoint does not load: expert shapes"
    if "mm_token_type_ids" in message:
        return "needs mm_token_type_ids"
    return message.split(":")[0][:40]


def status(line: dict[str, Any] | None) -> str:
    if line is None:
        return "-"
    if line["status"] in ("pass", "unsupported"):
        return line["status"]
    return f"{line['status']} ({why(line)})"


def adapted(line: dict[str, Any] | None) -> str:
    adapter = (line or {}).get("details", {}).get("adapter")
    if not adapter:
        return status(line)
    covered = "" if line is None or line["status"] == "pass" else f", {status(line)}"
    return f"{adapter.get('matched', '?')} / {adapter.get('trainable', 0):,}{covered}"


def row(lines: dict[Key, dict[str, Any]], model: str, release: str) -> str:
    own = {probe: lines.get((model, release, "default", probe, None)) for probe in ("load", "forward", "grpo_step")}
    saved_by = None if release == WRITER else WRITER
    profiles = [p for p in ADAPTER_PROFILES if any(key[0] == model and key[2] == p for key in lines)]
    reads = [f"{profile} {status(lines.get((model, release, profile, 'adapter_roundtrip', saved_by)))}"
             for profile in profiles]
    versions = next((line["libraries"] for key, line in lines.items() if key[:2] == (model, release)), {})
    return (f"| {model} | {release} | {status(own['load'])} | {status(own['forward'])} | {status(own['grpo_step'])} | "
            f"{adapted(lines.get((model, release, 'lora', 'load', None)))} | {'; '.join(reads)} | "
            f"{versions.get('trl') or '-'} / {versions.get('peft') or '-'} |")


def table(lines: dict[Key, dict[str, Any]]) -> str:
    releases = sorted({key[1] for key in lines}, key=lambda v: tuple(int(p) for p in v.split(".")))
    head = ("| model | release | load | forward | grpo_step | `lora`: modules / trainable | adapters 4.57.6 saved, read here "
            "| trl / peft |\n|---|---|---|---|---|---|---|---|")
    return "\n".join([head, *(row(lines, model, release) for model in MOE for release in releases)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run output folders (with results/*.jsonl)")
    print(table(read_lines(parser.parse_args().runs)))


if __name__ == "__main__":
    main()
