"""A ``[n, d]`` float32 matrix written once by row ranges and read back by rows: in memory when
it is small, else in an unlinked temporary file read with ``pread`` (no memory map, so pages
read back never count towards the process's resident memory)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

MEMORY_BYTES = 256 << 20
"""Matrices up to this size stay in memory. A whole-vocabulary source representation is bigger
for any real model (gemma-3-270m's 262k × 640 floats: 671 MB), so it goes to the file: read
back by ``pread`` from the page cache it costs a few seconds over an analysis and keeps the
analysis' resident memory to its blocks and chunks."""


def _pread_rows(file: object, row_bytes: int, d: int, start: int, stop: int) -> np.ndarray:
    size = (stop - start) * row_bytes
    data = os.pread(file.fileno(), size, start * row_bytes)  # type: ignore[attr-defined]
    if len(data) != size:
        raise OSError(f"row cache: short read ({len(data)} of {size} bytes)")
    return np.frombuffer(data, dtype=np.float32).reshape(stop - start, d)


def _pwrite_rows(file: object, row_bytes: int, start: int, rows: Tensor) -> None:
    data = rows.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    os.pwrite(file.fileno(), data, start * row_bytes)  # type: ignore[attr-defined]


def _gather(read_range: Callable[[int, int], np.ndarray], ids: Tensor, d: int) -> Tensor:
    """Rows ``ids`` (any order, repeats allowed) read with one ``read_range`` per run of
    consecutive ids."""
    wanted = ids.cpu().long()
    order = torch.unique(wanted)
    out = np.empty((len(order), d), dtype=np.float32)
    values = order.tolist()
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        out[i : j + 1] = read_range(values[i], values[j] + 1)
        i = j + 1
    return torch.from_numpy(out)[torch.searchsorted(order, wanted)]


class RowCache:
    def __init__(
        self,
        n: int,
        d: int,
        device: torch.device,
        *,
        memory_bytes: int = MEMORY_BYTES,
        directory: str | None = None,
    ) -> None:
        self.n, self.d, self.device = n, d, device
        self._row_bytes = d * 4
        self._memory: Tensor | None = None
        self._file = None
        if n * self._row_bytes <= memory_bytes:
            self._memory = torch.empty(n, d, device=device)
        else:
            # Closed by ``close`` (or with the process): it lives as long as the analysis.
            self._file = tempfile.TemporaryFile(dir=directory, prefix="headmaps-rows-")  # noqa: SIM115

    @property
    def on_disk(self) -> bool:
        return self._file is not None

    def write(self, start: int, rows: Tensor) -> None:
        if self._memory is not None:
            self._memory[start : start + len(rows)] = rows
            return
        _pwrite_rows(self._file, self._row_bytes, start, rows)

    def _read_range(self, start: int, stop: int) -> np.ndarray:
        return _pread_rows(self._file, self._row_bytes, self.d, start, stop)

    def read(self, ids: Tensor | slice) -> Tensor:
        """Rows ``ids`` (a slice, or ids in any order with repeats) on the cache's device."""
        if self._memory is not None:
            return self._memory[ids]
        if isinstance(ids, slice):
            start, stop = ids.start or 0, min(ids.stop, self.n)
            return torch.from_numpy(self._read_range(start, stop).copy()).to(self.device)
        return _gather(self._read_range, ids, self.d).to(self.device)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._memory = None


class RowStore:
    """Rows of width ``d`` appended in batches and read back by the slots ``append`` returned:
    in memory up to ``memory_bytes``, then (all of them) in an unlinked temporary file, so the
    rows kept for a run cost disk rather than resident memory however many there are."""

    def __init__(self, d: int, device: torch.device, *, memory_bytes: int | None = None) -> None:
        self.d, self.device = d, device
        self.memory_bytes = MEMORY_BYTES if memory_bytes is None else memory_bytes
        self._row_bytes = d * 4
        self._memory: Tensor | None = torch.empty(0, d, device=device)
        self._file = None
        self.n = 0

    @property
    def on_disk(self) -> bool:
        return self._file is not None

    def append(self, rows: Tensor) -> range:
        """Store ``rows`` (``[m, d]``); their slots."""
        start, stop = self.n, self.n + len(rows)
        if self._memory is not None and stop * self._row_bytes > self.memory_bytes:
            self._file = tempfile.TemporaryFile(prefix="headmaps-rows-")  # noqa: SIM115  (closed by close)
            _pwrite_rows(self._file, self._row_bytes, 0, self._memory[: self.n])
            self._memory = None
        if self._memory is not None:
            if stop > len(self._memory):  # grow by doubling, within the budget
                size = min(max(stop, 2 * len(self._memory)), self.memory_bytes // self._row_bytes)
                grown = torch.empty(size, self.d, device=self.device)
                grown[: self.n] = self._memory[: self.n]
                self._memory = grown
            self._memory[start:stop] = rows.to(self.device, torch.float32)
        else:
            _pwrite_rows(self._file, self._row_bytes, start, rows)
        self.n = stop
        return range(start, stop)

    def read(self, slots: Tensor) -> Tensor:
        """The rows in ``slots`` (any order, repeats allowed), ``[len(slots), d]``."""
        if self._memory is not None:
            return self._memory[slots.to(self.device)]

        def read_range(start: int, stop: int) -> np.ndarray:
            return _pread_rows(self._file, self._row_bytes, self.d, start, stop)

        return _gather(read_range, slots, self.d).to(self.device)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._memory = None
