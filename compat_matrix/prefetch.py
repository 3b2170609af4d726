"""Download `source: hub` checkpoints at their pinned revision, where the network allows.

The matrix itself never downloads: it reads the Hugging Face cache with `local_files_only`, so
the nightly prefetches here first and then runs with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import sys

from compat_matrix.spec import ModelEntry

ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.py", "*.jinja", "tokenizer*"]
"""Config, weights, tokenizer/processor files and remote code; no .bin/.pt duplicates of the weights."""


def prefetch(entries: list[ModelEntry]) -> int:
    """Snapshot every hub entry; 0 when all arrived, 1 otherwise (each failure printed)."""
    from huggingface_hub import snapshot_download

    failures = 0
    for entry in entries:
        if entry.source != "hub":
            continue
        try:
            path = snapshot_download(entry.hub_id, revision=entry.revision, allow_patterns=ALLOW_PATTERNS)
        except Exception as exc:
            failures += 1
            print(f"{entry.key}: {entry.hub_id}@{entry.revision}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        print(f"{entry.key}: {entry.hub_id}@{entry.revision} -> {path}")
    return 1 if failures else 0
