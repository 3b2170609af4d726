"""Read YAML while remembering where each key sits, and refuse duplicate keys.

PyYAML silently keeps the last of two equal keys; a matrix that lists a model twice must be an
error instead, and every validation error should point at a line the user can open.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple[str | int, ...]


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

    def line_of(self, path: KeyPath) -> int | None:
        """Line of the deepest prefix of `path` that was seen in the file (1-based)."""
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line is not None:
                return line
        return None


def _walk(node: yaml.Node, path: KeyPath, source: YamlSource) -> Any:
    source.lines.setdefault(path, node.start_mark.line + 1)
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
    """Parse `file`; raise `yaml.YAMLError` (with its own line) when it is not YAML at all."""
    file = Path(file)
    text = file.read_text(encoding="utf-8")
    source = YamlSource(file=file, data=None, lines={}, problems=[])
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    source.data = {} if node is None else _walk(node, (), source)
    return source
