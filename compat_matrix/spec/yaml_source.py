"""Read YAML while remembering where each key sits, and refuse duplicate keys.

PyYAML silently keeps the last of two equal keys; a matrix that lists a model twice must be an
error instead, and every validation error should point at a line the user can open.

The document is bounded before it becomes Python objects: its size, how many values it expands
to (YAML aliases repeat a subtree, so a 1 KB "billion laughs" file expands to 10^9 values) and how
deep it nests. Over a limit is a `DocumentTooLarge` naming the limit, never a MemoryError.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple[str | int, ...]

MAX_BYTES = 1_000_000
"""Largest matrix file read (the repo's matrix.yaml is ~20 KB)."""
MAX_VALUES = 200_000
"""Most values (mappings, lists, scalars) the document may expand to, aliases expanded."""
MAX_DEPTH = 40
"""Deepest nesting of mappings and lists (matrix.yaml nests 7 deep)."""


class DocumentTooLarge(ValueError):
    """The file is over one of the limits above; the message names it."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class SourceProblem:
    """A problem found while reading the file, before any schema check."""

    path: KeyPath
    line: int | None
    message: str


@dataclass
class YamlSource:
    """Parsed data plus the line of every key path and the duplicate keys found."""

    file: Path
    data: Any
    lines: dict[KeyPath, int]
    problems: list[SourceProblem]
    values: int = 0
    """Values built so far, aliases expanded (bounded by MAX_VALUES)."""

    def line_of(self, path: KeyPath) -> int | None:
        """Line of the deepest prefix of `path` that was seen in the file (1-based)."""
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line is not None:
                return line
        return None


def _walk(node: yaml.Node, path: KeyPath, source: YamlSource) -> Any:
    source.lines.setdefault(path, node.start_mark.line + 1)
    source.values += 1
    if source.values > MAX_VALUES:
        raise DocumentTooLarge(f"the document expands to more than {MAX_VALUES:,} values (MAX_VALUES; YAML aliases "
                               "repeat what they point to): write the entries out, or use fewer nested aliases",
                               node.start_mark.line + 1)
    if len(path) > MAX_DEPTH:
        raise DocumentTooLarge(f"nested deeper than {MAX_DEPTH} levels (MAX_DEPTH); a matrix file nests a few levels",
                               node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            child = (*path, str(key))
            if key in result:
                source.problems.append(
                    SourceProblem(child, key_node.start_mark.line + 1,
                                  f"duplicate key {key!r} (first at line {source.lines.get(child)}); remove one of them")
                )
                continue
            source.lines[child] = key_node.start_mark.line + 1
            result[key] = _walk(value_node, child, source)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*path, index), source) for index, item in enumerate(node.value)]
    return _scalar(node)


_CONSTRUCTOR = yaml.SafeLoader("")


def _scalar(node: yaml.Node) -> Any:
    return _CONSTRUCTOR.construct_object(node, deep=True)


def read_yaml(file: str | Path) -> YamlSource:
    """Parse `file`; raise `yaml.YAMLError` (with its own line) when it is not YAML at all, and
    `DocumentTooLarge` over a limit (also UnicodeDecodeError when it is not UTF-8 text)."""
    file = Path(file)
    size = file.stat().st_size
    if size > MAX_BYTES:
        raise DocumentTooLarge(f"{size:,} bytes, over the {MAX_BYTES:,}-byte limit (MAX_BYTES) for a matrix file")
    text = file.read_text(encoding="utf-8")
    source = YamlSource(file=file, data=None, lines={}, problems=[])
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:  # the composer recurses once per nesting level
        raise DocumentTooLarge(f"nested deeper than {MAX_DEPTH} levels (MAX_DEPTH); a matrix file nests a few levels") from None
    source.data = {} if node is None else _walk(node, (), source)
    return source
