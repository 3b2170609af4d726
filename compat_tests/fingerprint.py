"""Compact fingerprints of tensors and of every submodule's output, in execution order.

Two releases computing on the same weights are compared through these instead of full tensors:
a fingerprint is a handful of statistics plus a few values at fixed positions, so a record of a
whole forward pass stays a few kilobytes, and a change anywhere in a module's output moves at
least its statistics.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass, field
from typing import Any, Iterator

SAMPLES = 16
"""Values kept at evenly spaced positions of the flattened tensor."""

FULL_VALUES = 65536
"""Tensors up to this many elements are kept whole (a tiny model's logits, processor outputs,
position ids: at most a few hundred kilobytes), so two releases' outputs compare exactly; larger
ones (a hub model's logits) compare by their fingerprints."""

TENSORS_PER_OUTPUT = 2
"""A module returning several tensors (a rotary embedding's cos and sin) is fingerprinted on its
first ones; later ones are almost always derived from them or are caches."""


def _stats(tensor: Any) -> Any:
    """[mean, mean |x|, rms, max, min, *samples] as one float64 CPU tensor (one sync per call)."""
    import torch

    flat = tensor.detach().reshape(-1).to(torch.float64)
    if flat.numel() == 0:
        return torch.zeros(5, dtype=torch.float64)
    index = torch.linspace(0, flat.numel() - 1, min(SAMPLES, flat.numel())).long()
    summary = torch.stack([flat.mean(), flat.abs().mean(), flat.square().mean().sqrt(), flat.max(), flat.min()])
    return torch.cat([summary, flat[index]]).cpu()


def _short(value: float) -> float:
    """7 significant digits: float32 precision, half the characters of a float64 repr."""
    return float(f"{value:.7g}")


def tensor_fingerprint(tensor: Any) -> dict[str, Any]:
    """Shape, dtype and statistics of a tensor; its values too when it is small (integers as a
    list, floats as base64 of little-endian float32, which `reports.drift` reads without torch)."""
    import base64

    import torch

    fingerprint: dict[str, Any] = {"shape": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix("torch."),
                                   "stats": [_short(v) for v in _stats(tensor).tolist()]}
    if tensor.numel() <= FULL_VALUES:
        flat = tensor.detach().cpu().reshape(-1)
        if flat.is_floating_point():
            packed = array("f", flat.to(torch.float32).tolist())  # torch wheels do not promise numpy
            if sys.byteorder == "big":
                packed.byteswap()
            fingerprint["float32_b64"] = base64.b64encode(packed.tobytes()).decode("ascii")
        else:
            fingerprint["values"] = flat.tolist()
    return fingerprint


def _tensors(output: Any) -> Iterator[Any]:
    """The tensors of a module output (tensor, tuple/list, ModelOutput or dict), in order."""
    import torch

    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                yield item
    elif isinstance(output, dict):  # ModelOutput is an OrderedDict of the fields that are set
        for item in output.values():
            if isinstance(item, torch.Tensor):
                yield item


@dataclass
class ModuleTrace:
    """Forward hooks on every submodule of `model` (and the model itself, path ""): each call's
    output fingerprint, in the order the calls finish (a parent after its children).

    Use as a context manager around the forward passes to trace; the hooks are removed on exit."""

    model: Any
    calls: list[dict[str, Any]] = field(default_factory=list)
    _pending: list[tuple[str, str, list[Any], list[Any]]] = field(default_factory=list)
    _handles: list[Any] = field(default_factory=list)

    def __enter__(self) -> ModuleTrace:
        for path, module in self.model.named_modules():
            self._handles.append(module.register_forward_hook(self._hook(path, type(module).__name__)))
        return self

    def _hook(self, path: str, class_name: str) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            tensors = [t for _, t in zip(range(TENSORS_PER_OUTPUT), _tensors(output))]
            if tensors:  # stats stay tensors until the pass is over: one conversion per call, not per value
                self._pending.append((path, class_name, [(list(t.shape), t.dtype) for t in tensors],
                                      [_stats(t) for t in tensors]))
        return hook

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.flush()

    def flush(self) -> list[dict[str, Any]]:
        """Turn what the hooks kept into plain records (`calls`) and return them."""
        for path, class_name, shapes, stats in self._pending:
            self.calls.append({
                "path": path, "class": class_name,
                "shape": [shape for shape, _ in shapes],
                "dtype": [str(dtype).removeprefix("torch.") for _, dtype in shapes],
                "stats": [[_short(v) for v in s.tolist()] for s in stats],
            })
        self._pending.clear()
        return self.calls
