"""Write a ``TensorSource`` out as safetensors shards with a ``model.safetensors.index.json``,
one tensor in memory at a time beyond the shard being filled (how a GGUF is converted once)."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from describer.maps.tensors import TensorSource

SHARD_BYTES = 1 << 30


def write_shards(source: TensorSource, directory: Path, shard_bytes: int = SHARD_BYTES) -> list[Path]:
    """Every tensor of ``source`` (as ``get`` returns it) into ``directory``; returns the shards."""
    names = sorted(source.names())
    groups: list[list[str]] = [[]]
    size = 0
    for name in names:
        shape = source.shape(name)
        nbytes = 4
        for n in shape:
            nbytes *= n
        if groups[-1] and size + nbytes > shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += nbytes
    weight_map: dict[str, str] = {}
    written = []
    total = 0
    for index, group in enumerate(groups, start=1):
        file = f"model-{index:05d}-of-{len(groups):05d}.safetensors"
        tensors = {name: source.get(name).contiguous() for name in group}
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        save_file(tensors, str(directory / file), metadata={"format": "pt"})
        del tensors
        weight_map.update(dict.fromkeys(group, file))
        written.append(directory / file)
    index_file = directory / "model.safetensors.index.json"
    index_file.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    return written
