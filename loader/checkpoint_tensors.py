"""Fingerprints of a checkpoint's tensors, computed once per checkpoint and kept beside its folder.

A fingerprint is a hash of the tensor's shape and of a fixed sample of its values cast to a common
dtype (bfloat16, or float16 for a model loaded in float16), so a model loaded in float32 or bfloat16
from a bf16 or fp32 file has the fingerprints of the file. A sample, not every value: re-initialised
weights differ almost everywhere, and the load probe's logits catch the rest; a model's side then
costs one gather of SAMPLED values per tensor, whatever the tensor's size.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    import torch

SAMPLED = 1024
"""Values hashed per tensor (all of them when it has fewer)."""

_STEP = 2654435761
"""Knuth's multiplicative constant: sample positions spread over the tensor, unaligned with its rows."""

FORMAT = 1
"""Part of the cache file: bump it when fingerprints are computed differently."""

CACHE_SUFFIX = ".tensors.json"
"""Beside the folder (`<folder>.tensors.json`): inside it, the tiny builds' content hashes would see a new file."""


def canonical_dtype(dtype: torch.dtype) -> torch.dtype | None:
    """The dtype values are compared in: float16 stays, other floats go to bfloat16, the rest is compared as is."""
    import torch

    if dtype == torch.float16:
        return torch.float16
    return torch.bfloat16 if dtype.is_floating_point else None


def fingerprint(tensor: torch.Tensor, dtype: torch.dtype | None) -> str:
    """Hash of the shape and of SAMPLED values at fixed positions, cast to `dtype` (None: as stored)."""
    import torch

    flat = tensor.detach().reshape(-1)
    count = flat.numel()
    if count > SAMPLED:
        positions = (torch.arange(SAMPLED, dtype=torch.int64) * _STEP) % count
        flat = flat[positions.to(flat.device)]
    if dtype is not None and flat.is_floating_point():
        flat = flat.to(dtype)
    values = flat.cpu().contiguous()
    if values.dtype in (torch.bfloat16, torch.float16):
        values = values.view(torch.int16)
    digest = hashlib.blake2b(repr(tuple(tensor.shape)).encode(), digest_size=12)
    digest.update(values.numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class StoredTensor:
    """One tensor of the checkpoint: its key, shape and fingerprint in one compare dtype."""

    key: str
    shape: tuple[int, ...]
    fingerprint: str


def weight_files(folder: Path) -> list[Path]:
    """The checkpoint's weight files: safetensors if any, else PyTorch `.bin` files."""
    found = sorted(folder.glob("*.safetensors"))
    found = [f for f in found if not f.name.startswith("reference")]  # our own reference logits
    return found or sorted(folder.glob("pytorch_model*.bin"))


def _tensors(files: list[Path]) -> Iterator[tuple[str, torch.Tensor]]:
    import torch

    for file in files:
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as opened:
                for key in opened.keys():
                    yield key, opened.get_tensor(key)
        else:
            yield from torch.load(file, map_location="cpu", weights_only=True, mmap=True).items()


def _stamp(files: list[Path]) -> list[list[Any]]:
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def cache_file(folder: Path) -> Path:
    return folder.with_name(folder.name + CACHE_SUFFIX)


def stored_tensors(folder: Path, dtype: torch.dtype | None) -> list[StoredTensor]:
    """Every tensor of the checkpoint in `folder`, fingerprinted for `dtype` (see canonical_dtype);
    read from the cache beside the folder when its files are unchanged, else computed and cached."""
    files = weight_files(folder)
    if not files:
        raise FileNotFoundError(f"{folder} has no *.safetensors or pytorch_model*.bin weight file")
    tag = str(dtype).removeprefix("torch.")
    cached_at = cache_file(folder)
    cached: dict[str, Any] = {}
    try:
        cached = json.loads(cached_at.read_text())
    except (OSError, ValueError):
        pass
    if cached.get("format") != FORMAT or cached.get("files") != _stamp(files):
        cached = {"format": FORMAT, "files": _stamp(files), "shapes": {}, "fingerprints": {}}
    if tag not in cached["fingerprints"]:
        shapes, prints = {}, {}
        for key, tensor in _tensors(files):
            shapes[key] = list(tensor.shape)
            prints[key] = fingerprint(tensor, canonical_dtype(tensor.dtype) and dtype)
        cached["shapes"], cached["fingerprints"][tag] = shapes, prints
        _write(cached_at, cached)
    prints = cached["fingerprints"][tag]
    return [StoredTensor(key, tuple(shape), prints[key]) for key, shape in cached["shapes"].items()]


def _write(path: Path, data: dict[str, Any]) -> None:
    """Atomically, and not at all where the folder's parent is read-only (the cache is an optimisation)."""
    staged = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        staged.write_text(json.dumps(data, sort_keys=True))
        os.replace(staged, path)  # two workers writing the same cache both leave a whole file
    except OSError:
        staged.unlink(missing_ok=True)
