"""Making raw text (exception messages, config values) safe and short for each output format."""

from __future__ import annotations

import html
import re

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~])")
_XML_INVALID = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def shorten(text: str, limit: int) -> str:
    """Cut to `limit` characters and say so, pointing at where the full text is."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [cut: {len(text)} chars; full text in report.json]"


def md_inline(text: str, limit: int) -> str:
    """One line of Markdown that shows `text` literally: no HTML, no table breaks, no emphasis."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(shorten(" ".join(text.split()), limit), quote=False))


def xml_text(text: str) -> str:
    """Replace characters XML 1.0 cannot hold (NUL, terminal colour escapes) so JUnit stays parseable."""
    return _XML_INVALID.sub("\ufffd", text)


ROUTES_PREFIX = "no route loaded a usable model:"
"""How loader/errors.py's LoadFailed (`smart` and other fallback chains) opens its message, before
one line per route; those routes' errors are their own strategies' rows and causes."""


def brief(message: str) -> str:
    """A fallback chain's message without each route's error (each is listed under its own route)."""
    if not message.startswith(ROUTES_PREFIX):
        return message
    routes = [line.strip().split(": ", 1)[0] for line in message.splitlines()[1:] if line.strip()]
    return f"no route loaded a usable model (tried {', '.join(routes)}; each route's error is in the cell's details)"
