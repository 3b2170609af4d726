"""What a tiny checkpoint of each model_type ships besides weights: tokenizer, chat template, processor.

Data only, one entry per model_type of `matrix.yaml`; a new tiny family is one more entry here
(its tokenizer's special tokens at ids 990+, matching the recipe's token ids) plus, for image-text,
a builder in `processors.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from compat_tests.tiny import processors
from compat_tests.tiny.tokenizer import TokenizerSpec


def _content(image: str, text_suffix: str = "") -> str:
    """Jinja for one message's content: a string, or a list of image/text items in order."""
    return ("{% if message['content'] is string %}{{ message['content'] }}" + text_suffix + "{% else %}"
            "{% for item in message['content'] %}{% if item['type'] == 'image' %}" + image +
            "{% elif item['type'] == 'text' %}{{ item['text'] }}" + text_suffix + "{% endif %}{% endfor %}{% endif %}")


NL = "{{ '\\n' }}"

def _chatml(image: str) -> str:
    return ("{% for message in messages %}<|im_start|>{{ message['role'] }}" + NL + _content(image) + "<|im_end|>" + NL +
            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant" + NL + "{% endif %}")


def _llama3(image: str) -> str:
    return ("{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>"
            + NL + NL + _content(image) + "<|eot_id|>{% endfor %}"
            "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>" + NL + NL + "{% endif %}")


CHATML = _chatml("<|vision_start|><|image_pad|><|vision_end|>")
"""Qwen 2 / 2.5 / 3 and their VL models."""

INTERNVL = _chatml("<IMG_CONTEXT>" + NL)
"""OpenGVLab's -hf checkpoints: ChatML, one <IMG_CONTEXT> per image that the processor expands."""

LLAMA3 = _llama3("")

MLLAMA = _llama3("<|image|>")
"""Llama 3.2 Vision: Llama 3 turns, <|image|> where the image goes."""

def _gemma(image: str) -> str:
    return ("{{ bos_token }}{% for message in messages %}"
            "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}" + NL +
            _content(image) + "<end_of_turn>" + NL +
            "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model" + NL + "{% endif %}")


GEMMA3 = _gemma("<start_of_image>")

GEMMA2 = _gemma("")

MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}[INST] " + _content("") +
           "[/INST]{% else %}" + _content("") + "{{ eos_token }}{% endif %}{% endfor %}")
"""Mistral-7B-Instruct-v0.3's [INST] turns (no system role, no generation prompt: the model answers after [/INST])."""

MIXTRAL = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}[INST] " + _content("") +
           " [/INST]{% else %}" + _content("") + "{{ eos_token }}{% endif %}{% endfor %}")
"""Mixtral-8x7B-Instruct-v0.1's [INST] turns (no system role, no generation prompt)."""

DEEPSEEK_V3 = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}<｜User｜>" + _content("") +
               "{% elif message['role'] == 'assistant' %}<｜Assistant｜>" + _content("") +
               "<｜end▁of▁sentence｜>{% else %}" + _content("") + "{% endif %}{% endfor %}"
               "{% if add_generation_prompt %}<｜Assistant｜>{% endif %}")
"""DeepSeek-V3's <｜User｜> / <｜Assistant｜> turns after the bos."""

OLMOE = ("{% for message in messages %}<|{{ message['role'] }}|>" + NL + _content("") + NL +
         "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}"
         "{% if add_generation_prompt %}<|assistant|>" + NL + "{% endif %}")
"""OLMoE-1B-7B-0924-Instruct's Tulu turns: <|user|>, <|assistant|>, eos after each answer."""

GPT_OSS = ("{% for message in messages %}<|start|>{{ message['role'] }}<|message|>" + _content("") + "<|end|>{% endfor %}"
           "{% if add_generation_prompt %}<|start|>assistant{% endif %}")
"""gpt-oss's harmony turns, without channels or tools."""

PHI3 = ("{% for message in messages %}<|{{ message['role'] }}|>" + NL + _content("") + "<|end|>" + NL +
        "{% endfor %}{% if add_generation_prompt %}<|assistant|>" + NL + "{% else %}{{ eos_token }}{% endif %}")
"""Phi-3-mini's <|user|> ... <|end|> turns."""

LLAVA = ("{% for message in messages %}{{ message['role'].upper() + ': ' }}" + _content("<image>" + NL, " ") +
         "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}")
"""llava-hf's USER: / ASSISTANT: format."""

def _idefics(start: str) -> str:
    return (start + "{% for message in messages %}{{ message['role'] | capitalize }}: " + _content("<image>") +
            "<end_of_utterance>" + NL + "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}")


SMOLVLM = _idefics("<|im_start|>")

IDEFICS3 = _idefics("{{ bos_token }}")
"""HuggingFaceM4/Idefics3-8B-Llama3: SmolVLM's turns after Llama 3's <|begin_of_text|>."""

QWEN_TOKENIZER = TokenizerSpec(
    class_name="Qwen2Tokenizer", style="qwen",
    specials=("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>",
              "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"),
    roles={"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": None},
    config_bos="<|endoftext|>",
)


@dataclass(frozen=True)
class Family:
    """Everything but the weights for one model_type."""

    tokenizer: TokenizerSpec
    """Tokenizer class, pipeline and special tokens."""
    chat_template: str | None
    """Jinja chat template in the family's style (None where the hub checkpoint has none)."""
    processor: Callable[[Any, Any], processors.Built] | None = None
    """(tokenizer, model config) -> (processor, image side); image-text families only."""
    revision: int = 0
    """Part of the recipe hash where above 0: bump it when the family's files change (tokenizer, template,
    processor), so only its cached checkpoints are built again (1: Llama's model_input_names)."""


LLAMA3_ROLES: dict[str, str | None] = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                                       "pad_token": "<|finetune_right_pad_id|>", "unk_token": None}

LLAMA3_INPUTS = ("input_ids", "attention_mask")
"""tokenizer_config.json's model_input_names in Llama 3 checkpoints (Llama 3.2 Instruct, Idefics3-8B-Llama3, Llama 3.2
Vision): without it the plain fast class also returns token_type_ids, which Llama's forward does not take, so
`generate(**tokenizer(...))` (TRL's GRPOTrainer) fails where the hub's tokenizer does not."""

LLAMA = Family(
    TokenizerSpec(
        class_name="PreTrainedTokenizerFast", style="qwen", add_bos=True,
        specials=("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                  "<|eot_id|>", "<|finetune_right_pad_id|>"),
        roles=LLAMA3_ROLES, model_input_names=LLAMA3_INPUTS),
    LLAMA3, revision=1)

QWEN3_VL = Family(QWEN_TOKENIZER, CHATML, processors.qwen_vl(
    "Qwen3VLProcessor", "Qwen3VLVideoProcessor", image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]))

FAMILIES: dict[str, Family] = {
    "llama": LLAMA,
    "tiny_decoder": LLAMA,  # compat_tests/remote_code/tiny_decoder: a Llama-style remote-code model
    "qwen2": Family(QWEN_TOKENIZER, CHATML),
    "qwen3": Family(QWEN_TOKENIZER, CHATML),
    "qwen2_vl": Family(QWEN_TOKENIZER, CHATML, processors.qwen_vl("Qwen2VLProcessor", "Qwen2VLVideoProcessor")),
    "qwen2_5_vl": Family(QWEN_TOKENIZER, CHATML, processors.qwen_vl("Qwen2_5_VLProcessor", "Qwen2VLVideoProcessor")),
    "qwen3_vl": QWEN3_VL,
    "qwen3_vl_moe": QWEN3_VL,  # Qwen3-VL-30B-A3B ships Qwen3-VL's tokenizer and processor
    "gemma3": Family(
        TokenizerSpec(
            class_name="GemmaTokenizer", style="gemma", add_bos=True,
            specials=("<image_soft_token>", "<start_of_image>", "<end_of_image>", "<pad>", "<eos>", "<bos>",
                      "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"),
            roles={"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
                   "mask_token": "<mask>"},
            extra_special_tokens={"image_token": "<image_soft_token>", "boi_token": "<start_of_image>",
                                  "eoi_token": "<end_of_image>"}),
        GEMMA3, processors.gemma3),
    "llava": Family(
        TokenizerSpec(
            class_name="LlamaTokenizer", style="llama", add_bos=True,
            specials=("<image>", "<s>", "</s>", "<unk>", "<pad>"),
            roles={"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}),
        LLAVA, processors.llava),
    "smolvlm": Family(
        TokenizerSpec(
            class_name="GPT2Tokenizer", style="gpt2",
            specials=("<image>", "<fake_token_around_image>", "<global-img>", "<|im_start|>", "<end_of_utterance>",
                      "<|endoftext|>"),
            roles={"bos_token": "<|im_start|>", "eos_token": "<end_of_utterance>", "pad_token": "<|endoftext|>",
                   "unk_token": "<|endoftext|>"}),
        SMOLVLM, processors.smolvlm),
    "paligemma": Family(
        TokenizerSpec(
            class_name="GemmaTokenizer", style="gemma", add_bos=True,
            specials=("<image>", "<pad>", "<eos>", "<bos>", "<unk>", "<mask>"),
            roles={"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
                   "mask_token": "<mask>"},
            extra_special_tokens={"image_token": "<image>"}),
        None, processors.paligemma),
    "gemma2": Family(
        TokenizerSpec(
            class_name="GemmaTokenizer", style="gemma", add_bos=True,
            specials=("<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"),
            roles={"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
                   "mask_token": "<mask>"}),
        GEMMA2),
    "mistral": Family(
        TokenizerSpec(
            class_name="LlamaTokenizer", style="llama", add_bos=True,
            specials=("<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]",
                      "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]"),
            roles={"bos_token": "<s>", "eos_token": "</s>", "pad_token": None, "unk_token": "<unk>"}),
        MISTRAL),
    "phi3": Family(
        TokenizerSpec(  # no bos added: Phi-3's tokenizer_config.json says add_bos_token false
            class_name="LlamaTokenizer", style="llama",
            specials=("<unk>", "<s>", "</s>", "<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>"),
            roles={"bos_token": "<s>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                   "unk_token": "<unk>"}),
        PHI3),
    "qwen3_moe": Family(QWEN_TOKENIZER, CHATML),
    "mixtral": Family(
        TokenizerSpec(
            class_name="LlamaTokenizer", style="llama", add_bos=True, specials=("<unk>", "<s>", "</s>"),
            roles={"bos_token": "<s>", "eos_token": "</s>", "pad_token": None, "unk_token": "<unk>"}),
        MIXTRAL),
    "deepseek_v3": Family(
        TokenizerSpec(  # the hub names LlamaTokenizerFast over a byte-level BPE; the plain fast class keeps that pipeline in every release
            class_name="PreTrainedTokenizerFast", style="qwen", add_bos=True,
            specials=("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>",
                      "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"),
            roles={"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>",
                   "pad_token": "<｜▁pad▁｜>", "unk_token": None},
            model_input_names=LLAMA3_INPUTS),
        DEEPSEEK_V3),
    "olmoe": Family(
        TokenizerSpec(
            class_name="GPTNeoXTokenizer", style="gpt2",
            specials=("<|endoftext|>", "<|padding|>", "<|user|>", "<|assistant|>", "<|system|>"),
            roles={"bos_token": None, "eos_token": "<|endoftext|>", "pad_token": "<|padding|>", "unk_token": None},
            config_bos="<|endoftext|>"),
        OLMOE),
    "gpt_oss": Family(
        TokenizerSpec(
            class_name="PreTrainedTokenizerFast", style="qwen",
            specials=("<|startoftext|>", "<|endoftext|>", "<|return|>", "<|start|>", "<|message|>", "<|end|>",
                      "<|channel|>", "<|constrain|>", "<|call|>"),
            roles={"bos_token": "<|startoftext|>", "eos_token": "<|return|>", "pad_token": "<|endoftext|>", "unk_token": None},
            model_input_names=LLAMA3_INPUTS),
        GPT_OSS),
    "idefics3": Family(
        TokenizerSpec(
            class_name="PreTrainedTokenizerFast", style="qwen", add_bos=True,
            specials=("<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>",
                      "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>"),
            roles={"bos_token": "<|begin_of_text|>", "eos_token": "<end_of_utterance>",
                   "pad_token": "<|reserved_special_token_0|>", "unk_token": None},
            model_input_names=LLAMA3_INPUTS),
        IDEFICS3, processors.idefics3),
    "mllama": Family(
        TokenizerSpec(
            class_name="PreTrainedTokenizerFast", style="qwen", add_bos=True,
            specials=("<|image|>", "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                      "<|eot_id|>", "<|finetune_right_pad_id|>", "<|python_tag|>"),
            roles=LLAMA3_ROLES, model_input_names=LLAMA3_INPUTS),
        MLLAMA, processors.mllama),
    "internvl": Family(
        TokenizerSpec(
            class_name="Qwen2Tokenizer", style="qwen",
            specials=("<IMG_CONTEXT>", "<img>", "</img>", "<video>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"),
            roles={"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": None},
            extra_special_tokens={"context_image_token": "<IMG_CONTEXT>", "start_image_token": "<img>",
                                  "end_image_token": "</img>", "video_token": "<video>"},
            config_bos="<|endoftext|>"),
        INTERNVL, processors.internvl),
}
"""model_type -> family; the keys are the `recipe.model_type`s that can be built."""
