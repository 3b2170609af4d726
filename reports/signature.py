"""What makes two failing cells the same break: a signature of the error type, the stage it failed
in, and the message with what varies between models and runs masked (numbers, paths, class names,
model names).

The same `TypeError` raised from `LlavaForConditionalGeneration.forward()` and from
`Qwen2VLForConditionalGeneration.forward()` is one cause; a different argument name is another;
a tensor shape or a temporary folder never splits a cause.
"""

from __future__ import annotations

import re
from functools import lru_cache
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

LOAD_FAILED_PREFIX = "not run, the load failed: "
"""How the harness (compat_tests/execute.py) words a probe that never ran because its load failed;
such a probe counts under the load's cause."""

UNREADABLE_PREFIX = "cannot read the config or processor that transformers {saved_by} saved: "
"""How the harness (compat_tests/execute.py) words another release's checkpoint that this release
cannot read; the library's own error (`Type: message`) follows."""

_UNREADABLE = re.compile(re.escape(UNREADABLE_PREFIX).replace(re.escape("{saved_by}"), r"\S+") + r"(\w+): (.*)", re.S)

CHECKPOINT_STAGE = "checkpoint"
"""Where a cell failed before any probe's own work: building or reading its checkpoint (the harness
records the error underneath as `details.root`). One cause for every probe it stops, whether the
harness built the checkpoint (an `error`) or read another release's (a `fail`)."""

BLOCKING_STAGES = (CHECKPOINT_STAGE, "load", "cross-release read")
"""Stages that fail before a probe's own work: their cause stops every probe of the route."""

STAGE_OF_PROBE: dict[str, str] = {
    "load": "load",
    "forward": "forward",
    "surface": "API surface",
    "generate": "generation",
    "grpo_step": "training",
    "adapter_roundtrip": "adapter round trip",
}
"""The stage a probe exercises, in the words a person debugging it would use."""

SIGNATURE_CHARS = 400
"""Masked messages are compared on this many characters (masked from twice as many: the masks'
patterns scan words, and a 20,000-character word must not cost seconds)."""

KEPT_CLASS_PREFIXES = ("Auto",)
"""transformers' Auto classes are kept: they name the API a loader called (AutoModelForCausalLM not
mapping a config is another break than AutoModelForImageTextToText not mapping it), not a model."""

KEPT_CLASS_SUFFIXES = ("Error", "Exception", "Warning")
"""Exception types named inside a message ("raised ValueError: ...") say what happened."""

_CLASS_REPR = re.compile(r"<class '[^']*'>")
_URL = re.compile(r"\bhttps?://\S+")
_PATH = re.compile(r"(?:file://)?[~\w.\-]*/[\w.@+\-/]*[\w\-]")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]+\b")
_DOTTED = re.compile(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*){2,}\b")
_CAMEL = re.compile(r"\b(?=\w*[a-z])(?=\w*[A-Z]\w*[A-Z])_*[A-Z]\w*")
_NUMBER = re.compile(r"(?<!\w)[-+]?(?:\d+(?:\.\d+)*|\.\d+)(?:[eE][-+]?\d+)?")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, order=True)
class Signature:
    """The parts that must be equal for two cells to share a cause."""

    stage: str
    error_type: str
    text: str
    """The message, masked (`‹class›`, `‹model›`, `‹path›`, `‹url›`, `‹n›`) and on one line."""


def failing_stage(probe: str, message: str, cross_release: bool, status: str = "fail") -> str:
    """Where a cell failed: the load when its probe never ran because the load failed, or when the
    strategy does not exist in the release (`unsupported` holds for every probe of the route)."""
    load = message.startswith(LOAD_FAILED_PREFIX) or status == "unsupported"
    stage = "load" if load else STAGE_OF_PROBE.get(probe, probe)
    if cross_release:
        return "cross-release read" if stage == "load" else f"cross-release {stage}"
    return stage


def essence(message: str) -> str:
    """The first line, where Python errors say what went wrong (auto classes then list every config
    they know, tracebacks follow); the whole text when that line only introduces what follows
    (`no route loaded a usable model:` and one line per route)."""
    lines = [line for line in message.strip().splitlines() if line.strip()]
    if not lines or lines[0].rstrip().endswith(":"):
        return message
    return lines[0]


def inner_error(error_type: str | None, message: str) -> tuple[str | None, str]:
    """The library's own error type and message where the harness wrapped it (an unreadable checkpoint
    of another release), else both as given: what a script calling the library itself raises."""
    found = _UNREADABLE.match(load_message(message))
    return (found.group(1), found.group(2)) if found else (error_type, message)


def load_message(message: str) -> str:
    """The load's own error of a probe that did not run because of it (other messages unchanged)."""
    return message.removeprefix(LOAD_FAILED_PREFIX)


def mask(text: str, model_names: Iterable[str] = ()) -> str:
    """`text` with everything that varies between models, runs and sizes replaced by a placeholder."""
    names = sorted({n for n in model_names if len(n) > 2}, key=len, reverse=True)
    text = _mask_names(text, [n for n in names if "/" in n])  # hub ids, before they read as paths
    text = _CLASS_REPR.sub("‹class›", text)
    text = _URL.sub("‹url›", text)
    text = _PATH.sub("‹path›", text)
    text = _mask_names(text, [n for n in names if "/" not in n])
    text = _DOTTED.sub("‹class›", text)
    text = _CAMEL.sub(lambda m: m.group() if _kept(m.group()) else "‹class›", text)
    text = _ADDRESS.sub("‹n›", text)
    text = _NUMBER.sub("‹n›", text)
    return _SPACE.sub(" ", text).strip()


def _kept(name: str) -> bool:
    return name.startswith(KEPT_CLASS_PREFIXES) or name.endswith(KEPT_CLASS_SUFFIXES)


def mask_numbers(text: str) -> str:
    """Only the numbers (layer indices in tensor names, sizes), for text whose words all matter."""
    return _NUMBER.sub("‹n›", _SPACE.sub(" ", text).strip())


def _mask_names(text: str, names: list[str]) -> str:
    """Whole-word model names (also as the head of a snake-case name: `gemma3` in `gemma3_text`);
    model keys match case-sensitively, so `qwen2` leaves the class `Qwen2_5_VLModel` to the class mask."""
    plain = [n for n in names if "/" not in n]
    for group, flags in (([n for n in names if "/" in n], re.IGNORECASE), (plain, 0)):
        if group:
            text = _names_pattern(tuple(group), flags).sub("‹model›", text)
    return text


@lru_cache(maxsize=64)
def _names_pattern(names: tuple[str, ...], flags: int) -> re.Pattern[str]:
    """One pattern for every name, longest first as given (a report masks ~8,000 messages with the
    same ~45 names: a `re.sub` per name per message was 3 s of a check from the store)."""
    return re.compile(rf"(?<![\w.-])(?:{'|'.join(map(re.escape, names))})(?=_|(?![\w-]))", flags)


def signature(
    probe: str,
    error_type: str | None,
    message: str,
    cross_release: bool = False,
    model_names: Iterable[str] = (),
    status: str = "fail",
    root: Any = None,
) -> Signature:
    """The cause signature of one failing cell (`model_names`: the model keys and hub ids to mask;
    `root`: the cell's `details.root`, what stopped it before its probe's own work)."""
    if isinstance(root, dict) and root.get("stage") == CHECKPOINT_STAGE:
        said = str(root.get("message") or "")
        return Signature(stage=CHECKPOINT_STAGE, error_type=str(root.get("error_type") or ""),
                         text=mask(essence(said)[: 2 * SIGNATURE_CHARS], model_names)[:SIGNATURE_CHARS])
    return Signature(
        stage=failing_stage(probe, message, cross_release, status),
        error_type=error_type or "",
        text=mask(essence(load_message(message))[: 2 * SIGNATURE_CHARS], model_names)[:SIGNATURE_CHARS],
    )
