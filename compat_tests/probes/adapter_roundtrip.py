"""`adapter_roundtrip`: the LoRA adapter the checkpoint's writer saved, read onto the same base by this release.

Writing, once, in the release that wrote the checkpoint (`compat_tests.adapter_files` keeps it):
- the profile's LoRA gets lora_B drawn from N(0, INIT_STD), standing for a trained adapter: one
  GRPO step from lora_B = 0 moves a tiny model's logits by ~1% (1.3% measured on Qwen2-VL), under
  bf16's 10% reference tolerance, so an adapter dropped on reading would pass unseen. The draw is
  doubled until the adapter moves the logits by EFFECT_MARGIN tolerances (Qwen2-VL's vision LoRA:
  10% on image logits at INIT_STD);
- one GRPO step (`grpo_step.take_step`) trains it, and peft's `save_pretrained` saves it, as
  `trainer.save_model` does;
- the writer records its float32 logits on the fixed inputs with and without the adapter.
Reading, in every release: the base loaded as the cell loads it, without the profile's adapter, then
`PeftModel.from_pretrained`. Checks, each a `fail` named after it:
- `adapter_keys`: every saved tensor is in the loaded model, found under peft's name, else by value, else
  by its values inside a tensor the reader merged it into (peft's own load report is not trusted);
- `adapter_logits`: with the adapter, the logits equal the writer's within the dtype's reference
  tolerance. Said as `ignored` when the adapter changes nothing here, as drift when the base's
  own logits moved on a clean load (error type `Drift` when that is all), as the reading when the
  base's load was not clean (`load.load_problems`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from compat_matrix.spec.schema import AdapterSpec, GrpoSettings, ModelEntry
from compat_tests.adapter_files import (REFERENCE_JSON, REFERENCE_LOGITS, SAVED, SavedAdapter, adapter_digest,
                                        adapter_folder, base_identity, leave_note, not_saved, open_saved, write_once,
                                        writer_of)
from compat_tests.outcomes import CellUnsupported, CheckFailed, HarnessError
from compat_tests.probes import grpo_step, lora_step
from compat_tests.probes.base import ProbeContext, ProbeOutcome
from compat_tests.probes.compare import DRIFT
from compat_tests.probes.generate import Checks
from compat_tests.probes.load import load_problems
from compat_tests.probes.tolerance import differences, tolerance, within_reference_tolerance
from compat_tests.tiny.checkpoint import INIT_STD
from compat_tests.training import require

ADAPTER_SEED = 0
"""Seed of the lora_B draw."""

EFFECT_MARGIN = 3.0
"""The writer's adapter must move its logits by this many times the reference tolerance of its
dtype, on some input, so that an adapter ignored on reading is told from one applied."""

MAX_DOUBLINGS = 6
"""Times the lora_B draw may be doubled to reach EFFECT_MARGIN."""

SHOWN = 8
"""Key names in a failure message (the count is always given)."""


def adapter_inputs(ctx: ProbeContext) -> dict[str, dict[str, Any]]:
    """The fixed inputs the logits are compared on, by kind: text, and image+text for image-text models
    (a vision adapter changes only the second)."""
    kinds = {"text": ctx.inputs.text()}
    if ctx.entry.modality == "image-text":
        kinds["image"] = ctx.inputs.image_text()
    return kinds


def _logits(model: Any, batch: dict[str, Any], device: str) -> torch.Tensor:
    moved = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
    with torch.no_grad():
        return model(**moved).logits.detach().float().cpu()


def with_and_without(model: Any, batches: dict[str, dict[str, Any]], device: str) -> dict[str, torch.Tensor]:
    """`adapted_<kind>` and `base_<kind>` logits of a peft model (the base through `disable_adapter()`)."""
    out = {f"adapted_{kind}": _logits(model, batch, device) for kind, batch in batches.items()}
    with model.disable_adapter():
        out.update({f"base_{kind}": _logits(model, batch, device) for kind, batch in batches.items()})
    return out


def effect(logits: dict[str, torch.Tensor]) -> dict[str, float]:
    """How far the adapter moves the logits, relative, by input kind."""
    kinds = [name.removeprefix("adapted_") for name in logits if name.startswith("adapted_")]
    return {kind: differences(logits[f"adapted_{kind}"], logits[f"base_{kind}"])[1] for kind in kinds}


def draw_lora_b(model: Any, batches: dict[str, dict[str, Any]], device: str, needed: float) -> float:
    """lora_B from N(0, INIT_STD), seeded, in name order, doubled until the adapter moves the logits by
    `needed` on some input (at most MAX_DOUBLINGS times); the scale it ends at."""
    lora_b = [p for name, p in sorted(model.named_parameters()) if ".lora_B." in name or ".lora_embedding_B." in name]
    generator = torch.Generator().manual_seed(ADAPTER_SEED)
    drawn = [torch.randn(p.shape, generator=generator) * INIT_STD for p in lora_b]
    scale = 1.0
    while True:
        with torch.no_grad():
            for parameter, values in zip(lora_b, drawn):
                parameter.copy_((values * scale).to(device=parameter.device, dtype=parameter.dtype))
        if max(effect(with_and_without(model, batches, device)).values()) >= needed or scale >= 2 ** MAX_DOUBLINGS:
            return scale
        scale *= 2


def write_adapter(ctx: ProbeContext, into: Path) -> None:
    """The module docstring's writing, on the cell's freshly adapted model, into the empty folder `into`."""
    import peft
    import transformers
    from safetensors import safe_open
    from safetensors.torch import save_file

    model = ctx.model
    if not lora_step.is_adapted(model):
        raise HarnessError(f"the {ctx.profile!r} profile's model carries no peft adapter to save")
    batches = adapter_inputs(ctx)
    needed = EFFECT_MARGIN * tolerance(ctx.dtype, 1.0, "reference")
    scale = draw_lora_b(model, batches, ctx.device, needed)
    step = grpo_step.take_step(ctx)
    if step.broke is not None:
        raise CheckFailed(f"adapter_write: the GRPO step broke, so this release saves no adapter: {step.broke}")
    model.eval()
    model.save_pretrained(into / SAVED)
    logits = with_and_without(model.float(), batches, ctx.device)
    effects = effect(logits)
    if max(effects.values()) < needed:
        raise HarnessError(f"the adapter moves the writer's logits by {effects} (relative), under {needed:.3g}: too "
                           "little to tell an adapter applied on reading from one ignored")
    save_file({name: t.contiguous() for name, t in logits.items()}, str(into / REFERENCE_LOGITS))
    with safe_open(str(into / SAVED / "adapter_model.safetensors"), framework="pt") as saved:
        tensors = {name: list(saved.get_slice(name).get_shape()) for name in sorted(saved.keys())}
    reference = {
        "transformers_version": transformers.__version__, "peft_version": peft.__version__,
        "torch_version": torch.__version__, "dtype": str(ctx.dtype).removeprefix("torch."),
        "adapter": getattr(ctx.loaded, "adapter", {}), "saved_tensors": tensors, "effect": effects, "lora_b_scale": scale,
        "input_ids": {kind: batch["input_ids"][0].tolist() for kind, batch in batches.items()},
        "step": {"loss": step.loss, "adapter_max_change": step.adapter.adapter_change if step.adapter else None},
    }
    (into / REFERENCE_JSON).write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")


def memory_name(saved_key: str, adapter_name: str = "default") -> str:
    """peft's in-memory name of a saved adapter tensor: the adapter's name after the `lora_*` part
    (`...q_proj.lora_A.weight` -> `...q_proj.lora_A.default.weight`)."""
    parts = saved_key.split(".")
    for index in range(len(parts) - 1, -1, -1):
        if parts[index].startswith("lora_"):
            return ".".join([*parts[: index + 1], adapter_name, *parts[index + 1:]])
    return saved_key


def _is_adapter_tensor(name: str) -> bool:
    return any(part.startswith("lora_") for part in name.split("."))


@dataclass
class KeyAccount:
    """Where each saved adapter tensor is in the loaded model."""

    saved: int
    not_loaded: list[str] = field(default_factory=list)
    """Saved tensors whose values no adapter tensor of the loaded model holds."""
    renamed: dict[str, str] = field(default_factory=dict)
    """Saved key -> the loaded tensor holding its values under another name than peft's rule gives."""
    converted: dict[str, str] = field(default_factory=dict)
    """Saved key -> the loaded tensor its values went into, merged with others' (5.x reading a 4.x adapter:
    per-expert LoRA concatenated into the fused experts' LoRA)."""
    not_from_file: list[str] = field(default_factory=list)
    """Adapter tensors of the loaded model that no saved tensor filled (left as initialised)."""


def _same(held: torch.Tensor, saved: torch.Tensor) -> bool:
    return held.shape == saved.shape and torch.equal(held.detach().cpu(), saved.to(held.dtype))


def _holds(held: torch.Tensor, saved: torch.Tensor) -> bool:
    """Every non-zero value of `saved` is somewhere in `held` (a trained adapter's values are distinct floats,
    so a conversion that copies them into a larger tensor keeps them; an initialised tensor does not hold them)."""
    values = saved.to(held.dtype).flatten()
    values = values[values != 0]
    return values.numel() > 0 and held.numel() > saved.numel() and bool(torch.isin(values, held.detach().cpu().flatten()).all())


def account(saved: dict[str, torch.Tensor], model: Any) -> KeyAccount:
    """Find every saved tensor in `model`'s state: by peft's name first, else by value, else by its values
    inside a larger tensor no saved tensor filled (a conversion's merge)."""
    held = {name: t for name, t in model.state_dict().items() if _is_adapter_tensor(name)}
    result = KeyAccount(saved=len(saved))
    claimed: set[str] = set()
    unnamed = []
    for key, tensor in saved.items():
        name = memory_name(key)
        if name in held and _same(held[name], tensor):
            claimed.add(name)
        else:
            unnamed.append(key)
    for key in unnamed:
        found = next((name for name, t in held.items() if name not in claimed and _same(t, saved[key])), None)
        if found is None:
            result.not_loaded.append(key)
        else:
            claimed.add(found)
            result.renamed[key] = found
    for key in list(result.not_loaded):
        merged = next((name for name, t in held.items() if name not in claimed and _holds(t, saved[key])), None)
        if merged is not None:
            result.not_loaded.remove(key)
            result.converted[key] = merged
    targets = set(result.converted.values())
    result.not_from_file = [name for name in held if name not in claimed and name not in targets]
    return result


def _some(names: list[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def read_adapter(base: Any, saved: SavedAdapter) -> tuple[Any, KeyAccount]:
    """`base` with the saved adapter read onto it, and where each saved tensor went."""
    from peft import PeftModel
    from safetensors.torch import load_file

    try:
        model = PeftModel.from_pretrained(base, str(saved.saved))
    except Exception as exc:
        raise CheckFailed(f"adapter_load: PeftModel.from_pretrained raised {type(exc).__name__}: {exc}") from exc
    model.eval()
    return model, account(load_file(saved.saved / "adapter_model.safetensors"), model)


def judge(ctx: ProbeContext, writer: str, saved: SavedAdapter, model: Any, keys: KeyAccount,
          details: dict[str, Any]) -> ProbeOutcome:
    """The module docstring's checks on the read model (`writer`: the release that saved the adapter)."""
    checks = Checks()
    checks.expect("adapter_keys", not keys.not_loaded,
                  f"{len(keys.not_loaded)} of {keys.saved} adapter tensors transformers {writer} saved are not in the "
                  f"loaded model: {_some(keys.not_loaded)}")
    batches = adapter_inputs(ctx)
    recorded_ids = saved.reference.get("input_ids", {})
    changed_ids = [kind for kind, batch in batches.items() if recorded_ids.get(kind) not in (None, batch["input_ids"][0].tolist())]
    if changed_ids:
        raise CheckFailed(f"adapter_logits: the checkpoint's tokenizer or processor, read here, encodes the {changed_ids} "
                          f"inputs other than transformers {writer} did, so the logits cannot be compared")
    here, there = with_and_without(model, batches, ctx.device), saved.logits()
    unclean, drift_only = load_problems(ctx), True
    for kind in batches:
        _, moved = differences(here[f"adapted_{kind}"], there[f"adapted_{kind}"])
        _, effect_here = differences(here[f"adapted_{kind}"], here[f"base_{kind}"])
        _, base_moved = differences(here[f"base_{kind}"], there[f"base_{kind}"])
        effect_there = saved.reference["effect"][kind]
        details[f"{kind}_rel_diff"], details[f"{kind}_effect"], details[f"{kind}_base_rel_diff"] = moved, effect_here, base_moved
        if within_reference_tolerance(moved, ctx.dtype):
            continue
        said = f"{kind} logits with the adapter differ from transformers {writer}'s ({moved:.3g} relative)"
        if within_reference_tolerance(effect_here, ctx.dtype) and not within_reference_tolerance(effect_there, ctx.dtype):
            said += (f": the adapter is ignored at inference (the logits with and without it agree here, {effect_here:.3g}; "
                     f"it moved the writer's by {effect_there:.3g})")
            drift_only = False
        elif not within_reference_tolerance(base_moved, ctx.dtype) and unclean:
            said += (f"; the base's own logits moved too ({base_moved:.3g}) and its load was not clean: "
                     f"{'; '.join(unclean)}: the reading of the checkpoint, not drift")
            drift_only = False
        elif not within_reference_tolerance(base_moved, ctx.dtype):
            said += (f"; the base's own logits moved too ({base_moved:.3g}), on a clean load: drift of the checkpoint, "
                     "which the forward cells and `compat-matrix drift` localise")
        else:
            why = "the tensors not loaded" if keys.not_loaded else "the adapter is applied differently"
            said += f", though the base's agree ({base_moved:.3g}): {why}"
            drift_only = False
        checks.expect("adapter_logits", False, said)
    outcome = checks.outcome(details)
    if outcome.status == "fail" and drift_only and not keys.not_loaded:
        outcome.error_type = DRIFT
    return outcome


def folder_of(adapter: AdapterSpec, checkpoint: Any, profile: str, strategy: str, load_kwargs: dict[str, Any],
              grpo: GrpoSettings) -> Path:
    """Where the checkpoint's writer saves (and every reader finds) this profile's adapter."""
    digest = adapter_digest(adapter, load_kwargs, strategy, grpo, base_identity(checkpoint))
    return adapter_folder(checkpoint, profile, strategy, digest)


def note_load_failure(entry: ModelEntry, checkpoint: Any, cell_profile: str, strategy: str, load_kwargs: dict[str, Any],
                      grpo: GrpoSettings, outcome: ProbeOutcome) -> None:
    """The writer's cell failed before the probe (its load): the readers are told so, not that it never ran."""
    profile = entry.load_kwargs.get(cell_profile)
    if profile is not None and profile.adapter is not None:
        leave_note(folder_of(profile.adapter, checkpoint, cell_profile, strategy, load_kwargs, grpo), outcome.status,
                   outcome.message, outcome.error_type)


class AdapterRoundtripProbe:
    """See the module docstring."""

    name = "adapter_roundtrip"
    mutates_model = True

    def run(self, ctx: ProbeContext) -> ProbeOutcome:
        import transformers

        require("peft")
        import peft

        profile = ctx.entry.load_kwargs.get(ctx.profile)
        if profile is None or profile.adapter is None:
            raise CellUnsupported(f"load profile {ctx.profile!r} has no adapter to save and read")
        folder = folder_of(profile.adapter, ctx.checkpoint, ctx.profile, ctx.strategy, ctx.load_kwargs, ctx.settings.grpo)
        writer = writer_of(ctx.checkpoint)
        if writer == transformers.__version__:
            try:
                saved = write_once(folder, lambda into: write_adapter(ctx, into), peft.__version__)
            except grpo_step.NoLearningSignal as exc:
                return ProbeOutcome("error", str(exc), "NoLearningSignal", {"group_rewards": exc.rewards})
            assert ctx.reload_base is not None, "the harness gives adapter_roundtrip a base loader"
            base = ctx.reload_base()
        else:
            found = open_saved(folder, writer, ctx.profile)
            if found is None:
                raise not_saved(writer, ctx.profile, folder)
            saved, base = found, ctx.model
            assert not lora_step.is_adapted(base), "the harness loads a reader's base without the profile's adapter"
        reference = saved.reference
        details: dict[str, Any] = {
            "adapter_written_by": writer, "adapter_peft": reference.get("peft_version"), "adapter_folder": str(folder),
            "saved_tensors": len(reference.get("saved_tensors", {})), "writer_effect": reference.get("effect"),
            "writer_adapter": reference.get("adapter"),
        }
        model, keys = read_adapter(base, saved)
        details.update(not_loaded=keys.not_loaded[:SHOWN], not_loaded_count=len(keys.not_loaded),
                       renamed_count=len(keys.renamed), renamed=dict(list(keys.renamed.items())[:2]),
                       converted_count=len(keys.converted), converted=dict(list(keys.converted.items())[:2]),
                       not_from_file_count=len(keys.not_from_file), not_from_file=keys.not_from_file[:SHOWN])
        return judge(ctx, writer, saved, model, keys, details)


PROBE = AdapterRoundtripProbe()
