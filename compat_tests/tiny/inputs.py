"""Model inputs made through a checkpoint's own tokenizer / processor (tiny or from the hub).

Fixed and short (a few tokens, one small image) so forward passes take milliseconds; all
tensors on CPU, the harness moves them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compat_tests.tiny.processors import load_processor

if TYPE_CHECKING:
    import torch
    from PIL import Image

DEFAULT_PROMPT = "the quick brown fox"
DEFAULT_IMAGE_PROMPT = "describe the picture"
PROMPTS = (
    "what color is the sky", "count the trees", "tell me a word", "which side is the dog",
    "describe the small house", "how many people are there", "what is in the middle", "name one color",
)
"""Distinct fixed prompts, all made of the tiny tokenizer's training words."""

DEFAULT_IMAGE_SIDE = 224
"""Test image side for folders that record none (hub checkpoints); tiny ones store theirs."""

MANUAL_KEYS = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "image_sizes",
               "pixel_attention_mask", "token_type_ids", "aspect_ratio_ids", "aspect_ratio_mask",
               "cross_attention_mask")
"""What training code passes to forward by hand (TRL, VLM-R1); token_type_ids drive Gemma 3 /
PaliGemma image attention in training. Mllama's tiles and cross-attention mask are part of its image
input: its forward refuses pixel_values without aspect_ratio_ids, and without cross_attention_mask
the text before the image attends to it, so no training code for it can leave them out."""


class InputBuilder:
    """Text and image+text inputs for one checkpoint folder."""

    def __init__(self, checkpoint_dir: Path, modality: str, image_size: int | None = None):
        from transformers import AutoTokenizer

        self.path = Path(checkpoint_dir)
        self.modality = modality
        self.processor: Any = None
        self.processor_route: str | None = None
        """How the processor was loaded (`AutoProcessor`, or the fallback without video)."""
        if modality == "image-text":
            self.processor, self.processor_route = load_processor(self.path)
            self.tokenizer: Any = self.processor.tokenizer
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.image_size = image_size or self._recorded_image_size()

    def _recorded_image_size(self) -> int:
        reference = self.path / "reference.json"
        side = json.loads(reference.read_text()).get("image_size") if reference.is_file() else None
        return int(side or DEFAULT_IMAGE_SIDE)

    def text(self, prompt: str | None = None) -> dict[str, torch.Tensor]:
        """Batch of one: input_ids and attention_mask of `prompt` (a fixed default)."""
        encoded = self.tokenizer(prompt or DEFAULT_PROMPT, return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def image(self, seed: int = 0) -> Image.Image:
        """A deterministic RGB noise image at the size the processor expects."""
        import torch
        from PIL import Image

        generator = torch.Generator().manual_seed(seed)
        pixels = torch.randint(0, 256, (self.image_size, self.image_size, 3), generator=generator, dtype=torch.uint8)
        return Image.fromarray(pixels.numpy(), mode="RGB")

    def chat_text(self, prompt: str | None = None) -> str:
        """The user turn (image then text) through the chat template, with the generation prompt.

        Without a chat template (PaliGemma pt) it is the image token then the prompt, as the
        processor asks.
        """
        prompt = prompt or DEFAULT_IMAGE_PROMPT
        template = getattr(self.processor, "chat_template", None) or self.tokenizer.chat_template
        if not template:
            return (getattr(self.tokenizer, "image_token", None) or "") + prompt
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        # The tokenizer renders it: some processors' apply_chat_template needs their video processor.
        return self.tokenizer.apply_chat_template(messages, chat_template=template, add_generation_prompt=True,
                                                  tokenize=False)

    def image_text(self, prompt: str | None = None, image: Image.Image | None = None) -> dict[str, torch.Tensor]:
        """Everything the processor returns for one image and the templated prompt."""
        if self.processor is None:
            raise ValueError(f"{self.path} is a {self.modality} checkpoint: it has no processor for images")
        text = self.chat_text(prompt)
        bos = self.tokenizer.bos_token
        # A template that writes bos itself must not get a second one from the tokenizer.
        add_special_tokens = not (bos and text.startswith(bos))
        encoded = self.processor(text=[text], images=[image or self.image()], return_tensors="pt",
                                 add_special_tokens=add_special_tokens)
        return dict(encoded)

    def manual(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The subset of `inputs` that training code passes by hand."""
        return {k: v for k, v in inputs.items() if k in MANUAL_KEYS}

    def prompts(self, n: int) -> list[str]:
        """`n` distinct fixed prompts."""
        return [PROMPTS[i % len(PROMPTS)] + (f" {i // len(PROMPTS)}" if i >= len(PROMPTS) else "") for i in range(n)]

    @property
    def eos_token_id(self) -> int | None:
        return self.tokenizer.eos_token_id

    @property
    def pad_token_id(self) -> int | None:
        """The pad id, or eos where the tokenizer has no pad token (as TRL does)."""
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.eos_token_id
