"""Weight accounting: is every parameter of a loaded model in the checkpoint, and every checkpoint
tensor in the model? Judged on the tensors themselves, whoever loaded the model (a built-in
strategy, `smart`, a user's callable, a peft wrapper), not on `output_loading_info`.

A model tensor is found, in this order:
1. by name: the checkpoint key the release's own mapping (`loader.key_mapping`) renames to it, same values,
   or those values with the last two axes swapped (`transposed`: 5.x's Qwen3-VL-MoE experts, stored
   `(experts, in, out)` by 4.57 and the hub, kept `(experts, out, in)`);
2. tied: it shares storage with a tensor found by name (a tied `lm_head`);
3. fused: it is the checkpoint tensors the release maps to it (or, failing that, unused ones of the
   right shape) stacked or concatenated along its first axis, also tried on its last two axes swapped
   (5.x's `experts.gate_up_proj` from per-expert `gate_proj` / `up_proj`); a fused parameter the
   release builds with another operation (an interleave, a permute) is listed as `converted`, unverified;
4. by content: a checkpoint tensor with the same values under another name (unused ones first, then
   the longest common name tail); `constant` when those values are one number throughout, which an
   init gives too.
A parameter found nowhere was re-initialised. A buffer found nowhere is computed (rotary `inv_freq`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from loader.checkpoint_tensors import StoredTensor, canonical_dtype, fingerprint, stored_tensors
from loader.inspection import is_vision_name
from loader.key_mapping import key_renamer

if TYPE_CHECKING:
    import torch

SHOWN = 8
"""Names listed per group in `as_dict` (the count is kept)."""

PEFT_WRAPPING = (re.compile(r"^base_model\.model\."), re.compile(r"\.(base_layer|original_module|modules_to_save\.[^.]+)(?=\.)"))
"""What peft adds to a wrapped model's names: the `base_model.model.` prefix and the levels of the layers it replaces."""

_ADAPTER_PART = re.compile(r"\.lora_\w+\.")
"""Parameters peft adds (`lora_A`, `lora_B`, `lora_embedding_A`, `lora_magnitude_vector`): new by design."""


def plain_name(name: str) -> str:
    """A wrapped model's parameter name as the base model has it."""
    name = PEFT_WRAPPING[0].sub("", name)
    return PEFT_WRAPPING[1].sub("", name)


@dataclass
class WeightAccount:
    """Where each model tensor came from, and what of the checkpoint nothing took."""

    checkpoint_tensors: int = 0
    by_name: list[str] = field(default_factory=list)
    tied: list[str] = field(default_factory=list)
    """`name = sibling`: shares storage with a tensor found by name."""
    transposed: list[str] = field(default_factory=list)
    """`name <- key`: the key the mapping names, its values with the last two axes swapped."""
    fused: list[str] = field(default_factory=list)
    """`name <- first key + N more`: built from several checkpoint tensors, each found in it."""
    converted: list[str] = field(default_factory=list)
    """`name <- keys`: the release maps several tensors to it by an operation not checked here."""
    by_content: list[str] = field(default_factory=list)
    """`name <- key`: the values of another checkpoint key than the mapping names."""
    constant: list[str] = field(default_factory=list)
    """`name <- key`: found by content only, and one value throughout (a norm of ones, a zero bias): its
    init gives the same values, so whether it was loaded cannot be told, and makes no difference."""
    reinitialised: list[str] = field(default_factory=list)
    """Parameters found nowhere in the checkpoint."""
    computed: list[str] = field(default_factory=list)
    """Buffers found nowhere (computed at init: rotary inv_freq, position ids)."""
    adapter: list[str] = field(default_factory=list)
    """Parameters a peft adapter added."""
    unused: list[str] = field(default_factory=list)
    """Checkpoint tensors no model tensor holds."""
    ignored: list[str] = field(default_factory=list)
    """Checkpoint tensors the class declares it ignores (`_keys_to_ignore_on_load_unexpected`), and saved
    copies of buffers the model computes (an early Llama's per-layer `rotary_emb.inv_freq`, `position_ids`)."""

    def unused_for(self, text_only: bool) -> tuple[list[str], list[str]]:
        """(unexpectedly unused, dropped on purpose): a text route drops the vision side's tensors."""
        dropped = [k for k in self.unused if text_only and is_vision_name(k)]
        return [k for k in self.unused if k not in dropped], dropped

    def as_dict(self, text_only: bool = False) -> dict[str, Any]:
        """Counts and the first names of each group, as plain values for a results line."""
        unused, dropped = self.unused_for(text_only)
        groups = {"by_name": self.by_name, "tied": self.tied, "transposed": self.transposed, "fused": self.fused, "converted": self.converted,
                  "by_content": self.by_content, "constant": self.constant, "reinitialised": self.reinitialised, "computed": self.computed,
                  "adapter": self.adapter, "unused": unused, "dropped": dropped, "ignored": self.ignored}
        out: dict[str, Any] = {"checkpoint_tensors": self.checkpoint_tensors}
        for group, names in groups.items():
            out[group] = {"count": len(names), "first": names[:SHOWN]} if names else {"count": 0}
        return out


def _suffix_overlap(a: str, b: str) -> int:
    """How many trailing dotted parts two names share."""
    count = 0
    for x, y in zip(reversed(a.split(".")), reversed(b.split("."))):
        if x != y:
            break
        count += 1
    return count


class _Checkpoint:
    """The checkpoint's tensors indexed by key, by fingerprint and by the model key they are renamed to."""

    def __init__(self, stored: list[StoredTensor], rename: Any) -> None:
        self.by_key = {s.key: s for s in stored}
        self.by_print: dict[str, list[str]] = {}
        self.by_target: dict[str, list[str]] = {}
        for s in stored:
            self.by_print.setdefault(s.fingerprint, []).append(s.key)
            self.by_target.setdefault(rename(s.key), []).append(s.key)
        self.used: set[str] = set()

    def best_by_content(self, name: str, print_: str) -> str | None:
        keys = self.by_print.get(print_, [])
        if not keys:
            return None
        return max(keys, key=lambda k: (k not in self.used, _suffix_overlap(name, k), k))

    def decompose(self, tensor: torch.Tensor, candidates: Iterable[str]) -> list[str] | None:
        """Checkpoint keys whose tensors, in order, make up `tensor` along its first axis (or its last two
        axes swapped); None when no such cover exists."""
        pieces = [self.by_key[k] for k in candidates if self.by_key[k].shape]
        views = [tensor] + ([tensor.transpose(-1, -2)] if tensor.dim() >= 2 else [])
        for view in views:
            for rest in sorted({p.shape[1:] for p in pieces if _fits(view, p.shape)}):
                cover = self._cover(view, rest, [p for p in pieces if p.shape[1:] == rest])
                if cover:
                    return cover
        return None

    def _cover(self, view: torch.Tensor, rest: tuple[int, ...], pieces: list[StoredTensor]) -> list[str] | None:
        rows = view.reshape(-1, *rest)
        lookup: dict[tuple[int, str], list[str]] = {}
        for p in pieces:
            lookup.setdefault((p.shape[0], p.fingerprint), []).append(p.key)
        heights = sorted({p.shape[0] for p in pieces}, reverse=True)
        cover: list[str] = []
        offset = 0
        while offset < rows.shape[0]:
            for height in heights:
                if offset + height > rows.shape[0]:
                    continue
                block = rows[offset:offset + height]
                keys = lookup.get((height, fingerprint(block, canonical_dtype(block.dtype))), [])
                free = [k for k in keys if k not in cover]
                if free:
                    cover.append(free[0])
                    offset += height
                    break
            else:
                return None
        return cover if len(cover) > 1 else None


def _transposed_source(name: str, tensor: torch.Tensor | None, sources: list[str], checkpoint: _Checkpoint) -> str | None:
    """The one key the mapping names for `name` whose values are `tensor`'s with its last two axes swapped."""
    if tensor is None or tensor.dim() < 3 or len(sources) != 1:
        return None
    swapped = tensor.transpose(-1, -2)
    stored = checkpoint.by_key[sources[0]]
    if tuple(stored.shape) != tuple(swapped.shape):
        return None
    return sources[0] if fingerprint(swapped, canonical_dtype(swapped.dtype)) == stored.fingerprint else None


def _fits(view: torch.Tensor, piece: tuple[int, ...]) -> bool:
    """`view` can be cut into blocks of `piece`'s shape along its (flattened) first axes."""
    rest = piece[1:]
    return (view.numel() > _numel(piece) and view.numel() % _numel(piece) == 0
            and tuple(view.shape[view.dim() - len(rest):]) == rest if rest else view.numel() > piece[0])


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def _ignored_patterns(model: Any) -> list[str]:
    return list(getattr(model, "_keys_to_ignore_on_load_unexpected", None) or [])


def account(model: Any, folder: Path, key_mapping: dict[str, str] | None = None) -> WeightAccount:
    """Where each tensor of `model` came from in the checkpoint at `folder` (see the module docstring)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") and hasattr(model, "peft_config") else model
    params = [(n, p) for n, p in model.named_parameters(remove_duplicate=False)]
    adapter = [plain_name(n) for n, _ in params if _ADAPTER_PART.search(n)]
    tensors = {plain_name(n): p for n, p in params if not _ADAPTER_PART.search(n)}
    buffers = {plain_name(n): b for n, b in model.named_buffers(remove_duplicate=False)}
    first_float = next((t for t in tensors.values() if t.is_floating_point()), None)
    compare = canonical_dtype(first_float.dtype) if first_float is not None else None
    stored = stored_tensors(folder, compare)
    checkpoint = _Checkpoint(stored, key_renamer(base, set(tensors) | set(buffers), key_mapping))
    found = WeightAccount(checkpoint_tensors=len(stored), adapter=adapter)
    storage_names: dict[tuple[Any, ...], list[str]] = {}
    for name, tensor in tensors.items():
        storage_names.setdefault(_storage(tensor), []).append(name)
    prints = {name: fingerprint(t, canonical_dtype(t.dtype)) for name, t in {**tensors, **buffers}.items()}

    pending: list[str] = []
    for name in [*tensors, *buffers]:
        sources = checkpoint.by_target.get(name, [])
        same = [k for k in sources if checkpoint.by_key[k].fingerprint == prints[name]]
        swapped = _transposed_source(name, tensors.get(name), sources, checkpoint) if not same else None
        if same:
            checkpoint.used.add(same[0])
            found.by_name.append(name)
        elif swapped is not None:
            checkpoint.used.add(swapped)
            found.transposed.append(f"{name} <- {swapped}")
        elif name in buffers and sources:  # a buffer the model computes, also saved (early Llama's inv_freq)
            checkpoint.used.update(sources)
            found.by_name.append(name)
        else:
            pending.append(name)
    matched = set(found.by_name)
    for name in pending:
        tensor = tensors.get(name)
        if tensor is None:
            tensor = buffers[name]
        sources = checkpoint.by_target.get(name, [])
        sibling = next((n for n in storage_names.get(_storage(tensor), []) if n in matched), None) if name in tensors else None
        if sibling is not None:
            found.tied.append(f"{name} = {sibling}")
            continue
        cover = checkpoint.decompose(tensor, sources) if len(sources) > 1 else None
        if cover is None and name in tensors and checkpoint.by_print.get(prints[name]) is None:
            cover = checkpoint.decompose(tensor, (k for k in checkpoint.by_key if k not in checkpoint.used))
        if cover:
            checkpoint.used.update(cover)
            found.fused.append(f"{name} <- {cover[0]}" + (f" + {len(cover) - 1} more" if len(cover) > 1 else ""))
            continue
        if len(sources) > 1:
            checkpoint.used.update(sources)
            found.converted.append(f"{name} <- {sources[0]} + {len(sources) - 1} more")
            continue
        key = checkpoint.best_by_content(name, prints[name])
        if key is not None:
            checkpoint.used.add(key)
            (found.constant if _constant(tensor) else found.by_content).append(f"{name} <- {key}")
        elif name in tensors:
            found.reinitialised.append(name)
        else:
            found.computed.append(name)

    patterns = _ignored_patterns(base)
    computed_tails = {_tail(n) for n in buffers}
    for key in checkpoint.by_key:
        if key in checkpoint.used:
            continue
        if any(re.search(p, key) for p in patterns) or _tail(key) in computed_tails:
            found.ignored.append(key)
        else:
            found.unused.append(key)
    return found


def _constant(tensor: torch.Tensor) -> bool:
    """One value throughout (a whole pass, done only for tensors found by content)."""
    flat = tensor.detach().reshape(-1)
    return flat.numel() > 0 and bool((flat == flat[0]).all())


def _tail(name: str) -> str:
    """The module's own name and the tensor's: `rotary_emb.inv_freq`."""
    return ".".join(name.split(".")[-2:])


def _storage(tensor: torch.Tensor) -> tuple[Any, ...]:
    return (tensor.device.type, tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()))
