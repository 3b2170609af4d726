"""Tiny tokenizers: every family agrees with its recipes' token ids, and plain text stays below 990."""

from __future__ import annotations

import pytest

from compat_matrix.spec.schema import ModelEntry
from compat_matrix.spec.validate import load_matrix
from compat_tests.tiny.families import FAMILIES
from compat_tests.tiny.inputs import DEFAULT_IMAGE_PROMPT, DEFAULT_PROMPT, PROMPTS
from compat_tests.tiny.tokenizer import SPECIAL_BASE, _learn_merges, backend_tokenizer

TINY = [m for m in load_matrix(check_model_types=False).models if m.source == "tiny"]


@pytest.mark.parametrize("entry", TINY, ids=[m.key for m in TINY])
def test_every_tiny_model_type_has_a_family_with_its_token_ids(entry: ModelEntry) -> None:
    assert entry.recipe is not None
    assert entry.recipe.model_type in FAMILIES, "add the model_type to compat_tests/tiny/families.py"
    spec = FAMILIES[entry.recipe.model_type].tokenizer
    vocab_size = entry.recipe.config.get("vocab_size") or entry.recipe.config["text_config"]["vocab_size"]
    ids = spec.token_ids()
    assert max(ids.values()) < vocab_size
    for name in ("image_token_id", "image_token_index", "video_token_id", "vision_start_token_id",
                 "vision_end_token_id", "boi_token_index", "eoi_token_index"):
        if name in entry.recipe.config:
            assert entry.recipe.config[name] in ids.values(), name


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_plain_text_never_yields_special_ids(model_type: str) -> None:
    spec = FAMILIES[model_type].tokenizer
    tokenizer = backend_tokenizer(spec)
    assert tokenizer.get_vocab_size() == SPECIAL_BASE + len(spec.specials)
    assert all(token in spec.specials for token in spec.roles.values() if token)
    for text in (DEFAULT_PROMPT, DEFAULT_IMAGE_PROMPT, *PROMPTS, "Zebra 42!"):
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        assert ids and max(ids) < SPECIAL_BASE, text
        assert tokenizer.decode(ids).strip() == text


def test_known_words_are_single_tokens() -> None:
    """Short inputs keep forward passes in milliseconds."""
    tokenizer = backend_tokenizer(FAMILIES["qwen2"].tokenizer)
    assert len(tokenizer.encode(DEFAULT_PROMPT).ids) == len(DEFAULT_PROMPT.split())


def test_merges_break_ties_by_the_smallest_pair() -> None:
    assert _learn_merges([["c", "d"], ["a", "b"]], budget=1) == [("a", "b")]
    words = [["c", "d"], ["c", "d"], ["a", "b", "c"]]
    assert _learn_merges(words, budget=10) == [("c", "d"), ("a", "b"), ("ab", "c")]


FAST_FAMILIES = sorted(k for k, f in FAMILIES.items() if f.tokenizer.class_name == "PreTrainedTokenizerFast")


@pytest.mark.parametrize("model_type", FAST_FAMILIES)
def test_plain_fast_tokenizers_return_what_their_hub_checkpoints_do(model_type: str) -> None:
    """A plain PreTrainedTokenizerFast returns token_type_ids unless tokenizer_config.json names
    model_input_names; every hub checkpoint these families copy (Llama 3, DeepSeek-V3, gpt-oss,
    Idefics3, Mllama) names input_ids and attention_mask only. Planted: the Llama family without it
    returned token_type_ids, and TRL's `generate(**prompt_inputs)` failed on them in 4.55.0
    ("model_kwargs are not used by the model: ['token_type_ids']"), a failure of the tiny tokenizer."""
    from compat_tests.tiny.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(FAMILIES[model_type].tokenizer, chat_template=None)
    assert sorted(tokenizer(DEFAULT_PROMPT)) == ["attention_mask", "input_ids"]
