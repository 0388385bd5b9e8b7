"""Which vocabulary entries read as text: the tokens salient sources and pattern inputs are
drawn from. Not special, not an unused ``<…>`` slot, no control or replacement character
(byte-fallback pieces decode to U+FFFD), not blank."""

from __future__ import annotations

import re

UNREADABLE = re.compile(r"^<[^<>\s]+>$|[\x00-\x08\x0b-\x1f\x7f\ufffd]")


def special_ids(tokenizer: object) -> set[int]:
    return set(getattr(tokenizer, "all_special_ids", []) or [])


def readable(token_id: int, text: str, special: set[int]) -> bool:
    """``text`` is ``token_id`` decoded alone."""
    return token_id not in special and bool(text.strip()) and not UNREADABLE.search(text)
