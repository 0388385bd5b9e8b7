"""Tokens shown faithfully: every character a reader could miss or misread made visible.

A vocabulary token is an exact string: ``" Paris"`` and ``"Paris"`` are different tokens, a
newline or a zero-width joiner is a token of its own, and a right-to-left token reorders the
text around it. ``visible`` is the one rendering used by the web pages, the report and the
terminal: spaces become ``␣``, tabs and newlines their escapes, and every invisible, control,
bidirectional or unassigned character its ``\\uXXXX`` escape. ``escaped`` is the exact form
(a JSON string literal, as the prompts show tokens), for hovers and exports.
"""

from __future__ import annotations

import json
import unicodedata

SPACE = "␣"
"""What a space looks like in a shown token."""

_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", " ": SPACE, "\\": "\\\\"}
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs", "Mn", "Me"})
"""Controls, format characters (zero-width, bidi marks), surrogates, private use, unassigned,
line/paragraph separators, other spaces, and combining marks (escaped only where they would
combine with nothing: at the start of a token)."""


def _shown(ch: str, first: bool) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    category = unicodedata.category(ch)
    if category in _ESCAPED_CATEGORIES and (category not in ("Mn", "Me") or first):
        code = ord(ch)
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    return ch


def visible(token: str) -> str:
    """``" Paris"`` -> ``"␣Paris"``; ``"\\u200b"`` -> ``"\\\\u200b"``; the empty token -> ``"∅"``.

    A backslash is doubled so an escape in the output always means an escaped character."""
    if token == "":
        return "∅"
    return "".join(_shown(ch, n == 0) for n, ch in enumerate(token))


def escaped(token: str) -> str:
    """The exact token as a JSON string literal (ASCII only): ``" Paris"`` -> ``'" Paris"'``."""
    return json.dumps(token, ensure_ascii=True)


def is_rtl(token: str) -> bool:
    """Whether the token has a right-to-left letter (Arabic, Hebrew, …)."""
    return any(unicodedata.bidirectional(ch) in ("R", "AL") for ch in token)


_INVISIBLE = frozenset({"Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def json_literal(token: str) -> str:
    """The token as a JSON string literal that keeps every character readable (how prompts show
    tokens): ``json.dumps`` escapes controls; this also escapes zero-width, bidirectional,
    private-use and unassigned characters and line separators, which would otherwise be invisible
    in a prompt shown to a reader (and reorder it). Other text stays as it is (no ``\\u`` for
    every accent)."""
    text = json.dumps(token, ensure_ascii=False)
    if not any(unicodedata.category(ch) in _INVISIBLE for ch in text):
        return text
    return "".join(
        (f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else json.dumps(ch)[1:-1])
        if unicodedata.category(ch) in _INVISIBLE
        else ch
        for ch in text
    )
