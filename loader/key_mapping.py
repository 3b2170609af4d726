"""The installed release's own renaming of checkpoint keys to a model's parameter names.

5.x: `get_model_conversion_mapping` (renamings and converters, fused experts included) through
`rename_source_key`, as `from_pretrained` does. 4.x: the class's `_fix_state_dict_key_on_load`
(gamma/beta), then its `_checkpoint_conversion_mapping` (or the `key_mapping` the caller passed),
first match only. Both then add or strip `base_model_prefix` where that names a model key.
"""

from __future__ import annotations

import re
from typing import Any, Callable


def _base_prefix(name: str, prefix: str, model_keys: set[str]) -> str:
    """Strip or add the base-model prefix when only then `name` is a key of the model."""
    if not prefix or name in model_keys:
        return name
    if name.startswith(prefix + ".") and name[len(prefix) + 1:] in model_keys:
        return name[len(prefix) + 1:]
    if f"{prefix}.{name}" in model_keys:
        return f"{prefix}.{name}"
    return name


def _renamer_5x(model: Any, key_mapping: dict[str, str] | None, model_keys: set[str]) -> Callable[[str], str] | None:
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key
    except ImportError:
        return None
    transforms = get_model_conversion_mapping(model, key_mapping)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    present = dict.fromkeys(model_keys, True)
    prefix = getattr(model, "base_model_prefix", "") or None

    def rename(key: str) -> str:
        renamed = str(rename_source_key(key, renamings, converters, prefix, present)[0])
        if renamed not in present and key in present:  # as from_pretrained: the key needed no renaming
            renamed = str(rename_source_key(key, [], [], prefix, present)[0])
        return renamed

    return rename


def _renamer_4x(model: Any, key_mapping: dict[str, str] | None, model_keys: set[str]) -> Callable[[str], str]:
    legacy = getattr(model, "_fix_state_dict_key_on_load", None)
    mapping = key_mapping or getattr(model, "_checkpoint_conversion_mapping", None) or {}
    prefix = getattr(model, "base_model_prefix", "") or ""

    def rename(key: str) -> str:
        renamed = legacy(key)[0] if callable(legacy) else key
        for pattern, replacement in mapping.items():
            renamed, count = re.subn(pattern, replacement, renamed)
            if count:
                break
        return _base_prefix(renamed, prefix, model_keys)

    return rename


def key_renamer(model: Any, model_keys: set[str], key_mapping: dict[str, str] | None = None) -> Callable[[str], str]:
    """checkpoint key -> the model key this release loads it into (the key itself where nothing applies)."""
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):  # a user's own module: no mapping of the release's applies
        return lambda key: key
    return _renamer_5x(model, key_mapping, model_keys) or _renamer_4x(model, key_mapping, model_keys)
