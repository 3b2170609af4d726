"""Which optional packages a release environment has, and whether a failure stems from one it lacks.

The packages are transformers' own list: the backends its `requires` checks know (BACKENDS_MAPPING,
whose messages say "X requires the Y library") and the few it checks elsewhere. A failure is put down
to a missing package only on evidence: a traceback that names a module this environment cannot
import, a "requires the Y library" message for a backend it lacks, or a processor part that is
absent while the class transformers has for that part is a placeholder for a backend it lacks, or
a message that asks to `pip install` one of the listed packages that this environment lacks.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

CHECKED_ELSEWHERE = ("num2words", "tiktoken")
"""Packages transformers checks with `is_<name>_available` outside BACKENDS_MAPPING (SmolVLM's
processor, tokenizers converted from tiktoken files)."""

_PIP_INSTALL = re.compile(r"pip install [\"'`]?([A-Za-z][\w.\-]*)")
_REQUIRED_PACKAGE = re.compile(r"[`'\"]([A-Za-z][\w.\-]*)[`'\"] (?:is|are) (?:required|not installed)")
_MISSING_OPTIONAL = re.compile(r"Missing optional dependenc(?:y|ies): ([\w.\-]+(?:, [\w.\-]+)*)")
"""5.13-5.17's image processor loading when no backend's class imports ("... Missing optional dependencies:
torchvision."): a list of names."""
_NONE_PART = re.compile(r"NoneType|\bNone\b")


@dataclass(frozen=True)
class Need:
    """A package this environment lacks, and the evidence that the failure needs it."""

    package: str
    why: str


class MissingPackage(ImportError):
    """Raised where the harness itself finds that a package is missing (building a processor)."""

    def __init__(self, need: Need) -> None:
        super().__init__(f"needs {need.package}: {need.why}", name=need.package)
        self.need = need


def _backends() -> dict[str, tuple[Callable[[], Any], str]]:
    from transformers.utils import import_utils

    return dict(import_utils.BACKENDS_MAPPING)


def _available(check: Callable[[], Any]) -> bool:
    try:
        found = check()
    except Exception:
        return False
    return bool(found[0] if isinstance(found, tuple) else found)


@functools.cache
def optional_packages() -> dict[str, bool]:
    """Every optional package transformers checks for in this release, and whether it imports here."""
    from transformers.utils import import_utils

    found = {name: _available(check) for name, (check, _) in _backends().items()}
    for name in CHECKED_ELSEWHERE:
        check = getattr(import_utils, f"is_{name}_available", None)
        if check is not None:
            found[name] = _available(check)
    return dict(sorted(found.items()))


def module_absent(module: str) -> bool:
    """True when the top-level module of `module` cannot be imported here (not installed, or hidden
    by a None entry in sys.modules, as Python itself reads it)."""
    top = module.split(".")[0]
    if top in sys.modules:
        return sys.modules[top] is None
    try:
        return importlib.util.find_spec(top) is None
    except (ImportError, ValueError):
        return True


def absent(package: str) -> bool:
    """A package (a transformers backend name or a module name) that this environment lacks."""
    known = optional_packages()
    if package in known and not known[package]:
        return True
    return module_absent(package.replace("-", "_"))


@functools.cache
def _requirement_texts() -> dict[str, str]:
    """Per backend, the fixed first line of transformers' "requires the Y library" message."""
    texts = {}
    for name, (_, template) in _backends().items():
        pieces = [piece.strip().splitlines()[0] for piece in template.replace("{0}", "\0").split("\0") if piece.strip()]
        if pieces:
            texts[name] = max(pieces, key=len)
    return texts


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_line(error: BaseException) -> str:
    line = next((part.strip() for part in str(error).splitlines() if part.strip()), "")
    return f"{type(error).__name__}: {line}" if line else type(error).__name__


def needed_package(error: BaseException, processor: Any = None) -> Need | None:
    """The package this environment lacks that `error` (or an error it came from) stems from, or None.

    `processor`: the one the failing code used, whose parts may be absent for want of a backend."""
    for exc in _chain(error):
        if isinstance(exc, MissingPackage):
            return exc.need
        if isinstance(exc, ImportError) and exc.name and module_absent(exc.name):
            return Need(exc.name.split(".")[0], _first_line(exc))
        text = str(exc)
        for backend, required in _requirement_texts().items():
            if required in text and absent(backend):
                return Need(backend, _first_line(exc))
        listed = [name.rstrip(".") for found in _MISSING_OPTIONAL.findall(text) for name in found.split(", ")]
        for named in [*_PIP_INSTALL.findall(text), *_REQUIRED_PACKAGE.findall(text), *listed]:
            if named in optional_packages() and absent(named):
                return Need(named, _first_line(exc))
    if processor is not None and any(isinstance(e, (AttributeError, TypeError)) for e in _chain(error)):
        for part, backends in absent_parts(processor).items():
            if any(_NONE_PART.search(str(e)) or part in str(e) for e in _chain(error)):
                name = _class_name(processor)
                return Need(backends[0], f"{name}'s {part} is absent; {_part_class(type(processor), part)} needs "
                                         f"{', '.join(backends)}: {_first_line(error)}")
    return None


def processor_parts(cls: Any) -> list[str]:
    """Sub-processor names of a processor class (`attributes` in 4.x, from `__init__` in 5.x)."""
    getter = getattr(cls, "get_attributes", None)
    return list(getter()) if getter else list(getattr(cls, "attributes", ()))


def _part_class(cls: Any, part: str) -> str:
    """The transformers class a processor builds a part with: its `<part>_class` (4.x), else the
    part's Auto class (`video_processor` -> AutoVideoProcessor)."""
    named = getattr(cls, f"{part}_class", None)
    return named if isinstance(named, str) else "Auto" + "".join(word.title() for word in part.split("_"))


def part_backends(cls: Any, part: str) -> list[str]:
    """Backends this environment lacks that the class of `part` needs: the part's class is then one of
    transformers' placeholders (DummyObject), which records them."""
    import transformers

    try:
        found = getattr(transformers, _part_class(cls, part), None)
    except Exception:
        return []
    if type(found).__name__ != "DummyObject":
        return []
    return [b for b in getattr(found, "_backends", ()) if isinstance(b, str) and absent(b)]


def missing_parts(cls: Any) -> dict[str, list[str]]:
    """The parts of processor class `cls` that this environment cannot build, with the backends they need."""
    found = {part: part_backends(cls, part) for part in processor_parts(cls)}
    return {part: backends for part, backends in found.items() if backends}


def _own_classes(processor: Any) -> list[Any]:
    """The processor's transformers classes (a subclass made to leave a part out keeps the part listed)."""
    return [c for c in type(processor).__mro__ if c.__module__.startswith("transformers.models.")]


def _class_name(processor: Any) -> str:
    classes = _own_classes(processor)
    return classes[-1].__name__ if classes else type(processor).__name__


def absent_parts(processor: Any) -> dict[str, list[str]]:
    """Parts the processor lacks (None or not set) whose class needs a backend this environment lacks."""
    found: dict[str, list[str]] = {}
    for cls in _own_classes(processor) or [type(processor)]:
        for part, backends in missing_parts(cls).items():
            if getattr(processor, part, None) is None:
                found.setdefault(part, backends)
    return found


def processor_need(cls: Any, error: BaseException) -> Need | None:
    """Why building or reading a processor of class `cls` failed, when it is a package: the failure
    names a part whose class needs a backend this environment lacks, or stems from a package itself."""
    need = needed_package(error)
    if need is not None:
        return need
    text = " ".join(str(e) for e in _chain(error))
    for part, backends in missing_parts(cls).items():
        if part in text:
            return Need(backends[0], f"{cls.__name__} requires a {part.replace('_', ' ')}; {_part_class(cls, part)} "
                                     f"needs {', '.join(backends)}: {_first_line(error)}")
    return None
