"""Tiny models straight from the matrix.yaml recipes, a stand-in input builder, and planted bugs.

The probe tests must need neither the hub nor `compat_tests.tiny` (written concurrently): models are
random, built from config in a fraction of a second, and `reload` rebuilds them bit-identically
from the recipe's seed, which is what reloading a saved tiny checkpoint gives the harness.
"""

from __future__ import annotations

import contextlib
import functools
import zlib
from typing import Any, Callable, Iterator

import pytest
import torch
import transformers
from transformers import AutoConfig

from compat_matrix.spec.schema import ModelEntry, Settings
from compat_matrix.spec.validate import load_matrix
from compat_tests.probes.base import ProbeContext
from compat_tests.tiny.checkpoint import fill_zero_matrices, with_init_std
from loader.result import LoadResult

MATRIX = load_matrix(check_model_types=False)

BOS, EOS, PAD = 1, 2, 0
"""Special ids inside the tiny vocab (the Qwen2-VL defaults, 151643+, lie outside it)."""

IMAGE_PATCHES, PATCH_VALUES = 4, 3 * 2 * 14 * 14
"""Qwen2-VL: a 28x28 image at patch 14 is a (1, 2, 2) grid of 4 patches, each channels x temporal
patch (2) x 14 x 14 values; the 2x2 spatial merge turns them into 1 image token."""

PROMPTS = ("describe the picture", "what colour is the sky over the old town today", "count the boats")

Plant = Callable[[Any], None]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread: with 2 threads on 2 busy cores a tiny model's GRPO step took 1.3-2.9 s
    instead of 0.16-0.25 s (OpenMP threads spin against each other and against other processes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class FakeInputs:
    """The part of `compat_tests.tiny.InputBuilder` the probes use: batch-1 CPU tensors, made without a
    tokenizer (words hashed into ids 10..989) and, for image-text, laid out as Qwen2VLProcessor does."""

    eos_token_id = EOS
    pad_token_id = PAD

    def __init__(self, entry: ModelEntry) -> None:
        self.config = entry.recipe.config if entry.recipe else {}
        self.mm_token_type_ids = getattr(transformers.Qwen2VLProcessor, "return_mm_token_type_ids", False)
        """5.x processors add mm_token_type_ids (1 on image tokens), and 5.x Qwen2-VL requires it."""

    def prompts(self, count: int) -> list[str]:
        return [PROMPTS[i % len(PROMPTS)] + " please" * (i // len(PROMPTS)) for i in range(count)]

    def text(self, prompt: str) -> dict[str, torch.Tensor]:
        return self._batch([BOS, *self._words(prompt)])

    def image(self, seed: int) -> torch.Tensor:
        return torch.randn(IMAGE_PATCHES, PATCH_VALUES, generator=torch.Generator().manual_seed(seed))

    def image_text(self, prompt: str, image: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        ids = [BOS, c["vision_start_token_id"], c["image_token_id"], c["vision_end_token_id"], *self._words(prompt)]
        batch = {**self._batch(ids), "pixel_values": image, "image_grid_thw": torch.tensor([[1, 2, 2]])}
        if self.mm_token_type_ids:
            batch["mm_token_type_ids"] = (batch["input_ids"] == c["image_token_id"]).long()
        return batch

    @staticmethod
    def _words(prompt: str) -> list[int]:
        return [10 + zlib.crc32(word.encode()) % 980 for word in prompt.split()]

    @staticmethod
    def _batch(ids: list[int]) -> dict[str, torch.Tensor]:
        input_ids = torch.tensor([ids])
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def build_model(entry: ModelEntry, plant: Plant | None = None, dtype: torch.dtype = torch.float32) -> Any:
    """A random model from the entry's recipe (same weights on every call), with `plant` applied."""
    recipe = entry.recipe
    assert recipe is not None
    special = {"bos_token_id": BOS, "eos_token_id": EOS, "pad_token_id": PAD}
    config = AutoConfig.for_model(recipe.model_type, **{**special, **with_init_std(recipe.config)})
    torch.manual_seed(recipe.seed)
    model = getattr(transformers, recipe.architecture)(config)
    fill_zero_matrices(model)
    model = model.to(dtype).eval()
    if plant is not None:
        plant(model)
    return model


def make_context(
    key: str,
    plant: Plant | None = None,
    *,
    settings: Settings | None = None,
    dtype: torch.dtype = torch.float32,
) -> ProbeContext:
    """A ProbeContext on CPU whose `reload` builds the same (planted) model again, as a real reload would."""
    entry = MATRIX.model(key)

    def reload() -> Any:
        return build_model(entry, plant, dtype)

    return ProbeContext(
        entry=entry,
        checkpoint=None,  # type: ignore[arg-type]  # probes never read it
        loaded=LoadResult(model=reload(), strategy="explicit_class", path="test:from_config"),
        inputs=FakeInputs(entry),  # type: ignore[arg-type]  # duck-typed InputBuilder
        settings=settings or Settings(),
        device="cpu",
        dtype=dtype,
        reload=reload,
    )


def _wrap_forward(model: Any, before: Callable[[dict[str, Any]], None] = lambda kw: None, after: Callable[[dict[str, Any], Any], None] = lambda kw, out: None) -> None:
    """Replace `model.forward` (or a submodule's) on this instance; `functools.wraps` keeps the signature `generate` inspects."""
    original = model.forward

    @functools.wraps(original)
    def forward(*args: Any, **kwargs: Any) -> Any:
        before(kwargs)
        output = original(*args, **kwargs)
        after(kwargs, output)
        return output

    model.forward = forward


def _past_length(kwargs: dict[str, Any]) -> int:
    """Tokens already in the KV cache: > 0 on a cached decode step (`cache` in 5.x, `past_key_values` before)."""
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    return 0 if cache is None else int(cache.get_seq_length())


def ignore_pixel_values(model: Any) -> None:
    """Planted: the model drops the image inputs, so image tokens are embedded as plain text.

    `generate` is wrapped too: in 5.x it lays out Qwen2-VL's M-RoPE from the grid before calling
    the forward, so dropping the image in the forward alone would also trip `logprob_match`.
    """

    def drop(kwargs: dict[str, Any]) -> None:
        for key in ("pixel_values", "image_grid_thw", "mm_token_type_ids"):
            kwargs.pop(key, None)

    _wrap_forward(model, before=drop)
    original = model.generate

    @functools.wraps(original)
    def generate(*args: Any, **kwargs: Any) -> Any:
        drop(kwargs)
        return original(*args, **kwargs)

    model.generate = generate


def shift_decode_positions(model: Any, by: int = 1) -> None:
    """Planted: cached decode steps run at position + `by`, the full forward at the right positions."""

    def shift(kwargs: dict[str, Any]) -> None:
        past = _past_length(kwargs)
        if past:
            positions = kwargs.get("position_ids")
            if positions is None:
                positions = torch.arange(past, past + kwargs["input_ids"].shape[1])[None]
            kwargs["position_ids"] = positions + by

    _wrap_forward(model, before=shift)


def freeze(model: Any) -> None:
    """Planted: no parameter requires grad, so the optimizer step cannot change anything."""
    model.requires_grad_(False)


def freeze_input_embeddings(model: Any) -> None:
    """A common freezing rule (the input embeddings stay fixed): under reentrant gradient checkpointing
    the checkpointed decoder layers then see no input that needs a gradient and get none."""
    model.get_input_embeddings().requires_grad_(False)


def leak_between_calls(model: Any) -> None:
    """Planted: state kept on the model object biases every generation after the first one."""
    prefills = [0]

    def count(kwargs: dict[str, Any]) -> None:
        if not _past_length(kwargs):
            prefills[0] += 1

    def bias(kwargs: dict[str, Any], output: Any) -> None:
        if prefills[0] > 1:
            output.logits[..., 7] += 100.0

    _wrap_forward(model, before=count, after=bias)


def nan_logits(model: Any) -> None:
    """Planted: the forward returns nan logits."""
    _wrap_forward(model, after=lambda kwargs, output: output.logits.fill_(float("nan")))


def keep_generate_state(model: Any) -> None:
    """Planted: `generate()` leaves per-row state on the model (as Qwen2-VL's cached rope_deltas did) that
    later forwards index by their row in the batch: a forward's log-probs then depend on its batch size."""
    kept: list[torch.Tensor] = []

    def remember(kwargs: dict[str, Any]) -> None:
        if kwargs.get("use_cache") is not False and not _past_length(kwargs):
            kept[:] = [torch.arange(kwargs["input_ids"].shape[0], dtype=torch.float32) * 5.0]

    def reuse(kwargs: dict[str, Any], output: Any) -> None:
        if kwargs.get("use_cache") is False and kept:
            rows = output.logits.shape[0]
            output.logits[..., 7] += kept[0][:rows, None].to(output.logits.dtype)

    _wrap_forward(model, before=remember, after=reuse)


def keep_generation_batch(model: Any) -> None:
    """Planted: the base model (where Qwen2-VL keeps its cached rope_deltas) keeps state sized to the
    generation batch, and a forward without a cache reuses it: a training forward of another row count
    than the generation batch raises; one of the same row count trains. On the base model, not the
    head, since TRL 1.x's training forward calls the backbone directly (its fused LM head)."""
    rows: list[int] = []

    def check(kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids")
        if ids is None:
            return
        if kwargs.get("cache", kwargs.get("past_key_values")) is not None:
            if not _past_length(kwargs):
                rows[:] = [ids.shape[0]]
        elif rows and ids.shape[0] != rows[0]:
            raise RuntimeError(f"planted: state for {rows[0]} rows kept from generate(), a forward of {ids.shape[0]}")

    _wrap_forward(model.base_model, before=check)


def share_first_row_mask(model: Any) -> None:
    """Planted: a forward without a cache applies the first row's attention mask to every row, a
    batching slip that only shows when rows with different padding share a micro-batch."""

    def share(kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("attention_mask")
        if kwargs.get("use_cache") is False and mask is not None and mask.shape[0] > 1:
            kwargs["attention_mask"] = mask[:1].expand_as(mask).clone()

    _wrap_forward(model, before=share)


def need_labels_in_training(model: Any) -> None:
    """Planted: the forward requires an input (`labels`) in train mode only, as some remote code does."""

    def require(kwargs: dict[str, Any]) -> None:
        if model.training and kwargs.get("labels") is None:
            raise ValueError("labels are required when training")

    _wrap_forward(model, before=require)


def need_image_inputs_in_training(model: Any) -> None:
    """Planted: an image-text model whose train-mode forward raises on a batch without an image,
    as Gemma3 and PaliGemma in 5.0.0 do ("token_type_ids is required when training", trl#5032)."""

    def require(kwargs: dict[str, Any]) -> None:
        if model.training and kwargs.get("pixel_values") is None:
            raise ValueError("planted: an image is required when training")

    _wrap_forward(model, before=require)


def keep_logits_one_early(model: Any) -> None:
    """Planted: a training forward (no cache) given `logits_to_keep` keeps the positions one before the
    ones asked for, an off-by-one a model's slicing can have; full logits are right."""
    kept: list[int] = []

    def widen(kwargs: dict[str, Any]) -> None:
        kept[:] = [kwargs.pop("logits_to_keep")] if kwargs.get("use_cache") is False and kwargs.get("logits_to_keep") else []

    def shift(kwargs: dict[str, Any], output: Any) -> None:
        if kept:
            output.logits = output.logits[:, -kept[0] - 1 : -1]

    _wrap_forward(model, before=widen, after=shift)


def break_batched_training(model: Any) -> None:
    """Planted: a train-mode forward of more than one row raises; one row at a time trains."""

    def check(kwargs: dict[str, Any]) -> None:
        if model.training and kwargs["input_ids"].shape[0] > 1:
            raise RuntimeError("planted: more than one row in a training forward")

    _wrap_forward(model, before=check)


def break_checkpointed_backward(model: Any) -> None:
    """Planted: gradient checkpointing whose recomputation in the backward raises; training without it works."""
    original = model.gradient_checkpointing_enable

    def recompute_context() -> tuple[Any, Any]:
        class Broken:
            def __enter__(self) -> None:
                raise RuntimeError("planted: recomputation of a checkpointed layer failed")

            def __exit__(self, *exc: object) -> None:
                return None

        return contextlib.nullcontext(), Broken()

    def enable(gradient_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        original(gradient_checkpointing_kwargs={"use_reentrant": False, "context_fn": recompute_context})

    model.gradient_checkpointing_enable = enable


def nan_gradients(model: Any) -> None:
    """Planted: the backward produces nan in the LM head's gradient; forward and sampling are fine."""
    model.get_output_embeddings().weight.register_hook(lambda grad: grad * float("nan"))


def prefer_image_token(model: Any) -> None:
    """Planted: every forward makes the image placeholder likely (+7 on its logit), as a random tiny
    model now and then does a little: a completion holding one breaks the next forward with images."""
    token = model.config.image_token_id

    def bias(kwargs: dict[str, Any], output: Any) -> None:
        output.logits[..., token] += 7.0

    _wrap_forward(model, after=bias)
