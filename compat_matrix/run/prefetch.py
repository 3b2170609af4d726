"""Download `source: hub` checkpoints at their pinned revision, where the network allows.

The matrix itself never downloads: it reads the Hugging Face cache with `local_files_only`, so
the nightly prefetches here first and then runs with HF_HUB_OFFLINE=1. The hub's own client
waits without a time limit on its first call, so the revision is looked up here first, with a
timeout; busy answers (429, 5xx) and timeouts are retried with a growing wait, and an entry that
still cannot be had leaves a note (`layout.hub_note`) whose reason its cells give when `skipped`.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass

from compat_matrix.spec.layout import hub_note
from compat_matrix.spec.schema import ModelEntry

ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.py", "*.jinja", "tokenizer*"]
"""Config, weights, tokenizer/processor files and remote code; no .bin/.pt duplicates of the weights."""

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
"""Answers that mean "try again later"."""


@dataclass(frozen=True)
class Patience:
    """How long to wait for the hub: per request, how many tries, the first wait between them."""

    timeout_s: float = 10.0
    tries: int = 3
    wait_s: float = 2.0


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _retryable(exc: BaseException) -> bool:
    """A busy hub or a timeout, anywhere in the exception's chain; not 401/403/404."""
    import requests

    seen: BaseException | None = exc
    while seen is not None:
        if _status(seen) in RETRIED_STATUSES or isinstance(seen, (requests.Timeout, requests.ConnectionError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _why(exc: BaseException) -> str:
    status = _status(exc)
    kind = {401: "gated or private (401): accept its licence on the hub and set HF_TOKEN",
            403: "forbidden (403): this token may not read it",
            404: "not found (404): check hub_id and that the pinned revision exists",
            429: "rate-limited (429)"}.get(status or 0, f"HTTP {status}" if status else type(exc).__name__)
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{kind}: {first}" if first else kind


def _download(entry: ModelEntry, patience: Patience) -> str:
    from huggingface_hub import HfApi, snapshot_download

    HfApi().model_info(entry.hub_id, revision=entry.revision, timeout=patience.timeout_s)
    return snapshot_download(entry.hub_id, revision=entry.revision, allow_patterns=ALLOW_PATTERNS,
                             etag_timeout=patience.timeout_s)


def fetch(entry: ModelEntry, patience: Patience) -> str:
    """The snapshot folder; retried while the hub is busy or slow; the last error otherwise."""
    for attempt in range(1, patience.tries + 1):
        try:
            return _download(entry, patience)
        except Exception as exc:
            if attempt == patience.tries or not _retryable(exc):
                raise
            wait = patience.wait_s * 2 ** (attempt - 1)
            print(f"{entry.key}: {_why(exc)}; try {attempt} of {patience.tries}, again in {wait:g} s", file=sys.stderr)
            time.sleep(wait)
    raise AssertionError("unreachable: the last try returns or raises")


def prefetch(entries: list[ModelEntry], patience: Patience = Patience()) -> int:
    """Snapshot every hub entry; 0 when all arrived, 1 otherwise (each failure printed and noted)."""
    failures = 0
    for entry in entries:
        if entry.source != "hub":
            continue
        note = hub_note(entry.key)
        try:
            path = fetch(entry, patience)
        except Exception as exc:
            failures += 1
            reason = f"{entry.hub_id}@{entry.revision}: {_why(exc)}"
            tried = f" (after {patience.tries} tries)" if _retryable(exc) else ""
            print(f"{entry.key}: skipped: {reason}{tried}", file=sys.stderr)
            note.parent.mkdir(parents=True, exist_ok=True)
            note.write_text(json.dumps({"status": "skipped", "reason": reason + tried}))
            continue
        note.unlink(missing_ok=True)
        print(f"{entry.key}: {entry.hub_id}@{entry.revision} -> {path}")
    return 1 if failures else 0
