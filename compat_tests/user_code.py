"""The user's own strategies and probes (`{name, callable}` in matrix.yaml), run like built-in ones.

The callable is imported in the release's environment when its first cell runs: a module that does
not import there is an `error` for those cells naming the module, never a crash of the run. Every
line of such a cell records the callable's import path and the version of the package it came from.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from compat_matrix.spec.cells import Cell
from compat_matrix.spec.schema import Matrix, ModelEntry, UserCallable
from compat_matrix.spec.user import ProbeInput, ProbeResult
from compat_tests.outcomes import HarnessError
from compat_tests.probes.base import ProbeContext, ProbeOutcome
from loader.result import Attempt, LoadResult


@functools.cache
def _import(reference: str) -> Callable[..., Any]:
    """The function `package.module:attr.path` names; `HarnessError` saying which part is missing."""
    module_name, _, attributes = reference.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module itself raised while importing
        raise HarnessError(f"cannot import {module_name} (for {reference}): {type(exc).__name__}: {exc}; install its "
                           "package into every release environment with matrix.yaml's `install:` list") from None
    for attribute in attributes.split("."):
        if not hasattr(target, attribute):
            raise HarnessError(f"{reference}: {getattr(target, '__name__', target)} has no attribute {attribute!r}")
        target = getattr(target, attribute)
    if not callable(target):
        raise HarnessError(f"{reference} is a {type(target).__name__}, not a function")
    return target  # type: ignore[no-any-return]


@functools.cache
def provenance(reference: str) -> dict[str, str | None]:
    """The import path, and the installed distribution (name, version) its top-level package comes from."""
    top = reference.partition(":")[0].split(".")[0]
    names = metadata.packages_distributions().get(top, [])
    package = names[0] if names else None
    version = metadata.version(package) if package else None
    return {"callable": reference, "package": package, "version": version}


def callables_of(matrix: Matrix, cell: Cell) -> dict[str, dict[str, str | None]]:
    """`{"strategy": {...}, "probe": {...}}` for the cell's user callables (empty for built-ins)."""
    found = {"strategy": matrix.user_strategies.get(cell.strategy), "probe": matrix.user_probes.get(cell.probe)}
    return {role: provenance(ref.callable) for role, ref in found.items() if ref is not None}


def named_path(checkpoint: Path, entry: ModelEntry) -> Path:
    """A link to a tiny checkpoint whose path ends in the hub id (`.../Qwen/Qwen2.5-VL-3B-Instruct`),
    as a local copy of the hub repository would be: trainers pick a class from that id. One link per
    checkpoint folder (`tiny/<release that built it>/<key-hash>`), so cross-release cells never share one."""
    if entry.source != "tiny":
        return checkpoint  # hub snapshots already sit under models--<org>--<name>; local paths are the user's
    link = checkpoint.parent.parent.parent / "named" / checkpoint.parent.name / checkpoint.name / entry.hub_id
    if link.is_symlink() and link.resolve() == checkpoint.resolve():
        return link
    link.parent.mkdir(parents=True, exist_ok=True)
    staged = link.with_name(f".{link.name}.{os.getpid()}")
    staged.unlink(missing_ok=True)
    staged.symlink_to(checkpoint.resolve(), target_is_directory=True)
    os.replace(staged, link)  # atomic: two workers making the same link both end with a good one
    return link


@dataclass(frozen=True)
class CallableStrategy:
    """`callable(path, **load_kwargs)` -> a model or a `LoadResult`."""

    ref: UserCallable

    @property
    def name(self) -> str:
        return self.ref.name

    def load(self, path: str, **kwargs: Any) -> LoadResult:
        function = _import(self.ref.callable)
        returned = function(path, **kwargs)
        if isinstance(returned, LoadResult):
            return returned
        if not hasattr(returned, "parameters"):
            raise TypeError(f"{self.ref.callable} returned {type(returned).__name__}; return the loaded model "
                            "(a torch.nn.Module) or a loader.LoadResult")
        route = f"callable:{self.ref.callable}"
        return LoadResult(model=returned, strategy=self.name, path=route, attempts=[Attempt(route)])


def _plain(details: dict[str, Any]) -> dict[str, Any]:
    """JSON values only (they cross xdist workers): anything else becomes its string."""
    return json.loads(json.dumps(details, default=str))


def _on(device: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in inputs.items()}


@dataclass(frozen=True)
class CallableProbe:
    """`callable(ProbeInput)` -> `ProbeResult` or bool; an exception is a `fail` (see execute.run_cell)."""

    ref: UserCallable

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def mutates_model(self) -> bool:
        return self.ref.mutates_model

    def run(self, ctx: ProbeContext) -> ProbeOutcome:
        import transformers

        function = _import(self.ref.callable)
        image = ctx.modality == "image-text"
        given = ProbeInput(
            model=ctx.model, tokenizer=ctx.inputs.tokenizer, processor=ctx.inputs.processor,
            inputs=_on(ctx.device, ctx.inputs.text()), image_inputs=_on(ctx.device, ctx.inputs.image_text()) if image else None,
            device=ctx.device, dtype=ctx.dtype, settings=ctx.settings, model_key=ctx.entry.key, hub_id=ctx.entry.hub_id,
            checkpoint=str(ctx.checkpoint.path), strategy=ctx.loaded.strategy,
            load_kwargs=dict(ctx.load_kwargs), transformers_version=transformers.__version__,
        )
        returned = function(given)
        if isinstance(returned, bool):
            return ProbeOutcome("pass") if returned else ProbeOutcome("fail", f"{self.ref.callable} returned False",
                                                                      "CheckFailed")
        if isinstance(returned, ProbeResult):
            status = "pass" if returned.passed else "fail"
            return ProbeOutcome(status, returned.message, None if returned.passed else "CheckFailed",
                                _plain(returned.details))
        raise HarnessError(f"{self.ref.callable} returned {type(returned).__name__}; return a bool or a "
                           "compat_matrix.spec.user.ProbeResult")
