"""`trl_grpo` probe: one real step of TRL's GRPOTrainer on the model the strategy loaded.

Our `grpo_step` is a clean re-implementation; this one is the trainer people actually run (VLM-R1's
trainer is a fork of it), at the TRL release the environment's installer chose for this transformers
release. A tiny dataset of P prompts, G completions each, the rule-based reward of `settings.grpo`
on the completions' token ids, one optimizer step. Passes when TRL logs a finite loss and a finite,
non-zero gradient norm and the LM head and last decoder layer moved; the TRL version, the step's
logged metrics and its times are in the details.

Image-text models: TRL builds their processors' inputs with torchvision, whose PyPI wheels need a
CUDA torch; where torchvision is missing the cell is `skipped` with that reason, never faked.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tempfile
import time
from typing import Any, Sequence

from compat_tests.outcomes import NeedsPackage
from compat_tests.probes.base import ProbeContext, ProbeOutcome
from compat_tests.probes.generate import Checks, plain
from compat_tests.probes.grpo_step import max_change, parameter_groups
from compat_tests.rewards import get_reward
from compat_tests.training import require

TORCHVISION_MISSING = ("TRL's GRPOTrainer prepares image-text inputs with torchvision (PyPI's torchvision wheels "
                       "need a CUDA torch; COMPAT_MATRIX_TORCH_INDEX, the CPU or CUDA torch index, installs the one "
                       "matching this torch)")


@dataclasses.dataclass(frozen=True)
class MicroBatching:
    """Rows per training micro-batch and accumulation steps TRL gets, and why when not the configured size."""

    rows: int
    steps: int
    note: str = ""


def micro_batching(ctx: ProbeContext, options: set[str]) -> MicroBatching:
    """The training micro-batch of `settings.grpo` where this TRL release can generate once for several
    micro-batches (`steps_per_generation`, TRL 0.18+) and the generation batch splits into whole ones."""
    grpo = ctx.settings.grpo
    total, size = grpo.group_size * grpo.prompts, grpo.micro_batch_sizes[0]
    if size >= total:
        return MicroBatching(total, 1)
    if "steps_per_generation" not in options:
        return MicroBatching(total, 1, f"this TRL release generates per micro-batch (no steps_per_generation): all {total} "
                                       f"completions train in one micro-batch instead of micro-batches of {size}")
    if total % size:
        return MicroBatching(total, 1, f"{total} completions do not split into micro-batches of {size}: "
                                       "they train in one micro-batch")
    return MicroBatching(size, total // size)


def grpo_config(ctx: ProbeContext, trl: Any, output_dir: str) -> tuple[Any, list[str], MicroBatching]:
    """A GRPOConfig for one step of P prompts x G completions, the options this TRL release lacks
    (TRL renames options between releases; the ones it does not know are listed in the details), and
    the micro-batching it trains with."""
    grpo, settings = ctx.settings.grpo, ctx.settings.trl
    known = {field.name for field in dataclasses.fields(trl.GRPOConfig)}
    batching = micro_batching(ctx, known)
    wanted: dict[str, Any] = {
        "output_dir": output_dir,
        "num_generations": grpo.group_size,
        "per_device_train_batch_size": batching.rows,
        "gradient_accumulation_steps": batching.steps,
        "max_completion_length": grpo.max_new_tokens,
        "max_prompt_length": settings.max_prompt_length,
        "max_steps": 1,
        "learning_rate": grpo.learning_rate,
        "beta": grpo.beta,
        "epsilon": grpo.epsilon_low,
        "epsilon_high": grpo.epsilon_high,
        "temperature": 1.0,
        "gradient_checkpointing": settings.gradient_checkpointing,
        "seed": grpo.seed,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "use_cpu": ctx.device == "cpu",
        "bf16": str(ctx.dtype) == "torch.bfloat16",
        "fp16": str(ctx.dtype) == "torch.float16",
    }
    if grpo.use_reentrant is not None:  # else TRL's own choice (0.27+ sets False on 4.x)
        wanted["gradient_checkpointing_kwargs"] = {"use_reentrant": grpo.use_reentrant}
    config = trl.GRPOConfig(**{k: v for k, v in wanted.items() if k in known})
    return config, sorted(set(wanted) - known), batching


def reward_function(ctx: ProbeContext, tokenizer: Any) -> Any:
    """TRL's reward signature around our rule-based reward on token ids (decoded text of a random
    tiny model is noise; its ids differ between any two completions)."""
    reward = get_reward(ctx.settings.grpo.reward)

    def token_reward(completions: Sequence[Any], completion_ids: Sequence[Sequence[int]] | None = None, **_: Any) -> list[float]:
        if completion_ids is None:  # TRL releases before completion_ids was passed
            completion_ids = [tokenizer(str(text), add_special_tokens=False)["input_ids"] or [0] for text in completions]
        return [reward(list(ids) or [0]) for ids in completion_ids]

    return token_reward


def step_metrics(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    """The step's logged metrics (the first log entry with a loss), as plain JSON values."""
    for entry in log_history:
        if "loss" in entry:
            return {key: plain(float(value)) if isinstance(value, (int, float)) else str(value) for key, value in entry.items()}
    return {}


class TrlGrpoProbe:
    """One TRL GRPOTrainer step; see the module docstring."""

    name = "trl_grpo"
    mutates_model = True

    def run(self, ctx: ProbeContext) -> ProbeOutcome:
        start = time.perf_counter()
        if ctx.modality == "image-text":
            from transformers.utils import is_torchvision_available

            if not is_torchvision_available():
                raise NeedsPackage("torchvision", TORCHVISION_MISSING)
        trl = require("trl")
        datasets = require("datasets")
        imported = time.perf_counter()
        tokenizer = copy.deepcopy(ctx.inputs.tokenizer)
        if tokenizer.pad_token is None:  # as GRPO recipes set it
            tokenizer.pad_token = tokenizer.eos_token
        groups = parameter_groups(ctx.model)
        watched = [groups.head, *groups.layer]
        before = [p.detach().clone() for p in watched]
        dataset = datasets.Dataset.from_dict({"prompt": ctx.inputs.prompts(ctx.settings.grpo.prompts)})
        with tempfile.TemporaryDirectory() as output_dir:
            config, lacking, batching = grpo_config(ctx, trl, output_dir)
            trainer = trl.GRPOTrainer(model=ctx.model, reward_funcs=reward_function(ctx, tokenizer), args=config,
                                      train_dataset=dataset, processing_class=tokenizer)
            built = time.perf_counter()
            trainer.train()
        trained = time.perf_counter()
        metrics = step_metrics(trainer.state.log_history)
        changed = max_change(before, watched)
        loss, grad_norm = metrics.get("loss"), metrics.get("grad_norm")
        checks = Checks()
        checks.expect("finite_loss", isinstance(loss, float) and math.isfinite(loss), f"TRL logged loss {loss}")
        checks.expect("finite_grads", isinstance(grad_norm, float) and math.isfinite(grad_norm) and grad_norm > 0,
                      f"TRL logged grad_norm {grad_norm} (non-finite, zero or missing)")
        checks.expect("params_changed", changed > 0, f"LM head and {groups.last_layer} unchanged after TRL's step")
        return checks.outcome({
            "trl": trl.__version__,
            "metrics": metrics,
            "config_options_missing": lacking,
            "micro_batch_rows": batching.rows,
            "gradient_accumulation_steps": batching.steps,
            **({"micro_batch_note": batching.note} if batching.note else {}),
            "max_param_change": plain(changed),
            "import_s": imported - start,
            "init_s": built - imported,
            "step_s": trained - built,
            "time_s": trained - start,
        })


PROBE = TrlGrpoProbe()
"""The `trl_grpo` probe, for the registry."""
