"""Compact fingerprints of tensors and of every submodule's output, in execution order.

Two releases computing on the same weights are compared through these instead of full tensors:
a fingerprint is a handful of statistics plus a few values at fixed positions, so a record of a
whole forward pass stays a few kilobytes, and a change anywhere in a module's output moves at
least its statistics.
"""

from __future__ import annotations

import math
import sys
from array import array
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Iterator
from weakref import WeakKeyDictionary

SAMPLES = 16
"""Values kept at evenly spaced positions of the flattened tensor."""

FULL_VALUES = 65536
"""Tensors up to this many elements are kept whole (a tiny model's logits, processor outputs,
position ids: at most a few hundred kilobytes), so two releases' outputs compare exactly; larger
ones (a hub model's logits) compare by their fingerprints."""

TENSORS_PER_OUTPUT = 2
"""A module returning several tensors (a rotary embedding's cos and sin) is fingerprinted on its
first ones; later ones are almost always derived from them or are caches."""


def _stats(raw: list[float], count: int) -> list[float]:
    """[mean, rms, *samples]: all on the scale of the values, so one relative tolerance (against
    the largest of them) fits every entry."""
    if not count:
        return raw
    return [raw[0] / count, math.sqrt(max(raw[1], 0.0) / count), *raw[2:]]


def _short(value: float) -> float:
    """7 significant digits: float32 precision, half the characters of a float64 repr."""
    return float(f"{value:.7g}")


def tensor_fingerprint(tensor: Any) -> dict[str, Any]:
    """Shape, dtype and statistics of a tensor; its values too when it is small (integers as a
    list, floats as base64 of little-endian float32, which `reports.drift` reads without torch)."""
    import base64

    import torch

    fingerprint: dict[str, Any] = {"shape": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix("torch."),
                                   "stats": [_short(v) for v in _batched_stats([tensor.detach().reshape(-1).float()])[0]]}
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


PENDING_ELEMENTS = 1 << 24
"""Output values kept (copied) before their statistics are computed in one batch: 64 MiB of
float32 at most, whatever the model's size."""


def _batched_stats(flats: list[Any]) -> list[list[float]]:
    """`_stats` of many flat float32 tensors with a handful of torch ops in all (per-call ops cost
    microseconds each, more than the arithmetic on a tiny model's activations)."""
    import torch

    lengths = [f.numel() for f in flats]
    values = torch.cat(flats)
    counts = torch.tensor(lengths)
    sums = torch.segment_reduce(values, "sum", lengths=counts).tolist()
    squares = torch.segment_reduce(values * values, "sum", lengths=counts).tolist()
    offsets = [0]
    for length in lengths[:-1]:
        offsets.append(offsets[-1] + length)
    positions = [range(start, start + length, max(1, length // SAMPLES))[:SAMPLES]
                 for start, length in zip(offsets, lengths)]
    samples = values[torch.tensor([p for group in positions for p in group], dtype=torch.long)].tolist()
    out, taken = [], 0
    for total, square, length, group in zip(sums, squares, lengths, positions):
        out.append(_stats([total, square, *samples[taken:taken + len(group)]], length))
        taken += len(group)
    return out


def _traced(module: Any, heads: tuple[Any, ...] = ()) -> bool:
    """False for a leaf module of torch itself (Linear, Conv, LayerNorm, Dropout, activations):
    torch is the same in every environment, so with the same weights and inputs it computes the
    same; a difference in what it is given shows in its parent's output, which is traced. Leaving
    these out (well over half the calls of a decoder) keeps them on torch's hook-free fast path.
    Embeddings and the `heads` (the output embeddings) stay traced: a release that loads, ties or
    re-initialises their weights differently diverges there first, and untraced the first
    difference would be named at the next layer, which did nothing wrong."""
    import torch

    if any(module is head for head in heads) or isinstance(module, torch.nn.Embedding):
        return True
    return not type(module).__module__.startswith("torch.") or next(module.children(), None) is not None


def _heads(model: Any) -> tuple[Any, ...]:
    """The output embeddings (lm_head), where the model says which module they are."""
    try:
        head = model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return ()
    return () if head is None else (head,)


_SELECTED: WeakKeyDictionary[Any, list[tuple[Any, str, str]]] = WeakKeyDictionary()
"""Per model, the (module, path, class name) of the modules traced: found once, not on every trace."""


def _selected(model: Any) -> list[tuple[Any, str, str]]:
    if model not in _SELECTED:
        heads = _heads(model)
        _SELECTED[model] = [(module, path, type(module).__name__) for path, module in model.named_modules()
                            if _traced(module, heads)]
    return _SELECTED[model]


@dataclass
class ModuleTrace:
    """Fingerprints of the output of every call of `model`'s submodules (and of the model itself,
    path ""), in the order the calls finish (a parent after its children); torch's own leaf modules
    other than embeddings and the output head are left out (`_traced`).

    Use as a context manager around the forward passes to trace. One forward hook per traced
    module (the others keep torch's fast path); it only copies the outputs (a model may change a
    returned tensor in place later); shapes, dtypes and statistics are worked out after the pass, in
    one batch (`flush`, `_batched_stats`)."""

    model: Any
    calls: list[dict[str, Any]] = field(default_factory=list)
    _pending: list[tuple[str, str, list[Any], list[Any], list[Any]]] = field(default_factory=list)
    _kept: int = 0
    _handles: list[Any] = field(default_factory=list)

    def __enter__(self) -> ModuleTrace:
        self._handles = [module.register_forward_hook(self._hook_for(path, name))
                         for module, path, name in _selected(self.model)]
        return self

    def _hook_for(self, path: str, class_name: str) -> Any:
        import torch

        pending, float32, tensor_type = self._pending, torch.float32, torch.Tensor

        def hook(module: Any, args: Any, output: Any) -> None:
            tensors = (output,) if isinstance(output, tensor_type) else islice(_tensors(output), TENSORS_PER_OUTPUT)
            shapes, dtypes, copies = [], [], []
            for tensor in tensors:
                count = tensor.numel()
                if count:
                    shapes.append(tensor.shape)
                    dtypes.append(tensor.dtype)
                    copies.append(tensor.reshape(-1).to(float32, copy=True))
                    self._kept += count
            if copies:
                pending.append((path, class_name, shapes, dtypes, copies))
                if self._kept > PENDING_ELEMENTS:
                    self.flush()

        return hook

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.flush()

    def flush(self) -> list[dict[str, Any]]:
        """Turn what the hook kept into plain records (`calls`) and return them."""
        if not self._pending:
            return self.calls
        stats = iter(_batched_stats([flat for *_, flats in self._pending for flat in flats]))
        for path, class_name, shapes, dtypes, flats in self._pending:
            self.calls.append({"path": path, "class": class_name, "shape": [list(shape) for shape in shapes],
                               "dtype": [str(dtype).removeprefix("torch.") for dtype in dtypes],
                               "stats": [next(stats) for _ in flats]})
        self._pending.clear()
        self._kept = 0
        return self.calls
