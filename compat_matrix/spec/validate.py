"""Turn `matrix.yaml` into a `Matrix`, or into a list of located, actionable problems.

Never a traceback: each problem names the file, the line, the key path and what is allowed.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from compat_matrix.spec.schema import Matrix, user_names
from compat_matrix.spec.yaml_source import DocumentTooLarge, KeyPath, YamlSource, read_yaml

DEFAULT_MATRIX = Path(__file__).resolve().parents[2] / "matrix.yaml"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the matrix file."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '<top level>'}: {self.message}"


class MatrixError(Exception):
    """The matrix file is not valid; `problems` holds every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _dotted(path: KeyPath, data: object) -> str:
    """`models[3](qwen2_5_vl).recipe.model_type`: the index and the model key, both."""
    parts: list[str] = []
    node = data
    for item in path:
        if isinstance(item, int):
            label = f"[{item}]"
            if isinstance(node, list) and item < len(node) and isinstance(node[item], dict) and "key" in node[item]:
                label += f"({node[item]['key']})"
            parts.append(label)
        else:
            parts.append(("." if parts else "") + item)
        if isinstance(node, (list, dict)):
            try:
                node = node[item]  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                node = None
    return "".join(parts)


def _pydantic_problems(error: ValidationError, source: YamlSource) -> list[Problem]:
    problems = []
    errors = error.errors()
    for item in errors:
        path = tuple(p for p in item["loc"] if not (isinstance(p, str) and p.startswith(("function-", "<"))))
        if item["type"] == "too_short" and any(len(o["loc"]) > len(item["loc"]) and o["loc"][:len(path)] == path for o in errors):
            continue  # "at least 1 item after validation" only repeats that its items were invalid
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key; check the spelling against matrix.yaml's documented keys (compat_matrix/spec/schema.py)"
        elif item["type"] == "literal_error":
            message = f"got {item['input']!r}; {message.lower()}"
        problems.append(Problem(str(source.file), source.line_of(path), _dotted(path, source.data), message))
    return problems


def known_model_types() -> dict[str, str] | None:
    """model_type -> config class from the installed transformers, or None without it."""
    try:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    except Exception:  # transformers absent or broken: the check is skipped, the tox envs still run it
        return None
    return dict(CONFIG_MAPPING_NAMES)


def _recipe_problems(matrix: Matrix, source: YamlSource) -> list[Problem]:
    model_types = known_model_types()
    if model_types is None:
        return []
    problems = []
    for index, entry in enumerate(matrix.models):  # a remote-code recipe's model_type is its own code's
        if entry.recipe and not entry.recipe.remote_code and entry.recipe.model_type not in model_types:
            path: KeyPath = ("models", index, "recipe", "model_type")
            near = difflib.get_close_matches(entry.recipe.model_type, model_types, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else "; see transformers' CONFIG_MAPPING_NAMES"
            problems.append(Problem(str(source.file), source.line_of(path), _dotted(path, source.data),
                                    f"unknown model_type {entry.recipe.model_type!r} in the installed transformers{hint}"))
    return problems


def _repro_problems(matrix: Matrix, source: YamlSource) -> list[Problem]:
    """Every expectation's `repro:` script must exist beside the matrix file."""
    located: list[tuple[KeyPath, str | None]] = [(("expectations", i, "repro"), e.repro) for i, e in enumerate(matrix.expectations)]
    located += [(("models", m, "expectations", i, "repro"), e.repro)
                for m, entry in enumerate(matrix.models) for i, e in enumerate(entry.expectations)]
    folder = Path(source.file).parent
    return [Problem(str(source.file), source.line_of(path), _dotted(path, source.data),
                    f"{script!r} is not a file (paths are relative to {folder or '.'}); write it with "
                    "`compat-matrix repro CELL --release R --out PATH`")
            for path, script in located if script and not (folder / script).is_file()]


def load_matrix(file: str | Path = DEFAULT_MATRIX, *, check_model_types: bool = True, check_files: bool = False) -> Matrix:
    """Parse and validate; raise `MatrixError` with every problem found. `check_files` (`compat-matrix
    validate`): the files it names exist too; off by default, since runs use copies of the file elsewhere
    (bisect --record's, tests')."""
    file = Path(file)
    if not file.is_file():
        raise MatrixError([Problem(str(file), None, "", "file not found; pass the path of a matrix.yaml")])
    try:
        source = read_yaml(file)
    except DocumentTooLarge as exc:
        raise MatrixError([Problem(str(file), exc.line, "", str(exc))]) from None
    except UnicodeDecodeError as exc:
        raise MatrixError([Problem(str(file), None, "", f"not UTF-8 text ({exc.reason} at byte {exc.start}); "
                                   "save the matrix file as UTF-8")]) from None
    except OSError as exc:
        raise MatrixError([Problem(str(file), None, "", f"cannot be read: {exc.strerror or exc}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise MatrixError([Problem(str(file), line, "", f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    problems = [Problem(str(file), p.line, _dotted(p.path, source.data), p.message) for p in source.problems]
    if not isinstance(source.data, dict):
        raise MatrixError([*problems, Problem(str(file), 1, "", "the top level must be a mapping with keys transformers, models, ...")])
    try:
        context = {key: user_names(source.data, key) for key in ("strategies", "probes")}
        matrix = Matrix.model_validate(source.data, context=context)
    except ValidationError as exc:
        raise MatrixError(problems + _pydantic_problems(exc, source)) from None
    if check_files:
        problems += _repro_problems(matrix, source)
    if check_model_types:
        problems += _recipe_problems(matrix, source)
    if problems:
        raise MatrixError(problems)
    return matrix
