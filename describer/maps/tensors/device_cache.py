"""The vocabulary matrices kept on an accelerator, read from the files once.

A streamed analysis reads the embedding and the unembedding a chunk of rows at a time, and
reads them again for every layer (each layer's head mappings sweep the whole vocabulary). On the
CPU that is what keeps resident memory at one chunk. On a GPU it moves the same gigabytes from
the host for every layer (a Llama-3.1-8B's untied pair is 2 GB of bf16, so 64 GB over its 32
layers), while the device has room to hold them. ``DeviceCached`` keeps a tensor whole on the
device, in its stored dtype, the first time its rows are read, as long as the tensors kept
together fit a byte budget; every other read goes to the source underneath. The values are the
same either way: the rows are converted to the compute dtype after they are read, as before.
"""

from __future__ import annotations

import math

import torch
from transformers import PretrainedConfig

from describer.maps.tensors.base import TensorSource

_WIDE = {"F64": 8, "I64": 8}
"""Stored dtypes read as more than 4 bytes an element. Every other tensor is counted at 4 when
deciding whether it fits: a GGUF source hands out float32 whatever it stores (F16 included), so
the stored width would undercount it; a bf16 tensor is then counted at twice its size, which
only errs on the side of keeping less."""


class DeviceCached(TensorSource):
    """``inner``'s tensors, with those read by rows kept whole on ``device`` within ``budget_bytes``."""

    def __init__(self, inner: TensorSource, device: torch.device | str, budget_bytes: int) -> None:
        self.inner = inner
        self.path = inner.path
        self.config: PretrainedConfig = inner.config
        self.device = torch.device(device)
        self.budget_bytes = budget_bytes
        self._kept: dict[str, torch.Tensor] = {}
        self._passed: set[str] = set()
        """Tensors too big for what is left of the budget: always read from ``inner``."""
        self.kept_bytes = 0

    # --- what the source underneath answers ------------------------------------------------
    def names(self) -> list[str]:
        return self.inner.names()

    def shape(self, name: str) -> tuple[int, ...]:
        return self.inner.shape(name)

    def stored_dtype(self, name: str) -> str:
        return self.inner.stored_dtype(name)

    def get(self, name: str) -> torch.Tensor:
        return self.inner.get(name)

    # --- rows, from the device copy where there is one --------------------------------------
    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        whole = self._whole(name)
        if whole is None:
            return self.inner.rows(name, start, stop)
        start, stop = self._row_range(name, start, stop)
        return whole[start:stop]

    def take(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        whole = self._whole(name)
        if whole is None:
            return self.inner.take(name, ids)
        flat = torch.from_numpy(self._row_ids(name, ids)).to(whole.device)
        return whole.index_select(0, flat).reshape(*ids.shape, *whole.shape[1:])

    def kept(self) -> list[str]:
        """The tensors held on the device, in the order they were first read."""
        return list(self._kept)

    def close(self) -> None:
        self._kept.clear()
        self.kept_bytes = 0
        self.inner.close()

    def _whole(self, name: str) -> torch.Tensor | None:
        whole = self._kept.get(name)
        if whole is not None or name in self._passed:
            return whole
        most = math.prod(self.shape(name)) * _WIDE.get(self.stored_dtype(name), 4)
        if self.kept_bytes + most > self.budget_bytes:
            self._passed.add(name)
            return None
        whole = self.inner.get(name).to(self.device)
        self._kept[name] = whole
        self.kept_bytes += whole.numel() * whole.element_size()
        return whole
