"""One `from_pretrained` call for every release: keyword arguments translated for the installed one.

Training code is written against one release; `smart` lets the same call work on all of them:
- `dtype` (4.56 and later) and `torch_dtype` (earlier; deprecated since) are renamed to the one
  the installed release reads: before 4.56 a `dtype=` reaches the model's `__init__` and fails.
- A keyword that is a setting of the model's config rather than of loading (`use_cache`,
  `output_hidden_states`, ...) is set on the config, top level and text config both, and the config
  is passed in: `from_pretrained` only hands such a keyword to the config when the top-level config
  has that attribute, so for a VLM whose `use_cache` lives in `text_config` (Qwen2.5-VL from 4.52)
  it reached the model's `__init__` and failed.
Each translation is recorded, so a report can say what was changed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

DTYPE_KEYWORD_SINCE = "4.56"
"""The release whose `from_pretrained` reads `dtype`; before it, only `torch_dtype`."""

LOADING_KEYWORDS = frozenset({
    "attn_implementation", "cache_dir", "config", "device_map", "dtype", "force_download", "ignore_mismatched_sizes",
    "key_mapping", "local_files_only", "low_cpu_mem_usage", "max_memory", "offload_buffers", "offload_folder",
    "offload_state_dict", "output_loading_info", "proxies", "quantization_config", "revision", "subfolder", "token",
    "torch_dtype", "tp_plan", "tp_size", "trust_remote_code", "use_safetensors", "variant", "weights_only",
})
"""Keywords `from_pretrained` itself reads (across 4.49-5.x); everything else is a config setting or a model argument."""


def dtype_keyword(version: str) -> str:
    """`dtype` or `torch_dtype`: the name the installed release's `from_pretrained` reads."""
    from packaging.version import Version

    return "dtype" if Version(version) >= Version(DTYPE_KEYWORD_SINCE) else "torch_dtype"


@dataclass
class Translation:
    """The keywords to pass, the config to pass them with, and what was changed (for the result)."""

    kwargs: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _config_parts(config: Any) -> list[Any]:
    """The top-level config and its text config (the same object for text models)."""
    parts = [config]
    getter = getattr(config, "get_text_config", None)
    text = getter() if getter is not None else getattr(config, "text_config", None)
    if text is not None and text is not config:
        parts.append(text)
    return parts


def _is_config_setting(config: Any, name: str) -> bool:
    return any(name in vars(part) or hasattr(type(part), name) for part in _config_parts(config))


def translate(kwargs: dict[str, Any], config: Any, version: str) -> Translation:
    """`kwargs` rewritten for transformers `version`; `config` is the checkpoint's (not modified)."""
    out = dict(kwargs)
    notes: list[str] = []
    wanted = dtype_keyword(version)
    other = "torch_dtype" if wanted == "dtype" else "dtype"
    if other in out:
        value = out.pop(other)
        if wanted in out:
            notes.append(f"{other}={value!r} dropped: {wanted}={out[wanted]!r} given too ({version} reads {wanted})")
        else:
            out[wanted] = value
            notes.append(f"{other} -> {wanted} (transformers {version} reads {wanted})")
    settings = {k: v for k, v in out.items() if k not in LOADING_KEYWORDS and _is_config_setting(config, k)}
    if settings and "config" not in out:
        config = copy.deepcopy(config)
        for name, value in settings.items():
            for part in _config_parts(config):
                setattr(part, name, value)
            del out[name]
            notes.append(f"{name}={value!r} set on the config (and its text config), not passed to the model's __init__")
        out["config"] = config
    return Translation(out, notes)
