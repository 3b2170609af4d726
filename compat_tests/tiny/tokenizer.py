"""A tiny tokenizer per family, made in memory: BPE merges learnt from a fixed word list.

The merges are learnt here (not by `tokenizers`' trainer) so that every release and every
`tokenizers` version gets the same vocabulary. Ids: learnt tokens from 0, reserved fillers up to
`SPECIAL_BASE`, then the family's special and image tokens, so plain text never yields them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

SPECIAL_BASE = 990
"""First id of the special tokens; recipes put their image/vision token ids at 990 and above."""

WORDS = (
    "the a an and or of to in on at for with from by is are was be this that it its as not no yes "
    "what which who how why where when there here one two three four five six seven eight nine ten "
    "red green blue yellow black white gray brown orange purple pink color colors light dark bright "
    "picture image photo scene shows show describe look see small large big little tall short round "
    "square circle box line lines left right top bottom middle center corner side edge background "
    "cat dog bird fish horse cow tree trees flower grass sky cloud sun moon star water river sea "
    "house road car bus train boat street city room table chair door window wall floor book cup "
    "man woman child people person hand face eye eyes head hair answer question count many much "
    "some all each every more most less few first last next number numbers word words text letter "
    "please tell me you your we our they them he she his her i my can could would should will do "
    "does did has have had make made give write say said think find quick lazy jumps over fox "
    "hello world good bad new old same other different between under above near far inside outside "
    "user assistant system model User Assistant USER ASSISTANT"
).split()
"""Training words: the fixed prompts of `inputs.py` and the chat templates' role names use only these."""

PUNCTUATION = tuple(".,:;?!'\"()-0123456789\n")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def _learn_merges(words: list[list[str]], budget: int) -> list[tuple[str, str]]:
    """Greedy BPE: merge the most frequent adjacent pair (ties: smallest pair) `budget` times at most."""
    merges: list[tuple[str, str]] = []
    words = [list(w) for w in words]
    while len(merges) < budget:
        pairs = Counter((a, b) for w in words for a, b in zip(w, w[1:]))
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        for w in words:
            i = 0
            while i < len(w) - 1:
                if (w[i], w[i + 1]) == best:
                    w[i : i + 2] = [w[i] + w[i + 1]]
                i += 1
    return merges


@dataclass(frozen=True)
class TokenizerSpec:
    """A family's tokenizer: its class, pipeline style, special tokens (ids 990+ in order) and roles."""

    class_name: str
    """Class in `transformers` the real checkpoint names (the fast one is used where both exist)."""
    style: str
    """Pipeline of that class: `qwen`, `gpt2` (byte-level BPE), `gemma`, `llama` (sentencepiece-like BPE)."""
    specials: tuple[str, ...]
    """Special tokens, given ids 990, 991, ... in this order."""
    roles: dict[str, str | None]
    """bos_token, eos_token, pad_token, unk_token (mask_token) -> token; None: the family has none."""
    extra_special_tokens: dict[str, str] = field(default_factory=dict)
    """Named tokens processors read from the tokenizer (`tokenizer.image_token`, `boi_token`)."""
    add_bos: bool = False
    """The tokenizer prepends bos to every sequence (Llama 3, Llama 2, Gemma)."""
    config_bos: str | None = None
    """The model config's bos where the tokenizer has none (Qwen configs name <|endoftext|>)."""
    model_input_names: tuple[str, ...] | None = None
    """What the tokenizer returns, where the checkpoint's tokenizer_config.json names it (a plain
    PreTrainedTokenizerFast also returns token_type_ids, which Llama 3 checkpoints turn off)."""

    def token_ids(self) -> dict[str, int]:
        return {token: SPECIAL_BASE + i for i, token in enumerate(self.specials)}


def _alphabet_and_words(style: str) -> tuple[list[str], list[list[str]]]:
    """Base symbols and the training words split into them, as this style's pipeline sees text."""
    items = [*WORDS, *(" " + w for w in WORDS), *PUNCTUATION, " "]
    if style in ("qwen", "gpt2"):
        table = _bytes_to_unicode()
        alphabet = [table[b] for b in range(256)]
        words = [[table[b] for b in item.encode()] for item in items]
    else:
        chars = sorted({c for item in items for c in item.replace(" ", "▁")})
        alphabet = [f"<0x{b:02X}>" for b in range(256)] + chars
        words = [list(item.replace(" ", "▁")) for item in items]
    return alphabet, words


def _pipeline(tok: Tokenizer, style: str) -> None:
    """Normaliser, pre-tokenizer and decoder exactly as the family's transformers class builds them."""
    if style == "qwen":
        split = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
             pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.decoder = decoders.ByteLevel()
    elif style == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
    elif style == "gemma":
        tok.normalizer = normalizers.Replace(" ", "▁")
        tok.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    elif style == "llama":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(content=" ", left=1)])
    else:
        raise ValueError(f"unknown tokenizer style {style!r}")


def backend_tokenizer(spec: TokenizerSpec) -> Tokenizer:
    """The `tokenizers.Tokenizer`: learnt BPE, fillers to id 989, specials at 990+."""
    alphabet, words = _alphabet_and_words(spec.style)
    merges = _learn_merges(words, budget=SPECIAL_BASE - len(alphabet))
    vocab: dict[str, int] = {}
    for token in [*alphabet, *(a + b for a, b in merges)]:
        vocab.setdefault(token, len(vocab))
    for i in range(SPECIAL_BASE - len(vocab)):
        vocab[f"<|reserved_{i}|>"] = len(vocab)
    vocab.update(spec.token_ids())
    sentencepiece_like = spec.style in ("gemma", "llama")
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=spec.roles.get("unk_token") if sentencepiece_like else None,
                               byte_fallback=sentencepiece_like, fuse_unk=sentencepiece_like))
    _pipeline(tok, spec.style)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in spec.specials])
    bos = spec.roles.get("bos_token")
    if spec.add_bos and bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, spec.token_ids()[bos])])
    return tok


def build_tokenizer(spec: TokenizerSpec, chat_template: str | None) -> Any:
    """The family's own transformers tokenizer class around `backend_tokenizer(spec)`."""
    import transformers

    cls = getattr(transformers, spec.class_name + "Fast", None) or getattr(transformers, spec.class_name)
    kwargs: dict[str, Any] = {k: v for k, v in spec.roles.items()}
    if spec.extra_special_tokens:
        kwargs["extra_special_tokens"] = dict(spec.extra_special_tokens)
    if spec.model_input_names:
        kwargs["model_input_names"] = list(spec.model_input_names)
    if spec.style in ("gemma", "llama"):
        kwargs["add_bos_token"] = spec.add_bos
    if spec.style == "llama":
        kwargs["legacy"] = False
    tokenizer = cls(tokenizer_object=backend_tokenizer(spec), **kwargs)
    tokenizer.chat_template = chat_template
    return tokenizer
