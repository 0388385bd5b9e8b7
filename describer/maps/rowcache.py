"""A ``[n, d]`` float32 matrix written once by row ranges and read back by rows: in memory when
it is small, else in an unlinked temporary file read with ``pread`` (no memory map, so pages
read back never count towards the process's resident memory)."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import torch
from torch import Tensor

MEMORY_BYTES = 256 << 20
"""Matrices up to this size stay in memory. A whole-vocabulary source representation is bigger
for any real model (gemma-3-270m's 262k × 640 floats: 671 MB), so it goes to the file: read
back by ``pread`` from the page cache it costs a few seconds over an analysis and keeps the
analysis' resident memory to its blocks and chunks."""


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
        data = rows.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
        os.pwrite(self._file.fileno(), data, start * self._row_bytes)

    def _read_range(self, start: int, stop: int) -> np.ndarray:
        size = (stop - start) * self._row_bytes
        data = os.pread(self._file.fileno(), size, start * self._row_bytes)
        if len(data) != size:
            raise OSError(f"row cache: short read ({len(data)} of {size} bytes)")
        return np.frombuffer(data, dtype=np.float32).reshape(stop - start, self.d)

    def read(self, ids: Tensor | slice) -> Tensor:
        """Rows ``ids`` (a slice, or ids in any order with repeats) on the cache's device."""
        if self._memory is not None:
            return self._memory[ids]
        if isinstance(ids, slice):
            start, stop = ids.start or 0, min(ids.stop, self.n)
            return torch.from_numpy(self._read_range(start, stop).copy()).to(self.device)
        wanted = ids.cpu().long()
        order = torch.unique(wanted)
        out = np.empty((len(order), self.d), dtype=np.float32)
        values = order.tolist()
        i = 0
        while i < len(values):  # one read per run of consecutive ids
            j = i
            while j + 1 < len(values) and values[j + 1] == values[j] + 1:
                j += 1
            out[i : j + 1] = self._read_range(values[i], values[j] + 1)
            i = j + 1
        rows = torch.from_numpy(out)[torch.searchsorted(order, wanted)]
        return rows.to(self.device)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._memory = None
