"""Run one cell and turn whatever happens into one plain result dict (never raises).

A loaded model is shared by the probes of its (model, profile, strategy) group and dropped when
the group changes, so memory stays flat over a long run and each model loads once per group.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
import warnings
import time
from dataclasses import dataclass, field
from typing import Any

from compat_matrix.spec.cells import Cell
from compat_matrix.spec.records import WRITER, cell_record, now
from compat_matrix.spec.schema import Matrix, ModelEntry, UserCallable
from compat_tests.deadline import CellTimeout, deadline
from compat_tests.environment import env_name, fingerprint, pick_device
from compat_tests.lora import AdaptedLoad, apply_adapter
from compat_tests.needs import needed_package
from compat_tests.outcomes import (CellFailed, CellSkipped, CellUnsupported, CheckFailed, HarnessError, NeedsPackage,
                                   WriterFailed)
from compat_tests.probes import PROBES, adapter_roundtrip
from compat_tests.probes.base import Probe, ProbeContext, ProbeOutcome
from compat_tests.probes.memory import peak_memory_mb, reset_peak_memory
from compat_tests.size_guard import check_size, estimated_parameters
from compat_tests.sources import require_model_type, resolve, saved_checkpoint
from compat_tests.user_code import CallableProbe, CallableStrategy, callables_of, named_path
from loader import STRATEGIES, LoadResult, NoArchitectureNamed, StrategyUnsupported
from loader.accounting import WeightAccount, account
from reports.status import ADAPTER_PROBES

MESSAGE_LIMIT = 4000
"""Characters of an error message kept in a result line."""


@dataclass
class LoadedGroup:
    """The model of one (model, profile, strategy) group, or why it could not be loaded."""

    cell_group: tuple[str, str, str, str | None]
    with_adapter: bool = True
    """The profile's adapter applied (not for a cell reading the adapter another release saved)."""
    result: LoadResult | None = None
    error: BaseException | None = None
    load_s: float = 0.0
    loaded_dtype: str | None = None
    weights: WeightAccount | None = None
    """Where each model tensor came from in the checkpoint, taken right after the load."""
    weights_note: str | None = None
    """Why `weights` is None (the checkpoint has no weight file to read)."""
    weights_s: float = 0.0


@dataclass(frozen=True)
class Prepared:
    """A model's checkpoint with its config and input builder, made once per process."""

    checkpoint: Any
    config: Any
    inputs: Any
    parameters_from_config: int | None = None
    """What the parsed config would build (meta device), for the size guard; computed once per model."""


def _prepare(entry: ModelEntry, saved_by: str | None) -> Prepared:
    """Checkpoint, config and input builder; for another release's checkpoint, unreadable is a `fail`."""
    checkpoint = saved_checkpoint(entry, saved_by) if saved_by else resolve(entry)
    if saved_by:
        require_model_type(entry)
    try:
        from transformers import AutoConfig

        from compat_tests.tiny.inputs import InputBuilder

        config = AutoConfig.from_pretrained(checkpoint.path, trust_remote_code=entry.trust_remote_code)
        return Prepared(checkpoint, config, InputBuilder(checkpoint.path, entry.modality), estimated_parameters(config))
    except Exception as exc:
        need = needed_package(exc)
        if need is not None:
            raise NeedsPackage(need.package, need.why) from exc
        what = f"{type(exc).__name__}: {exc}"
        if saved_by:
            raise CellFailed(f"cannot read the config or processor that transformers {saved_by} saved: {what}") from exc
        if isinstance(exc, ValueError) and "trust_remote_code=True" in str(exc):
            raise CellFailed(f"transformers refuses the checkpoint's remote code: {what}") from exc
        raise HarnessError(f"reading the checkpoint's config or processor failed: {what}") from exc


@dataclass
class CheckpointCache:
    """Prepared checkpoints by (model key, saved_by), or what preparing one raised the first time."""

    prepared: dict[tuple[str, str | None], Prepared | BaseException] = field(default_factory=dict)

    def prepare(self, entry: ModelEntry, saved_by: str | None = None) -> Prepared:
        """The prepared checkpoint, or the skip/unsupported/fail/error it raised the first time."""
        key = (entry.key, saved_by)
        if key not in self.prepared:
            try:
                self.prepared[key] = _prepare(entry, saved_by)
            except (CellSkipped, CellUnsupported, CellFailed, HarnessError) as exc:
                self.prepared[key] = exc
        found = self.prepared[key]
        if isinstance(found, BaseException):
            raise found
        return found


def load_kwargs_of(entry: ModelEntry, profile: str) -> dict[str, Any]:
    """The profile's `from_pretrained` keyword arguments, with the entry's `trust_remote_code`."""
    kwargs = entry.load_kwargs[profile].kwargs
    if entry.trust_remote_code:
        kwargs.setdefault("trust_remote_code", True)
    return kwargs


@dataclass
class ModelSlot:
    """The one loaded (model, profile, strategy) group of this process, on its device."""

    device: str
    dtype: Any
    group: LoadedGroup | None = None
    last_model: str | None = None
    """The model of the last loaded group: garbage is collected when the model changes."""
    user_strategies: dict[str, UserCallable] = field(default_factory=dict)
    """The matrix's strategies of the user's own code, by name."""

    def load(self, entry: ModelEntry, strategy: str, profile: str, path: str, with_adapter: bool = True) -> LoadResult:
        """Load with the strategy and the profile's keyword arguments, then (`with_adapter`) the profile's
        adapter, as a trainer would."""
        own = self.user_strategies.get(strategy)
        if own is not None:
            loaded = CallableStrategy(own).load(str(named_path(Path(path), entry)), **load_kwargs_of(entry, profile))
        else:
            loaded = STRATEGIES[strategy].load(path, **load_kwargs_of(entry, profile))
        adapter = entry.load_kwargs[profile].adapter
        return apply_adapter(loaded, adapter) if adapter is not None and with_adapter else loaded

    def place(self, model: Any, profile_kwargs: dict[str, Any]) -> Any:
        """Move to the device; cast to the compute dtype unless the profile fixed a dtype."""
        if "device_map" not in profile_kwargs:
            model.to(self.device)
        if "torch_dtype" not in profile_kwargs and "dtype" not in profile_kwargs:
            model.to(self.dtype)
        return model.eval()

    def loaded(self, cell: Cell, entry: ModelEntry, prepared: Prepared, with_adapter: bool = True) -> LoadedGroup:
        if self.group is not None and (self.group.cell_group, self.group.with_adapter) == (cell.group, with_adapter):
            return self.group
        # collect once per model, not per group (cheap since release() freezes what survived, see there)
        self.release(collect=self.last_model not in (None, cell.model))
        self.last_model = cell.model
        group = LoadedGroup(cell.group, with_adapter)
        start = time.perf_counter()
        try:
            reference = getattr(prepared.checkpoint, "reference", {}) or {}
            check_size(prepared.parameters_from_config, reference.get("param_count"), fingerprint(self.device)["transformers"])
            group.result = self.load(entry, cell.strategy, cell.profile, str(prepared.checkpoint.path), with_adapter)
            group.loaded_dtype = _param_dtype(group.result.model)
        except Exception as exc:
            group.error = exc
        group.load_s = time.perf_counter() - start
        if group.result is not None:
            _account_weights(group, Path(prepared.checkpoint.path), load_kwargs_of(entry, cell.profile))
            try:
                self.place(group.result.model, entry.load_kwargs[cell.profile].kwargs)
            except Exception as exc:
                group.error = exc
        self.group = group
        return group

    def release(self, collect: bool = True) -> None:
        """Drop the loaded model; with `collect`, also collect cycles and return cached CUDA memory.

        What survives a collection here (modules, per-process caches, prepared inputs) lives as long
        as the process, so it is frozen out of later collections: with torch and transformers
        imported a full collection scanned ~300k such objects and took ~0.25 s; after gc.freeze(),
        microseconds plus the garbage of one model."""
        self.group = None
        if not collect:
            return
        gc.collect()
        gc.freeze()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


@dataclass
class MatrixState:
    """What a worker process keeps between cells: the matrix, its checkpoints and the loaded model."""

    matrix: Matrix
    checkpoints: CheckpointCache = field(default_factory=CheckpointCache)
    slot: ModelSlot = field(init=False)

    def __post_init__(self) -> None:
        self.slot = ModelSlot(*pick_device(self.matrix.settings.device), user_strategies=self.matrix.user_strategies)
        share_cores()
        gc.freeze()  # the imports so far are for the whole process (see ModelSlot.release())

    @property
    def device(self) -> str:
        return self.slot.device

    def probe(self, name: str) -> Probe:
        """A built-in probe, or the user's own callable."""
        own = self.matrix.user_probes.get(name)
        return CallableProbe(own) if own is not None else PROBES[name]


def share_cores() -> None:
    """Give each xdist worker its share of the cores: two workers with two torch threads each
    on two cores ran GRPO steps 3-10x slower than with one thread each."""
    import torch

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def _account_weights(group: LoadedGroup, folder: Path, kwargs: dict[str, Any]) -> None:
    """The weight account of the group's model, taken once per load; a checkpoint without weight
    files has none (said in `weights_note`); the accounting's own failure is the harness's."""
    assert group.result is not None
    start = time.perf_counter()
    try:
        group.weights = account(group.result.model, folder, kwargs.get("key_mapping"))
    except FileNotFoundError as exc:
        group.weights_note = f"no weight account: {exc}"
    except Exception as exc:
        group.error = HarnessError(f"weight accounting failed on {folder}: {type(exc).__name__}: {exc}")
    group.weights_s = time.perf_counter() - start


def route_modality(matrix: Matrix, entry: ModelEntry, strategy: str, profile: str) -> str | None:
    """`text` when the profile, the user's strategy or the built-in strategy declares a text-only route."""
    builtin = STRATEGIES.get(strategy)
    return matrix.declared_modality(entry, strategy, profile) or getattr(builtin, "modality", None)


def _param_dtype(model: Any) -> str | None:
    for parameter in model.parameters():
        return str(parameter.dtype).removeprefix("torch.")
    return None


def base_record(state: MatrixState, cell: Cell) -> dict[str, Any]:
    """The fields every line has, before the probe runs."""
    record = cell_record(state.matrix, cell, env_name(), fingerprint(state.device))
    record["callables"] = callables_of(state.matrix, cell)
    return record


def _outcome(state: MatrixState, cell: Cell, record: dict[str, Any]) -> ProbeOutcome:
    entry = state.matrix.model(cell.model)
    try:
        prepared = state.checkpoints.prepare(entry, cell.saved_by)
    except (CellFailed, HarnessError) as exc:
        record["details"] = {"root": root_cause(exc)}
        raise
    checkpoint = prepared.checkpoint
    slot = state.slot
    # a reader takes the adapter from the folder another release saved (its adapter_config.json), as users do
    group = slot.loaded(cell, entry, prepared, with_adapter=not (cell.probe in ADAPTER_PROBES and cell.saved_by))
    if group.error is not None:
        if isinstance(group.error, (HarnessError, CellUnsupported)):  # the user's loader does not import here; no peft here
            raise group.error
        need = needed_package(group.error)
        if need is not None:
            raise NeedsPackage(need.package, need.why) from group.error
        failed = _load_failed(group.error, entry, cell)
        if cell.probe == adapter_roundtrip.PROBE.name and cell.saved_by is None:  # this release writes the adapter
            adapter_roundtrip.note_load_failure(entry, checkpoint, cell.profile, cell.strategy,
                                                load_kwargs_of(entry, cell.profile), state.matrix.settings.grpo, failed)
        return failed
    assert group.result is not None
    record.update(loaded_class=group.result.loaded_class, load_path=group.result.path, dtype=group.loaded_dtype)
    context = ProbeContext(
        entry=entry,
        checkpoint=checkpoint,
        loaded=group.result,
        inputs=prepared.inputs,
        settings=state.matrix.settings,
        device=state.device,
        dtype=next(group.result.model.parameters()).dtype,
        reload=lambda: slot.place(slot.load(entry, cell.strategy, cell.profile, str(checkpoint.path)).model,
                                  entry.load_kwargs[cell.profile].kwargs),
        checkpoint_config=prepared.config,
        load_kwargs=load_kwargs_of(entry, cell.profile),
        weights=group.weights,
        weights_note=group.weights_note,
        route_modality=route_modality(state.matrix, entry, cell.strategy, cell.profile),
        profile=cell.profile,
        strategy=cell.strategy,
        reload_base=lambda: slot.place(slot.load(entry, cell.strategy, cell.profile, str(checkpoint.path),
                                                 with_adapter=False).model, entry.load_kwargs[cell.profile].kwargs),
    )
    probe = state.probe(cell.probe)
    try:
        outcome = probe.run(context)
    except (CellSkipped, CellUnsupported, CellFailed, HarnessError, CheckFailed, CellTimeout):
        raise
    except Exception as exc:
        need = needed_package(exc, getattr(prepared.inputs, "processor", None))
        if need is not None:
            raise NeedsPackage(need.package, need.why) from exc
        raise
    finally:
        if probe.mutates_model:  # the next probe needs a clean model; collection waits for the next model
            slot.release(collect=False)
    if cell.probe == "load":
        outcome.details["load_s"] = group.load_s
        outcome.details["weights_s"] = round(group.weights_s, 4)
    if isinstance(group.result, AdaptedLoad):
        outcome.details["adapter"] = group.result.adapter
    return outcome


def _load_failed(error: BaseException, entry: ModelEntry, cell: Cell) -> ProbeOutcome:
    """The cell's outcome when its group's model did not load (CellUnsupported where the strategy cannot load it)."""
    prefix = "" if cell.probe == "load" else "not run, the load failed: "
    if isinstance(error, NoArchitectureNamed) and entry.recipe is not None:
        return ProbeOutcome("fail", prefix + _architecture_lost(error, entry, cell), "ArchitectureLost")
    if isinstance(error, StrategyUnsupported):
        raise CellUnsupported(str(error))
    details = {"attempts": [a.as_dict() for a in getattr(error, "attempts", [])]}
    return ProbeOutcome("fail", prefix + str(error), type(error).__name__, details)


def root_cause(error: BaseException) -> dict[str, str]:
    """What stopped every probe of a cell before its own work (building or reading the checkpoint):
    the error underneath the harness's wording, so a build error and another release's failure to
    read the same files are one cause."""
    root = error.__cause__ or error
    return {"stage": "checkpoint", "error_type": type(root).__name__, "message": str(root)[:MESSAGE_LIMIT]}


def _architecture_lost(error: BaseException, entry: ModelEntry, cell: Cell) -> str:
    """A tiny checkpoint always names its class; a config read without one is a break."""
    assert entry.recipe is not None
    built_by = f"transformers {cell.saved_by}" if cell.saved_by else "this release"
    return (f"{error}, though {built_by} saved this checkpoint as {entry.recipe.architecture}: loaders that "
            "take the class from config.architectures (VLM-R1's model_cls) cannot load it")


WARNINGS_KEPT = 5


def _distinct_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """The first few distinct warnings a cell raised: deprecations here are next release's breaks."""
    seen: dict[str, None] = {}
    for item in caught:
        seen.setdefault(f"{item.category.__name__}: {str(item.message).strip().splitlines()[0][:300]}", None)
    return list(seen)[:WARNINGS_KEPT]


def run_cell(state: MatrixState, cell: Cell) -> dict[str, Any]:
    """Run `cell`; every outcome, including exceptions, becomes the returned result line."""
    record = base_record(state, cell)
    start = time.perf_counter()
    reset_peak_memory(state.device)
    try:
        with warnings.catch_warnings(record=True) as caught, deadline(state.matrix.settings.cell_timeout_s):
            warnings.simplefilter("always")
            outcome = _outcome(state, cell, record)
        outcome.details["warnings"] = _distinct_warnings(caught)
        record.update(status=outcome.status, message=outcome.message, error_type=outcome.error_type,
                      details=outcome.details)
    except CellTimeout as exc:
        state.slot.release()  # the loaded model may be half-way through a probe
        record.update(status="error", error_type="CellTimeout", message=str(exc))
    except NeedsPackage as exc:
        record.update(status="skipped", message=str(exc), details={**record["details"], "needs": exc.package})
    except WriterFailed as exc:
        record.update(status="skipped", message=str(exc),
                      details={**record["details"], WRITER: {"status": exc.status, "error_type": exc.error_type}})
    except CellSkipped as exc:
        record.update(status="skipped", message=str(exc))
    except CellUnsupported as exc:
        record.update(status="unsupported", message=str(exc))
    except CellFailed as exc:
        record.update(status="fail", error_type="CellFailed", message=str(exc))
    except HarnessError as exc:
        record.update(status="error", error_type="HarnessError", message=str(exc))
    except Exception as exc:
        need = needed_package(exc)
        if need is not None:
            record.update(status="skipped", message=f"needs {need.package}: {need.why}", details={"needs": need.package})
        else:
            record.update(status="fail", error_type=type(exc).__name__, message=str(exc))
    record["message"] = record["message"][:MESSAGE_LIMIT]
    record["duration_s"] = round(time.perf_counter() - start, 4)
    record["peak_memory_mb"] = peak_memory_mb(state.device)
    record["timestamp"] = now()
    return record
