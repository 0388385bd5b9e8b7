"""Keeping the process' resident memory to what an analysis holds, not what it once held.

glibc's allocator serves requests below its mmap threshold from the heap, and raises that
threshold (up to 32 MB) each time a mapped block is freed. A streamed analysis frees blocks of
tens of MB all the time (a layer's matrices, a batch's hidden states, a chunk's logits), so after
a while most of its buffers come from the heap, whose freed pages stay resident and fragmented:
on a 28-layer Qwen2.5-7B shape the heap held 1.5 GB of free but resident memory. ``bound_heap``
fixes the threshold low, so that every large buffer is mapped on its own and unmapped when freed;
``trim`` hands back the heap's free pages between stages. Elsewhere (macOS, musl) both do nothing.

A small model needs the opposite. With the floating threshold, which buffers are mapped depends
on what was freed before (a streamed gemma-3-270m frees few large blocks early, a loaded one
many), and every mapped buffer costs fresh page faults each time it is allocated: under
``/usr/bin/time -v`` a streamed gemma-3-270m analysis took 17.5 M minor faults and 34 s of
system time, the same analysis of the loaded model 4.1 M and 8 s. ``warm_heap`` fixes the threshold at glibc's ceiling
(32 MB) and lets the heap keep up to ``WARM_TRIM_THRESHOLD`` of free memory at its top, so a
chunk's buffers are reused from one chunk to the next instead of being mapped and faulted anew;
``trim`` still returns it all between stages, and ``between_layers`` only where the heap is
bounded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

MMAP_THRESHOLD = 1 << 20
"""Buffers from this size up get their own mapping (glibc's default starts at 128 KB and floats)."""
WARM_MMAP_THRESHOLD = 32 << 20
"""glibc's largest threshold on 64-bit systems (``DEFAULT_MMAP_THRESHOLD_MAX``)."""
WARM_TRIM_THRESHOLD = 2 * WARM_MMAP_THRESHOLD
"""Free memory the heap may keep at its top under ``warm_heap`` before it shrinks by itself:
twice the threshold, as glibc pairs them when its threshold floats. On gemma-3-270m 128 MB saved
a few more faults but peaked at 1.46 GiB (against 1.31 with this), 256 MB at 1.40."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_policy: list[str] = []
"""The policy set in this process ("bounded" or "warm"; empty: glibc's own)."""


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
    back); under any other policy the next layer reuses them, and the stage's end trims."""
    if _policy[-1:] == ["bounded"]:
        trim()


def _set(mmap_threshold: int, trim_threshold: int) -> bool:
    lib = _libc()
    if lib is None:
        return False
    return bool(lib.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        lib.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )


def bound_heap() -> bool:
    """Fix glibc's mmap threshold at ``MMAP_THRESHOLD`` (and trim the heap's top past twice
    that) for the rest of the process; True where it was set. Setting it stops the dynamic
    raising, so a large tensor's memory goes back to the system as soon as it is freed."""
    if _policy[-1:] == ["bounded"]:
        return True
    if not _set(MMAP_THRESHOLD, 2 * MMAP_THRESHOLD):
        return False
    _policy.append("bounded")
    return True


def warm_heap() -> bool:
    """Fix glibc's mmap threshold at ``WARM_MMAP_THRESHOLD`` and let the heap keep
    ``WARM_TRIM_THRESHOLD`` free at its top, for a small model's analysis (see the module); True
    where it was set. A process that bounded its heap for a big model keeps that bound."""
    if "bounded" in _policy:
        return False
    if _policy[-1:] == ["warm"]:
        return True
    if not _set(WARM_MMAP_THRESHOLD, WARM_TRIM_THRESHOLD):
        return False
    _policy.append("warm")
    return True
