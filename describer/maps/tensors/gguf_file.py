"""A GGUF file's tensors under their transformers names, dequantised one tensor at a time.

The values are exactly what ``transformers`` produces when it loads the file: its own name map
(``get_gguf_hf_weights_map`` over a meta-device model of the file's config) and its own
per-architecture processors (Llama's q/k un-permutation, Gemma's ``norm − 1``, GPT-2's
transposes) are applied, but to one tensor when it is asked for instead of the whole model at
once. Every tensor's quantisation type is checked when the file is opened, so a type ``gguf``
cannot dequantise is refused before anything is computed or written.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from describer.maps.tensors.base import TensorSource, TensorSourceError

GGUF_MAGIC = b"GGUF"
_PLAIN = ("F32", "F16")
_GPT2_TRANSPOSED = ("attn_qkv.weight", "ffn_down.weight", "ffn_up.weight", "attn_output.weight")


class GGUFFile(TensorSource):
    def __init__(self, path: str | Path) -> None:
        # gguf and transformers' GGUF helpers: only reading a GGUF needs them.
        from gguf import GGUFReader
        from gguf.quants import _type_traits
        from transformers import AutoConfig, AutoModelForCausalLM
        from transformers.modeling_gguf_pytorch_utils import (
            TENSOR_PROCESSORS,
            TensorProcessor,
            get_gguf_hf_weights_map,
            load_gguf_checkpoint,
            read_field,
        )

        file = Path(path)
        self.path = str(file)
        self._reader = None
        with file.open("rb") as handle:
            if handle.read(4) != GGUF_MAGIC:
                raise TensorSourceError(f"{file}: not a GGUF file (bad magic bytes)")
        try:
            self._reader = GGUFReader(str(file))
        except Exception as exc:  # gguf raises many types for a corrupt file
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise TensorSourceError(
                f"{file}: could not read this GGUF ({type(exc).__name__}: {first})"
            ) from exc
        for tensor in self._reader.tensors:
            kind = tensor.tensor_type
            if kind.name not in _PLAIN and kind not in _type_traits:
                raise TensorSourceError(
                    f"{file}: tensor {tensor.name!r} is quantised as {kind.name}, which cannot be dequantised here"
                )
        try:
            parsed = load_gguf_checkpoint(str(file), return_tensors=False)
            self.config = AutoConfig.from_pretrained(str(file.parent), gguf_file=file.name)
        except Exception as exc:  # gguf and transformers raise many types for a corrupt file
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise TensorSourceError(
                f"{file}: could not read this GGUF ({type(exc).__name__}: {first})"
            ) from exc
        self._arch = read_field(self._reader, "general.architecture")[0]
        self._processor = TENSOR_PROCESSORS.get(self._arch, TensorProcessor)(config=parsed["config"])
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(self.config)
        mapping = get_gguf_hf_weights_map(skeleton, self._processor)
        self._tensors = {}
        for tensor in self._reader.tensors:
            if self._arch == "gpt2" and tensor.name == "output.weight":
                hf = "lm_head.weight"  # transformers' GPT-2 processor special-cases it the same way
            else:
                hf = mapping.get(tensor.name)
            if hf is not None:
                self._tensors[hf] = tensor

    # --- TensorSource --------------------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self._tensors)

    def _tensor(self, name: str):  # noqa: ANN202  (gguf's ReaderTensor)
        tensor = self._tensors.get(name)
        if tensor is None:
            raise self._missing(name)
        return tensor

    def _transposed(self, tensor: object) -> bool:
        return self._arch == "gpt2" and any(s in tensor.name for s in _GPT2_TRANSPOSED)

    def shape(self, name: str) -> tuple[int, ...]:
        tensor = self._tensor(name)
        dims = tuple(int(n) for n in reversed(tensor.shape.tolist()))
        return dims[::-1] if self._transposed(tensor) else dims

    def stored_dtype(self, name: str) -> str:
        return self._tensor(name).tensor_type.name

    def _process(self, tensor: object, data: np.ndarray) -> torch.Tensor:
        from gguf import dequantize  # see __init__

        weights = dequantize(data, tensor.tensor_type)
        result = self._processor.process(
            weights=weights, name=tensor.name, tensor_key_mapping={}, parsed_parameters={"tensors": {}}
        )
        return torch.from_numpy(np.array(result.weights, dtype=np.float32, copy=True))

    def get(self, name: str) -> torch.Tensor:
        tensor = self._tensor(name)
        return self._process(tensor, tensor.data).reshape(self.shape(name))

    def _row_local(self, name: str) -> bool:
        """Rows are quantised independently (blocks run along a row), so a slice of the raw rows
        dequantises to exactly those rows, unless the processor mixes rows or transposes."""
        tensor = self._tensor(name)
        mixes = ".attn_q." in tensor.name or ".attn_k." in tensor.name
        return not self._transposed(tensor) and not mixes and len(self.shape(name)) == 2

    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        start, stop = self._row_range(name, start, stop)
        if not self._row_local(name):
            return self.get(name)[start:stop]
        tensor = self._tensor(name)
        return self._process(tensor, tensor.data[start:stop]).reshape(stop - start, -1)

    def take(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        flat = self._row_ids(name, ids)
        if flat.size == 0:
            return torch.empty(0, *self.shape(name)[1:])
        unique, inverse = np.unique(flat, return_inverse=True)
        if not self._row_local(name):
            rows = self.get(name)[torch.from_numpy(unique)]
        else:
            tensor = self._tensor(name)
            rows = self._process(tensor, tensor.data[unique]).reshape(len(unique), -1)
        return rows[torch.from_numpy(inverse.reshape(-1))].reshape(*ids.shape, -1)

    def close(self) -> None:
        reader, self._reader = self._reader, None
        mm = getattr(getattr(reader, "data", None), "_mmap", None)
        if mm is not None:
            # Arrays may still point into it; then the mapping goes with them.
            with contextlib.suppress(BufferError):
                mm.close()
