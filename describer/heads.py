"""One way to write a head, everywhere: ``L7.H0`` (layer 7, head 0), in the web pages and their
URLs, the API, the report and the terminal. ``parse_head`` also reads the short ``7.0`` that
older links, scripts and stores used."""

from __future__ import annotations

import re

from describer.errors import InvalidValue

HEAD = re.compile(r"[Ll]?(\d{1,6})\.[Hh]?(\d{1,6})")


def head_name(layer: int, head: int) -> str:
    return f"L{layer}.H{head}"


def parse_head(text: str) -> tuple[int, int]:
    """``"L3.H7"`` (or ``"l3.h7"``, ``"3.7"``) -> (3, 7); anything else: ``InvalidValue``."""
    match = HEAD.fullmatch(text.strip())
    if match is None:
        raise InvalidValue(f"{text.strip()!r} is not a head: write L<layer>.H<head>, e.g. L3.H7")
    return int(match[1]), int(match[2])
