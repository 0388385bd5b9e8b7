"""Keeping the process' resident memory to what an analysis holds, not what it once held.

glibc's allocator serves requests below its mmap threshold from the heap, and raises that
threshold (up to 32 MB) each time a mapped block is freed. A streamed analysis frees blocks of
tens of MB all the time (a layer's matrices, a batch's hidden states, a chunk's logits), so after
a while most of its buffers come from the heap, whose freed pages stay resident and fragmented:
on a 28-layer Qwen2.5-7B shape the heap held 1.5 GB of free but resident memory. ``bound_heap``
fixes the threshold low, so that every large buffer is mapped on its own and unmapped when freed;
``trim`` hands back the heap's free pages between stages. Elsewhere (macOS, musl) both do nothing.

A small model needs neither: its layers' buffers are small enough to reuse, so trimming after
every layer only makes the next layer fault the same pages in again (``between_layers`` trims
only a bounded heap). A fixed 32 MB threshold for small models (a "warm heap") was tried: it
cut gemma-3-270m's page faults too, but its streamed peak then reached 1.51 GiB in one run of
five, over the 1.5 GB target (docs/analyzer.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

MMAP_THRESHOLD = 1 << 20
"""Buffers from this size up get their own mapping (glibc's default starts at 128 KB and floats)."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_bounded = False
"""Whether ``bound_heap`` set the threshold in this process."""


@cache
def _libc():  # noqa: ANN202  (a ctypes library, or None)
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
        return lib if lib is not None and hasattr(lib, "malloc_trim") and hasattr(lib, "mallopt") else None
    except OSError:
        return None


def trim() -> None:
    """Return the allocator's free pages to the system (cheap: milliseconds)."""
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)


def between_layers() -> None:
    """``trim`` where the heap is bounded (a big model: a layer's buffers are large and must go
    back); otherwise the next layer reuses them, and the stage's end trims."""
    if _bounded:
        trim()


def bound_heap() -> bool:
    """Fix glibc's mmap threshold at ``MMAP_THRESHOLD`` (and trim the heap's top past twice
    that) for the rest of the process; True where it was set. Setting it stops the dynamic
    raising, so a large tensor's memory goes back to the system as soon as it is freed."""
    global _bounded
    lib = _libc()
    if not _bounded and lib is not None:
        _bounded = bool(lib.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            lib.mallopt(_M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD)
        )
    return _bounded
