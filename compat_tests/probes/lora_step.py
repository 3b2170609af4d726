"""What a GRPO step on a LoRA-adapted model must show: the adapter trains, nothing else does.

Checks (each a `fail` named after it): `grad_adapter`, every adapter module whose output the loss
uses receives a gradient (lora_B's is non-zero; lora_A's is zero on a first step by design, B starting
at zero, but must exist); `adapter_changed`, the optimizer step moved the adapter; `base_frozen`, every
other weight requires no gradient and is bitwise unchanged. A module without a gradient is told apart
from one the forward does not use (e.g. LLaVA's last vision layer under `vision_feature_layer: -2`,
SigLIP's pooling head in Gemma3 and PaliGemma) by adding noise to its output: if the log-probs move,
the gradient was cut on the way (a detach, a no_grad, a checkpointed block without input gradients)
and `grad_adapter` fails; if not, it is listed as unused. Noise, not a constant: a constant shift
vanishes in the next LayerNorm and in the softmax over keys, passing a used module off as unused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from compat_tests.lora import PEFT_PREFIX

NOISE_SEED = 0
"""Seed of the standard-normal noise added to a module's output to see whether the loss uses it
(tiny models' activations are O(1))."""

SHOWN = 6
"""Module paths named in a failure message (the count is always given)."""

Forward = Callable[[], torch.Tensor]
"""One no-grad forward of a fixed micro-batch, returning its completion log-probs."""


def is_adapted(model: Any) -> bool:
    """True for a peft-wrapped model (what `compat_tests.lora.apply_adapter` returns)."""
    return hasattr(model, "peft_config") and hasattr(model, "base_model")


def _module_of(name: str) -> str | None:
    """`...q_proj.lora_A.default.weight` -> `...q_proj`; None for a base weight."""
    head, sep, _ = name.partition(".lora_")
    return head.removeprefix(PEFT_PREFIX) if sep else None


@dataclass
class AdapterStep:
    """What the step did to the adapter and to the base weights."""

    modules: int
    no_gradient: list[str] = field(default_factory=list)
    """Adapter modules whose output the loss uses but whose weights got no gradient."""
    unused: list[str] = field(default_factory=list)
    """Adapter modules without a gradient whose output the loss does not use either."""
    adapter_change: float = 0.0
    base_changed: list[str] = field(default_factory=list)
    base_trainable: list[str] = field(default_factory=list)
    grad_norm: float = 0.0


class AdapterWatch:
    """Snapshots before the step; `finish` measures after the optimizer step, before grads are cleared."""

    def __init__(self, model: Any) -> None:
        named = list(model.named_parameters())
        self.adapter = {name: p for name, p in named if _module_of(name) is not None}
        self.base = {name: p for name, p in named if _module_of(name) is None}
        self.adapter_before = {name: p.detach().clone() for name, p in self.adapter.items()}
        self.base_before = {name: p.detach().clone() for name, p in self.base.items()}

    def finish(self, model: Any, forward: Forward) -> AdapterStep:
        by_module: dict[str, list[torch.nn.Parameter]] = {}
        for name, p in self.adapter.items():
            by_module.setdefault(str(_module_of(name)), []).append(p)
        silent = [m for m, params in by_module.items() if not _reached(params)]
        used = _used(model, silent, forward) if silent else set()
        grads = [p.grad.detach().float().norm() for p in self.adapter.values() if p.grad is not None]
        return AdapterStep(
            modules=len(by_module),
            no_gradient=[m for m in silent if m in used],
            unused=[m for m in silent if m not in used],
            adapter_change=max((float((p.detach() - self.adapter_before[n]).abs().max()) for n, p in self.adapter.items()), default=0.0),
            base_changed=[n.removeprefix(PEFT_PREFIX) for n, p in self.base.items() if not torch.equal(p.detach(), self.base_before[n])],
            base_trainable=[n.removeprefix(PEFT_PREFIX) for n, p in self.base.items() if p.requires_grad],
            grad_norm=float(torch.stack(grads).norm()) if grads else 0.0,
        )


def _reached(params: list[torch.nn.Parameter]) -> bool:
    """Every weight has a gradient and some of it is non-zero (lora_B's, when the output is used)."""
    return all(p.grad is not None for p in params) and any(bool(p.grad.any()) for p in params if p.grad is not None)


def _used(model: Any, modules: list[str], forward: Forward) -> set[str]:
    """The modules among `modules` whose output changes the log-probs under noise (one at a time
    once noise on all of them together showed that some do)."""
    with torch.no_grad():
        plain = forward()
        if _same(model, modules, forward, plain):
            return set()
        return {m for m in modules if not _same(model, [m], forward, plain)}


def _same(model: Any, modules: list[str], forward: Forward, plain: torch.Tensor) -> bool:
    with _noisy(model, modules):
        return bool(torch.equal(forward(), plain))


def _add_noise(_module: Any, _inputs: Any, out: torch.Tensor) -> torch.Tensor:
    noise = torch.randn(out.shape, generator=torch.Generator().manual_seed(NOISE_SEED))
    return out + noise.to(device=out.device, dtype=out.dtype)


@contextmanager
def _noisy(model: Any, modules: list[str]) -> Iterator[None]:
    wanted = {PEFT_PREFIX + m for m in modules}
    handles = [module.register_forward_hook(_add_noise) for name, module in model.named_modules() if name in wanted]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def watch(model: Any, checkpointing: bool) -> AdapterWatch | None:
    """For an adapted model: as TRL's GRPOTrainer does with peft and gradient checkpointing, make the
    input embeddings require grad (else checkpointed blocks see no input needing a gradient and the
    adapter inside them gets none); then snapshot. None for a model without an adapter."""
    if not is_adapted(model):
        return None
    if checkpointing:
        model.enable_input_require_grads()
    return AdapterWatch(model)


def _some(paths: list[str]) -> str:
    more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
    return ", ".join(paths[:SHOWN]) + more


def check_adapter(step: AdapterStep, expect: Callable[[str, bool, str], None]) -> None:
    """The module docstring's checks, through a `Checks.expect`."""
    expect("grad_adapter", not step.no_gradient,
           f"{len(step.no_gradient)} of {step.modules} adapter modules got no gradient although the loss uses their "
           f"output (the gradient is cut on the way): {_some(step.no_gradient)}")
    expect("adapter_changed", step.adapter_change > 0, f"no adapter weight moved after the optimizer step ({step.modules} modules)")
    expect("base_frozen", not step.base_trainable,
           f"{len(step.base_trainable)} base weights require grad beside the adapter: {_some(step.base_trainable)}")
    expect("base_frozen", not step.base_changed,
           f"{len(step.base_changed)} base weights changed in a LoRA step: {_some(step.base_changed)}")


def adapter_details(step: AdapterStep) -> dict[str, Any]:
    return {
        "adapter_modules": step.modules,
        "adapter_grad_norm": step.grad_norm,
        "adapter_max_change": step.adapter_change,
        "adapter_no_gradient": step.no_gradient,
        "adapter_unused": step.unused,
        "base_changed": len(step.base_changed),
    }

