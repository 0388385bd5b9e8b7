"""An already loaded model seen as a tensor source, so that small models (loaded whole) and big
ones (streamed from files) are read through the same interface.

Nothing is copied: ``get`` is the parameter itself (detached), ``rows`` a view of it. Names are
the ``state_dict()`` keys, which include a tied LM head (``lm_head.weight``, the very same
parameter as the embedding) — unlike a saved checkpoint, which omits it.
"""

from __future__ import annotations

import torch
from torch import nn

from describer.maps.tensors.base import TensorSource

_STORED = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
}


class ModuleTensors(TensorSource):
    """The tensors of a loaded ``nn.Module`` (its ``state_dict``, without copies)."""

    def __init__(self, model: nn.Module, path: str = "<loaded model>") -> None:
        self.path = path
        self.model = model
        self.config = getattr(model, "config", None)  # type: ignore[assignment]
        self._tensors: dict[str, torch.Tensor] = dict(model.state_dict(keep_vars=True))

    def names(self) -> list[str]:
        return list(self._tensors)

    def has(self, name: str) -> bool:
        return name in self._tensors

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._tensor(name).shape)

    def stored_dtype(self, name: str) -> str:
        dtype = self._tensor(name).dtype
        return _STORED.get(dtype, str(dtype).removeprefix("torch.").upper())

    def get(self, name: str) -> torch.Tensor:
        return self._tensor(name).detach()

    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        tensor = self._tensor(name)
        start, stop = self._row_range(name, start, stop)
        return tensor.detach()[start:stop]

    def take(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        tensor = self._tensor(name)
        self._row_ids(name, ids)  # checks the range, with an error naming the tensor
        return tensor.detach()[ids.to(tensor.device, torch.long)]

    def _tensor(self, name: str) -> torch.Tensor:
        tensor = self._tensors.get(name)
        if tensor is None:
            raise self._missing(name)
        return tensor
