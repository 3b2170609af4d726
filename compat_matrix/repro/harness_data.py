"""What a script needs of the harness's data, read from its source with `ast` (as `harness_hash.py` reads
imports): the harness's modules import transformers, which the CLI has not.

- the bos/eos/pad token ids a tiny build writes into its config (`compat_tests/tiny/checkpoint.py` takes
  them from the family's tokenizer in `compat_tests/tiny/families.py`; a recipe's own ids win);
- the tokenizer class of the family (`compat_tests/tiny/tokenizer.py`'s `build_tokenizer`);
- the names of the vision side's parameters (`loader/inspection.py`).
"""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any


def _package_folder(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, f"{package} is installed with compat_matrix"
    return Path(list(spec.submodule_search_locations)[0])


def _tiny_folder() -> Path:
    return _package_folder("compat_tests") / "tiny"


def vision_pattern() -> str:
    """The regular expression `loader.inspection.is_vision_name` uses."""
    for node in ast.parse((_package_folder("loader") / "inspection.py").read_text(encoding="utf-8")).body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "_VISION_PART"
                and isinstance(node.value, ast.Call) and node.value.args):
            return str(ast.literal_eval(node.value.args[0]))
    raise UnreadableFamilies(f"{_package_folder('loader') / 'inspection.py'}: no _VISION_PART = re.compile(...)")


class UnreadableFamilies(ValueError):
    """The harness's source no longer has the shape this reader expects (the message says where)."""


@lru_cache(maxsize=1)
def _assignments() -> dict[str, ast.expr]:
    found: dict[str, ast.expr] = {}
    for name in ("tokenizer.py", "families.py"):
        for node in ast.parse((_tiny_folder() / name).read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                found[node.targets[0].id] = node.value
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                found[node.target.id] = node.value
    return found


def _value(node: ast.expr) -> Any:
    """A literal, or a module-level name bound to one."""
    if isinstance(node, ast.Name):
        return _value(_assignments()[node.id])
    return ast.literal_eval(node)


def _tokenizer_call(node: ast.expr, model_type: str) -> ast.Call:
    """The `TokenizerSpec(...)` of a `Family(...)`, `TokenizerSpec(...)` or a name bound to either."""
    if isinstance(node, ast.Name):
        return _tokenizer_call(_assignments()[node.id], model_type)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id == "TokenizerSpec":
            return node
        if node.func.id == "Family":
            given = node.args[0] if node.args else next(k.value for k in node.keywords if k.arg == "tokenizer")
            return _tokenizer_call(given, model_type)
    raise UnreadableFamilies(f"{_tiny_folder() / 'families.py'}: FAMILIES[{model_type!r}]: expected Family(TokenizerSpec(...), ...), "
                             f"found {ast.unparse(node)[:80]}")


def _spec(model_type: str) -> dict[str, Any] | None:
    """The literal arguments of the family's TokenizerSpec; None for a model_type with no tiny family."""
    families = _assignments()["FAMILIES"]
    assert isinstance(families, ast.Dict)
    entry = next((v for k, v in zip(families.keys, families.values) if k is not None and _value(k) == model_type), None)
    if entry is None:
        return None
    return {k.arg: _value(k.value) for k in _tokenizer_call(entry, model_type).keywords if k.arg}


@lru_cache(maxsize=None)
def tokenizer_class(model_type: str) -> str:
    """The transformers tokenizer class a tiny build uses (`build_tokenizer`: its Fast twin where the release
    has one), as a Python expression on `transformers`."""
    spec = _spec(model_type)
    name = str(spec["class_name"]) if spec else "PreTrainedTokenizerFast"
    if name.endswith("Fast"):
        return f"transformers.{name}"
    return f'(getattr(transformers, "{name}Fast", None) or transformers.{name})'


@lru_cache(maxsize=None)
def special_ids(model_type: str) -> dict[str, int]:
    """`{"bos_token_id": ..., "eos_token_id": ..., "pad_token_id": ...}` as the build sets them (roles the
    family lacks are left out); empty for a model_type with no tiny family."""
    spec = _spec(model_type)
    if spec is None:
        return {}
    base = int(_value(_assignments()["SPECIAL_BASE"]))
    ids = {token: base + i for i, token in enumerate(spec["specials"])}
    roles = spec.get("roles", {})
    wanted = {"bos": roles.get("bos_token") or spec.get("config_bos"), "eos": roles.get("eos_token"),
              "pad": roles.get("pad_token")}
    return {f"{role}_token_id": ids[token] for role, token in wanted.items() if token}


@lru_cache(maxsize=None)
def tokenizer_setup(model_type: str) -> tuple[dict[str, int], dict[str, Any], str | None]:
    """What `build_tokenizer` gives the family's tokenizer: its special tokens (ids from SPECIAL_BASE), the keyword
    arguments of its class (roles, model_input_names, add_bos_token and legacy for the sentencepiece-like styles),
    and the bos token its backend prepends (None where it adds none). Empty for a model_type with no tiny family."""
    spec = _spec(model_type)
    if spec is None:
        return {}, {}, None
    base = int(_value(_assignments()["SPECIAL_BASE"]))
    specials = {token: base + i for i, token in enumerate(spec["specials"])}
    kwargs: dict[str, Any] = {role: token for role, token in spec.get("roles", {}).items() if token}
    if spec.get("extra_special_tokens"):
        kwargs["extra_special_tokens"] = dict(spec["extra_special_tokens"])
    if spec.get("model_input_names"):
        kwargs["model_input_names"] = list(spec["model_input_names"])
    if spec["style"] in ("gemma", "llama"):
        kwargs["add_bos_token"] = bool(spec.get("add_bos", False))
    if spec["style"] == "llama":
        kwargs["legacy"] = False
    bos = spec.get("roles", {}).get("bos_token")
    return specials, kwargs, bos if spec.get("add_bos") and bos else None


@lru_cache(maxsize=None)
def tokenizer_style(model_type: str) -> str | None:
    """The family's tokenizer pipeline (`qwen`, `gpt2`: byte-level BPE; `gemma`, `llama`: sentencepiece-like)."""
    spec = _spec(model_type)
    return str(spec["style"]) if spec else None
