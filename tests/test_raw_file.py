"""Ranges of a checkpoint read through a private mapping of that range alone: the same bytes a
read gives, never written back, gone from the process when the tensor is, and a read wherever a
mapping could fault."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig

from describer.maps.tensors import SafetensorsFiles
from describer.maps.tensors.base import MAP_BYTES, RawFile, TensorSourceError


def _mapped(path: Path) -> int:
    """How many of this process's mappings are of ``path``."""
    text = Path("/proc/self/maps").read_text()
    return sum(1 for line in text.splitlines() if line.endswith(str(path)))


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[Path, bytes]:
    data = torch.randint(
        0, 256, (3 * MAP_BYTES + 123,), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    path = tmp_path / "data.bin"
    path.write_bytes(data.numpy().tobytes())
    return path, path.read_bytes()


@pytest.mark.parametrize("offset", [0, 4096, 4097, MAP_BYTES + 7])
def test_a_view_has_the_bytes_a_read_has(data_file: tuple[Path, bytes], offset: int) -> None:
    path, raw = data_file
    size = 2 * MAP_BYTES
    file = RawFile(path)
    try:
        view = file.view(offset, size)
        assert view.shape == (size,)
        assert view.numpy().tobytes() == raw[offset : offset + size]
        assert torch.equal(view, file.read(offset, size))
    finally:
        del view
        file.close()


def test_writes_to_a_view_stay_private(data_file: tuple[Path, bytes]) -> None:
    path, raw = data_file
    file = RawFile(path)
    view = file.view(10, 2 * MAP_BYTES)
    view.fill_(7)  # a caller may change what it was given in place
    assert int(view.sum()) == 7 * 2 * MAP_BYTES
    assert file.read(10, 16).tolist() == list(raw[10:26])
    del view
    file.close()
    assert path.read_bytes() == raw


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see the mappings")
def test_the_mapping_goes_with_its_tensor(data_file: tuple[Path, bytes]) -> None:
    path, _ = data_file
    file = RawFile(path)
    before = _mapped(path)
    view = file.view(0, 2 * MAP_BYTES)
    part = view[100:200].view(torch.int32)  # a view of the view keeps it alive too
    del view
    gc.collect()
    assert _mapped(path) == before + 1
    assert part.shape == (25,)
    del part
    gc.collect()
    assert _mapped(path) == before
    file.close()


def test_small_ranges_and_ranges_past_the_end_are_read(data_file: tuple[Path, bytes]) -> None:
    path, raw = data_file
    file = RawFile(path)
    before = _mapped(path)
    small = file.view(5, 1000)
    assert small.numpy().tobytes() == raw[5:1005] and _mapped(path) == before
    with pytest.raises(TensorSourceError, match=str(path)):  # a mapping here would fault (SIGBUS)
        file.view(len(raw) - MAP_BYTES, 2 * MAP_BYTES)
    file.close()
    with pytest.raises(TensorSourceError, match="after close"):
        file.view(0, 2 * MAP_BYTES)


def test_safetensors_rows_and_tensors_come_mapped_and_exact(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    tensors = {
        "a": torch.randn(5, 3, generator=g),  # small: read, and it moves the next one's offset
        "big": torch.randn(1000, 700, generator=g),
        "half": torch.randn(900, 800, generator=g).to(torch.bfloat16),
    }
    save_file(tensors, tmp_path / "model.safetensors")
    LlamaConfig().save_pretrained(tmp_path)  # the source reads a config; any will do here
    source = SafetensorsFiles(tmp_path)
    for name, value in tensors.items():
        assert torch.equal(source.get(name), value), name
        assert torch.equal(source.rows(name, 3, value.shape[0] - 1), value[3:-1]), name
    rows = source.rows("big", 0, 999)
    rows += 1  # in place: private pages, the file keeps its values
    assert torch.equal(source.rows("big", 0, 999), tensors["big"][:999])
    source.close()
