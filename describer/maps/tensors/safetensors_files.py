"""A transformers checkpoint directory's safetensors shards, read a tensor (or a few rows) at a time.

The shard headers are parsed here rather than through ``safetensors.safe_open``: that maps the
whole file, and mapped pages count towards resident memory, while a 7B model must be analysable
in 4 GB. Each tensor (or chunk of rows) is mapped alone, privately, and unmapped when the
returned tensor is freed (``RawFile.view``; small ones are read into a buffer the tensor owns).

Every inconsistency is found when the directory is opened (a shard the index names but that is
missing, a tensor the index lists but its shard lacks, a truncated shard, a corrupt header), so
nothing is computed before a bad checkpoint is refused.

Names are the checkpoint's own, which are not always the loaded model's ``state_dict()`` keys.
What transformers 5.24's ``save_pretrained`` writes, for the families ``tests/_fidelity.py``
builds (checked by ``tests/test_tensor_sources.py``):

- every family: a tied LM head is not saved. ``lm_head.weight`` is absent whenever
  ``config.tie_word_embeddings`` is true (GPT-2, Gemma, Gemma 2, Gemma 3 by default; Qwen2 and
  Qwen3 small models when tied), and the consumer must fall back to the embedding
  (``model.embed_tokens.weight``, ``transformer.wte.weight`` for GPT-2).
- GPT-2 keeps the ``transformer.`` prefix; its causal-mask ``attn.bias`` / ``attn.masked_bias``
  buffers are not persistent, so neither state_dict nor disk has them.
- Otherwise the on-disk names equal the ``state_dict()`` keys (``model.layers.N.self_attn.q_proj.weight``,
  ``gpt_neox.layers.N.attention.query_key_value.weight``, ``model.layers.N.self_attn.qkv_proj.weight``).
Older checkpoints on the hub may use other names; ``TensorSource.find`` takes alternatives.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, PretrainedConfig

from describer.maps.tensors.base import RawFile, TensorSource, TensorSourceError, coalesce

INDEX_FILE = "model.safetensors.index.json"
MAX_HEADER = 100 * 1024 * 1024
"""The format's own limit on the JSON header; a larger length means the file is not safetensors."""

DTYPES: dict[str, torch.dtype] = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "U16": torch.uint16,
    "I32": torch.int32,
    "U32": torch.uint32,
    "I64": torch.int64,
    "U64": torch.uint64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}


class _Entry:
    """Where one tensor's bytes are: its shard, the absolute offset, its dtype and shape."""

    __slots__ = ("dtype", "nbytes", "offset", "shape", "shard")

    def __init__(self, shard: str, dtype: str, shape: tuple[int, ...], offset: int, nbytes: int) -> None:
        self.shard, self.dtype, self.shape, self.offset, self.nbytes = shard, dtype, shape, offset, nbytes


def read_header(path: Path) -> dict[str, _Entry]:
    """A shard's tensors, validated against the file's size."""

    def corrupt(why: str) -> TensorSourceError:
        return TensorSourceError(f"{path}: not a valid safetensors file ({why})")

    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise corrupt(f"only {len(head)} bytes long")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER or 8 + length > size:
            raise corrupt(f"header length {length} does not fit a {size}-byte file")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise corrupt(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise corrupt("header is not a JSON object")
    data_start, data_size = 8 + length, size - 8 - length
    entries: dict[str, _Entry] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
            ok = isinstance(dtype, str) and all(isinstance(d, int) and d >= 0 for d in shape)
            ok = ok and isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise corrupt(f"bad header entry for tensor {name!r}")
        if end > data_size:
            raise TensorSourceError(
                f"{path}: truncated: tensor {name!r} ends at byte {data_start + end}, the file has {size}"
            )
        if dtype in DTYPES and end - begin != math.prod(shape) * DTYPES[dtype].itemsize:
            raise corrupt(
                f"tensor {name!r} has {end - begin} bytes, its {dtype} shape {list(shape)} needs more"
            )
        entries[name] = _Entry(path.name, dtype, shape, data_start + begin, end - begin)
    return entries


def _typed(raw: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``raw`` bytes as ``dtype``; copied first where a mapped range does not start on a
    multiple of the element size (the format aligns tensors, a hand-written file may not)."""
    if raw.storage_offset() % dtype.itemsize:
        raw = raw.clone()
    return raw.view(dtype)


class SafetensorsFiles(TensorSource):
    """The tensors of a directory's ``*.safetensors`` shards (via the index when there is one)."""

    def __init__(self, directory: str | Path) -> None:
        root = Path(directory)
        self.path = str(root)
        if not root.is_dir():
            raise TensorSourceError(f"{root}: not a directory")
        self._entries = self._read_entries(root)
        self._files: dict[str, RawFile] = {}
        self._root = root
        try:
            self.config: PretrainedConfig = AutoConfig.from_pretrained(str(root))
        except Exception as exc:  # transformers raises OSError, ValueError, KeyError… for a bad config
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise TensorSourceError(
                f"{root}: cannot read the model's config ({type(exc).__name__}: {first})"
            ) from exc

    @staticmethod
    def _read_entries(root: Path) -> dict[str, _Entry]:
        index = root / INDEX_FILE
        if index.exists():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                if not isinstance(weight_map, dict) or not all(
                    isinstance(v, str) for v in weight_map.values()
                ):
                    raise TypeError("weight_map is not an object of file names")
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
                raise TensorSourceError(f"{index}: not a valid safetensors index ({exc})") from None
            headers: dict[str, dict[str, _Entry]] = {}
            for shard in dict.fromkeys(weight_map.values()):
                file = root / shard
                if not file.is_file():
                    raise TensorSourceError(f"{index} names shard {shard!r}, which does not exist in {root}")
                headers[shard] = read_header(file)
            entries: dict[str, _Entry] = {}
            for name, shard in weight_map.items():
                if name not in headers[shard]:
                    raise TensorSourceError(
                        f"{index} puts tensor {name!r} in {shard}, which does not hold it"
                    )
                entries[name] = headers[shard][name]
            return entries
        shards = sorted(root.glob("*.safetensors"))
        if not shards:
            raise TensorSourceError(f"{root}: no *.safetensors files (and no {INDEX_FILE})")
        entries = {}
        for file in shards:
            for name, entry in read_header(file).items():
                if name in entries:
                    raise TensorSourceError(
                        f"{root}: tensor {name!r} is in both {entries[name].shard} and {file.name}"
                    )
                entries[name] = entry
        return entries

    # --- the interface -------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self._entries)

    def has(self, name: str) -> bool:
        return name in self._entries

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entry(name).shape

    def stored_dtype(self, name: str) -> str:
        return self._entry(name).dtype

    def get(self, name: str) -> torch.Tensor:
        entry = self._entry(name)
        dtype = self._dtype(name, entry)
        return _typed(self._file(entry).view(entry.offset, entry.nbytes), dtype).reshape(entry.shape)

    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        entry = self._entry(name)
        dtype = self._dtype(name, entry)
        start, stop = self._row_range(name, start, stop)
        stride = self._row_bytes(entry)
        raw = self._file(entry).view(entry.offset + start * stride, (stop - start) * stride)
        return _typed(raw, dtype).reshape(stop - start, *entry.shape[1:])

    def take(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        entry = self._entry(name)
        dtype = self._dtype(name, entry)
        flat = self._row_ids(name, ids)
        stride = self._row_bytes(entry)
        spans, where = coalesce(flat, stride)
        raw = self._file(entry).read_spans(entry.offset, stride, spans)
        if raw.shape[0] != where.size or not np.array_equal(where, np.arange(where.size)):
            raw = raw[torch.from_numpy(where)]  # a gather copies: the result owns its memory
        return raw.view(dtype).reshape(*ids.shape, *entry.shape[1:])

    def close(self) -> None:
        for file in self._files.values():
            file.close()
        self._files.clear()

    # --- internals -------------------------------------------------------------------------

    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise self._missing(name)
        return entry

    def _dtype(self, name: str, entry: _Entry) -> torch.dtype:
        dtype = DTYPES.get(entry.dtype)
        if dtype is None:
            raise TensorSourceError(
                f"{self._root / entry.shard}: tensor {name!r} has dtype {entry.dtype}, which cannot be read "
                f"(supported: {', '.join(DTYPES)})"
            )
        return dtype

    @staticmethod
    def _row_bytes(entry: _Entry) -> int:
        return entry.nbytes // entry.shape[0] if entry.shape and entry.shape[0] else 0

    def _file(self, entry: _Entry) -> RawFile:
        file = self._files.get(entry.shard)
        if file is None:
            file = self._files[entry.shard] = RawFile(self._root / entry.shard)
        return file
