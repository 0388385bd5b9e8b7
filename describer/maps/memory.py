"""Giving freed memory back to the operating system between stages of an analysis.

glibc's allocator serves a freed block's pages to the next allocation but keeps them resident:
after a stage drops a model's blocks (hundreds of MB of tensors), the process' resident memory
stays where it was. ``trim`` asks glibc (``malloc_trim``) to return every free page; elsewhere
(macOS, musl) it does nothing."""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache


@cache
def _malloc_trim():  # noqa: ANN202  (a ctypes function, or None)
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def trim() -> None:
    """Return the allocator's free pages to the system (cheap: milliseconds)."""
    fn = _malloc_trim()
    if fn is not None:
        fn(0)
