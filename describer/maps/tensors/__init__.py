"""A model's tensors by name, read on demand: safetensors shards, GGUF files, a loaded model."""

from __future__ import annotations

from pathlib import Path

from describer.maps.tensors.base import TensorSource, TensorSourceError
from describer.maps.tensors.device_cache import DeviceCached
from describer.maps.tensors.gguf_file import GGUFFile
from describer.maps.tensors.module_tensors import ModuleTensors
from describer.maps.tensors.safetensors_files import SafetensorsFiles


def open_source(path: str | Path) -> TensorSource:
    """A directory of safetensors shards, or a ``.gguf`` file."""
    where = Path(path)
    if where.is_dir():
        return SafetensorsFiles(where)
    if where.is_file() and where.suffix.lower() == ".gguf":
        return GGUFFile(where)
    raise TensorSourceError(f"{where}: not a model directory or a .gguf file")


__all__ = [
    "DeviceCached",
    "GGUFFile",
    "ModuleTensors",
    "SafetensorsFiles",
    "TensorSource",
    "TensorSourceError",
    "open_source",
]
