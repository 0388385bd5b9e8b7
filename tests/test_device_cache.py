"""On a GPU the vocabulary matrices are read from the files once and kept on the device, and a
stage of forward passes keeps the blocks there, each within a share of the device's free memory.
No test needs a GPU: the CPU stands in as the device, given a free-memory reading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig

from describer.maps import loading, streaming
from describer.maps.settings import AnalysisSettings
from describer.maps.streaming import RESIDENT_BYTES, resident_budget, vocab_budget
from describer.maps.tensors import DeviceCached, SafetensorsFiles, TensorSourceError
from tests._fidelity import build
from tests.test_streaming import SOURCES, assert_same, run


@pytest.fixture
def source(tmp_path: Path) -> tuple[SafetensorsFiles, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    tensors = {
        "vocab": torch.randn(300, 16, generator=g),
        "half": torch.randn(200, 8, generator=g).to(torch.bfloat16),
        "wide": torch.randn(400, 64, generator=g),
    }
    save_file(tensors, tmp_path / "model.safetensors")
    LlamaConfig().save_pretrained(tmp_path)  # the source reads a config; any will do here
    files = SafetensorsFiles(tmp_path)
    yield files, tensors
    files.close()


class Counting:
    """Counts the calls of one method of a source."""

    def __init__(self, target: object, method: str) -> None:
        self.calls = 0
        inner = getattr(target, method)

        def counted(*args: object) -> object:
            self.calls += 1
            return inner(*args)

        setattr(target, method, counted)


def test_rows_come_from_one_read_kept_in_the_stored_dtype(source: tuple) -> None:
    files, tensors = source
    gets, rows = Counting(files, "get"), Counting(files, "rows")
    cached = DeviceCached(files, "cpu", budget_bytes=1 << 20)
    for name, value in tensors.items():
        for start, stop in [(0, 10), (5, 120), (0, value.shape[0])]:
            got = cached.rows(name, start, stop)
            assert got.dtype == value.dtype and torch.equal(got, value[start:stop]), name
        ids = torch.tensor([[7, 3], [3, 199]])
        assert torch.equal(cached.take(name, ids), value[ids]), name
    assert gets.calls == len(tensors) and rows.calls == 0  # each read once, whole
    assert cached.kept() == ["vocab", "half", "wide"]
    assert cached.kept_bytes == sum(t.numel() * t.element_size() for t in tensors.values())


def test_a_tensor_over_what_is_left_of_the_budget_is_read_from_the_files(source: tuple) -> None:
    files, tensors = source
    rows = Counting(files, "rows")
    # "vocab" fits (counted at 4 bytes an element: 19,200); "wide" (102,400) would not fit beside it.
    cached = DeviceCached(files, "cpu", budget_bytes=60_000)
    assert torch.equal(cached.rows("vocab", 0, 5), tensors["vocab"][:5])
    for _ in range(2):
        assert torch.equal(cached.rows("wide", 10, 20), tensors["wide"][10:20])
    assert torch.equal(cached.take("wide", torch.tensor([4, 1])), tensors["wide"][[4, 1]])
    assert cached.kept() == ["vocab"] and rows.calls == 2


def test_bad_rows_name_the_file_as_the_files_do(source: tuple) -> None:
    files, _ = source
    cached = DeviceCached(files, "cpu", budget_bytes=1 << 20)
    cached.rows("vocab", 0, 1)  # kept: the checks below run against the kept copy
    with pytest.raises(TensorSourceError, match=r"rows \[290, 301\) are out of range.*'vocab'"):
        cached.rows("vocab", 290, 301)
    with pytest.raises(TensorSourceError, match="row id 300 is out of range"):
        cached.take("vocab", torch.tensor([0, 300]))
    with pytest.raises(TensorSourceError, match="no tensor 'absent'"):
        cached.rows("absent", 0, 1)
    assert str(files.path) in cached.path


def test_budgets_by_device(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert resident_budget(cpu) == RESIDENT_BYTES and vocab_budget(cpu) is None
    monkeypatch.setattr(streaming, "device_free_bytes", lambda device: 80 << 30)  # an 80 GB card
    assert resident_budget(cpu) == 40 << 30 and vocab_budget(cpu) == 20 << 30
    monkeypatch.setattr(streaming, "device_free_bytes", lambda device: 100 << 20)  # a full one
    assert resident_budget(cpu) == RESIDENT_BYTES  # never less than the CPU's


def test_a_gpu_reads_the_vocabulary_once_and_keeps_the_blocks_for_a_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, word_tokenizer: object
) -> None:
    """A streamed model opened on a device with free memory keeps its embedding and unembedding
    there after their first read and its blocks for a whole stage of forward passes; the
    analysis is the same as the CPU's chunked reads."""
    model = build("llama")
    model.save_pretrained(tmp_path, max_shard_size="60KB")
    word_tokenizer.save_pretrained(tmp_path)
    monkeypatch.setattr(loading, "cache_dir", lambda: tmp_path / "cache")
    settings = AnalysisSettings(readable_only=False, top_tokens=6, top_mappings=4, **SOURCES["residual"])
    plain = loading.load_model(str(tmp_path), weights="stream")
    assert not isinstance(plain.tensors, DeviceCached)
    expected = run(plain.adapter, settings)

    monkeypatch.setattr(streaming, "device_free_bytes", lambda device: 1 << 30)
    gpu = loading.load_model(str(tmp_path), weights="stream")
    assert isinstance(gpu.tensors, DeviceCached)
    assert gpu.weights.resident_bytes == int(streaming.DEVICE_BLOCK_SHARE * (1 << 30))
    files = Counting(gpu.tensors.inner, "rows"), Counting(gpu.tensors.inner, "take")
    assert_same(expected, run(gpu.adapter, settings), exact=True)
    assert all(counter.calls == 0 for counter in files)  # every vocabulary read hit the kept copy
    names = {gpu.adapter.embedding_name(), gpu.adapter.unembedding_name()}
    assert set(gpu.tensors.kept()) == names
