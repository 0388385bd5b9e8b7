"""What every tensor source offers: a model's tensors by name, one at a time, read on demand.

Big models are analysed without loading them: the analysis asks for the few tensors it needs
(a block's attention weights, some embedding rows) and drops them again, so peak memory stays
near the largest single tensor rather than the model. ``rows`` and ``take`` exist because the
embedding and unembedding are the largest tensors of all and are read a chunk of rows at a time.
"""

from __future__ import annotations

import mmap
import os
import threading
from abc import ABC, abstractmethod
from typing import BinaryIO

import numpy as np
import torch
from transformers import PretrainedConfig

from describer.errors import HeadmapsError

GAP_BYTES = 1 << 16
"""``take`` reads through gaps up to this size between wanted rows: one read is cheaper than two."""
MAP_BYTES = 1 << 20
"""``RawFile.view`` maps a range from this size up (below it a read is as cheap)."""
_PAGE = mmap.ALLOCATIONGRANULARITY
"""A mapping starts at a multiple of this (the page size; 64 kB on Windows)."""


class TensorSourceError(HeadmapsError):
    """A tensor that is not there, or a file that cannot be read as what it claims to be."""


class TensorSource(ABC):
    """A model's tensors by name, read one at a time without loading the model."""

    path: str
    """What error messages name: a directory, a file, or ``"<loaded model>"``."""
    config: PretrainedConfig
    """The model's transformers config."""

    @abstractmethod
    def names(self) -> list[str]:
        """Every tensor's name, in the source's own order."""

    def has(self, name: str) -> bool:
        return name in self._name_set()

    @abstractmethod
    def shape(self, name: str) -> tuple[int, ...]: ...

    @abstractmethod
    def stored_dtype(self, name: str) -> str:
        """How the tensor is stored: ``"BF16"``, ``"F32"``, ``"Q4_K"``…"""

    @abstractmethod
    def get(self, name: str) -> torch.Tensor:
        """The whole tensor."""

    @abstractmethod
    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Rows ``[start, stop)`` (along dim 0), reading only those."""

    @abstractmethod
    def take(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        """The rows at ``ids`` (any order, repeats allowed), in ``ids``' order."""

    def close(self) -> None:  # noqa: B027  (sources holding nothing open need not override it)
        """Release open files; the source is unusable afterwards."""

    def find(self, *candidates: str) -> str | None:
        """The first of ``candidates`` present: checkpoints name the same tensor differently."""
        present = self._name_set()
        return next((c for c in candidates if c in present), None)

    def __enter__(self) -> TensorSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    # --- helpers for subclasses ------------------------------------------------------------

    def _name_set(self) -> frozenset[str]:
        cached = getattr(self, "_names_cache", None)
        if cached is None:
            cached = frozenset(self.names())
            self._names_cache = cached
        return cached

    def _missing(self, name: str) -> TensorSourceError:
        return TensorSourceError(f"{self.path}: no tensor {name!r}")

    def _row_range(self, name: str, start: int, stop: int) -> tuple[int, int]:
        """``start``/``stop`` checked against the tensor's rows."""
        shape = self.shape(name)
        if not shape:
            raise TensorSourceError(f"{self.path}: tensor {name!r} is a scalar, it has no rows")
        if not 0 <= start <= stop <= shape[0]:
            raise TensorSourceError(
                f"{self.path}: rows [{start}, {stop}) are out of range for tensor {name!r} with {shape[0]} rows"
            )
        return start, stop

    def _row_ids(self, name: str, ids: torch.Tensor) -> np.ndarray:
        """``ids`` as a 1-D int64 array, checked against the tensor's rows."""
        shape = self.shape(name)
        if not shape:
            raise TensorSourceError(f"{self.path}: tensor {name!r} is a scalar, it has no rows")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise TensorSourceError(f"{self.path}: row ids for {name!r} must be integers, not {ids.dtype}")
        flat = ids.detach().reshape(-1).cpu().numpy().astype(np.int64, copy=False)
        if flat.size and (flat.min() < 0 or flat.max() >= shape[0]):
            bad = int(flat.min()) if flat.min() < 0 else int(flat.max())
            raise TensorSourceError(
                f"{self.path}: row id {bad} is out of range for tensor {name!r} with {shape[0]} rows"
            )
        return flat


def coalesce(ids: np.ndarray, row_bytes: int) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Spans of rows to read for ``ids``, and where each id's row lands in their concatenation.

    Sorted distinct ids are merged into runs, and runs closer than ``GAP_BYTES`` are read as one
    (the rows between are read and dropped): thousands of scattered ids become a few reads.
    """
    if ids.size == 0:
        return [], np.zeros(0, dtype=np.int64)
    unique, inverse = np.unique(ids, return_inverse=True)
    gap_rows = max(1, GAP_BYTES // max(row_bytes, 1))
    breaks = np.nonzero(np.diff(unique) > gap_rows)[0] + 1
    starts = np.concatenate(([0], breaks))
    stops = np.concatenate((breaks, [unique.size]))
    spans: list[tuple[int, int]] = []
    position = np.empty(unique.size, dtype=np.int64)  # unique id -> row in the concatenation
    offset = 0
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        first, last = int(unique[a]), int(unique[b - 1]) + 1
        spans.append((first, last))
        position[a:b] = unique[a:b] - first + offset
        offset += last - first
    return spans, position[inverse.reshape(-1)]


class RawFile:
    """A file read with plain ``pread``-style reads, or one range at a time through its own
    private mapping (``view``), never mapped whole.

    Mapped pages count towards the process's resident memory while they are mapped, so mapping a
    15 GB checkpoint whole can show 15 GB of RSS; a read into a buffer we own, or a mapping of
    just the range in use that goes when its tensor does, keeps RSS at the size of what is in use.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self._file: BinaryIO | None = open(self.path, "rb", buffering=0)  # noqa: SIM115  (closed by close())
        self._lock = threading.Lock()
        self.size = os.fstat(self._file.fileno()).st_size

    def read_into(self, offset: int, out: memoryview) -> None:
        """Fill ``out`` from ``offset``; a short file is an error naming it."""
        if self._file is None:
            raise TensorSourceError(f"{self.path}: read after close")
        view = out.cast("B") if out.format != "B" or out.ndim != 1 else out
        done = 0
        while done < len(view):
            if hasattr(os, "preadv"):
                n = os.preadv(self._file.fileno(), [view[done:]], offset + done)
            else:
                with self._lock:
                    self._file.seek(offset + done)
                    n = self._file.readinto(view[done:]) or 0
            if n == 0:
                raise TensorSourceError(f"{self.path}: file ends at byte {offset + done}, expected more data")
            done += n

    def read(self, offset: int, size: int) -> torch.Tensor:
        """``size`` bytes from ``offset`` as an owned, writable uint8 tensor."""
        out = torch.empty(size, dtype=torch.uint8)
        if size:
            self.read_into(offset, memoryview(out.numpy()))
        return out

    def view(self, offset: int, size: int) -> torch.Tensor:
        """``size`` bytes from ``offset`` as a writable uint8 tensor over a private (copy-on-write)
        mapping of that range alone, unmapped when the tensor and its views are freed.

        A read copies the bytes from the page cache into a fresh buffer, whose pages are then
        faulted in one by one; the mapping shares the page cache's pages (the kernel maps them
        in runs), so a streamed analysis that sweeps the unembedding once per layer, or loads a
        block for every batch of forward passes, stops paying for both. Writes go to private
        copies of the pages touched, never to the file. Below ``MAP_BYTES``, and where the range
        is not all in the file (a mapping past the end faults on access), it reads instead."""
        if self._file is None:
            raise TensorSourceError(f"{self.path}: read after close")
        fd = self._file.fileno()
        if size < MAP_BYTES or offset + size > os.fstat(fd).st_size:
            return self.read(offset, size)
        start = offset - offset % _PAGE
        mapped = mmap.mmap(fd, offset + size - start, access=mmap.ACCESS_COPY, offset=start)
        # The tensor holds the mapping (through the buffer protocol) until it is freed.
        return torch.frombuffer(mapped, dtype=torch.uint8)[offset - start :]

    def read_spans(self, offset: int, row_bytes: int, spans: list[tuple[int, int]]) -> torch.Tensor:
        """The rows of every span, concatenated, as a uint8 tensor ``[rows, row_bytes]``."""
        total = sum(b - a for a, b in spans)
        out = torch.empty((total, row_bytes), dtype=torch.uint8)
        flat = memoryview(out.numpy().reshape(-1))
        at = 0
        for a, b in spans:
            n = (b - a) * row_bytes
            if n:
                self.read_into(offset + a * row_bytes, flat[at : at + n])
            at += n
        return out

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
