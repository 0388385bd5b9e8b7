"""The allocator settings that keep a streamed analysis' resident memory to what it holds."""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from describer.maps.adapters import adapter_for
from describer.maps.adapters import base as adapter_base
from describer.maps.memory import MMAP_THRESHOLD
from tests.test_analysis import FAMILIES, tiny_model

ROOT = Path(__file__).resolve().parents[1]


_PROBE = """
import ctypes, ctypes.util, sys
import torch
from describer.maps.memory import MMAP_THRESHOLD, bound_heap

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2
mapped = lambda: libc.mallinfo2().hblkhd
if sys.argv[1] == "bound":
    assert bound_heap()
# glibc raises its threshold past any mapped block that is freed: without a fixed threshold the
# 8 MB buffer after this one comes from the (never shrinking) heap.
torch.empty(24 << 20, dtype=torch.uint8).fill_(1)
before = mapped()
buffer = torch.empty(8 * MMAP_THRESHOLD, dtype=torch.uint8)
buffer.fill_(1)
held = mapped() - before
del buffer
print(held, mapped() - before)
"""


def _probe(mode: str) -> tuple[int, int]:
    """(bytes newly mapped while an 8 MB buffer is held, bytes still mapped once it is freed),
    in a fresh interpreter: a long test session's heap already has free chunks that large, and
    glibc serves a request from a free chunk before it looks at the threshold."""
    name = ctypes.util.find_library("c")
    if name is None or not hasattr(ctypes.CDLL(name), "mallinfo2"):
        pytest.skip("glibc's mallinfo2 is needed to see where a buffer came from")
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True, cwd=ROOT
    )
    held, left = (int(v) for v in done.stdout.split())
    return held, left


def test_a_large_buffer_is_mapped_on_its_own_and_returned_when_freed() -> None:
    size = 8 * MMAP_THRESHOLD
    held, left = _probe("bound")
    assert held >= size
    assert left < MMAP_THRESHOLD
    # and the probe can tell: glibc's own floating threshold puts the same buffer on the heap
    held, _ = _probe("default")
    assert held < size


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_block0_mlp_in_pieces_equals_one_pass(family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = adapter_for(tiny_model(family, 64))
    x = torch.randn(37, adapter.d_model)
    whole = adapter.mlp0(x, pre_norm=True, post_norm=False)
    monkeypatch.setattr(adapter_base, "MLP_ELEMENTS", 16 * adapter.d_mlp)  # 16 rows a piece
    pieces = adapter.mlp0(x.view(1, 37, -1), pre_norm=True, post_norm=False)
    assert pieces.shape == (1, 37, adapter.d_model)
    torch.testing.assert_close(pieces[0], whole, rtol=1e-5, atol=1e-6)
    direct = adapter.mlp0_module()(adapter.mlp0_pre_norm()(x))
    torch.testing.assert_close(whole, direct, rtol=1e-5, atol=1e-6)
    # the pieces really were pieces: 37 rows in 16-row parts
    assert adapter_base.MLP_ELEMENTS // adapter.d_mlp < len(x)


def test_the_heap_is_bounded_for_big_models_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, word_tokenizer: object
) -> None:
    """A small model keeps glibc's floating threshold (fresh mappings cost it time it need not
    spend); from ``BOUND_HEAP_PARAMETERS`` up, loading fixes it, streamed or whole."""
    from describer.maps import loading

    tiny_model("qwen2", 64).save_pretrained(tmp_path)
    word_tokenizer.save_pretrained(tmp_path)
    monkeypatch.setattr(loading, "cache_dir", lambda: tmp_path / "cache")
    calls: list[int] = []
    monkeypatch.setattr(loading, "bound_heap", lambda: calls.append(1) or True)
    loaded = loading.load_model(str(tmp_path), weights="stream")
    assert calls == [] and loaded.adapter.n_layers > 0
    parameters = sum(p.numel() for p in loaded.model.parameters())
    monkeypatch.setattr(loading, "BOUND_HEAP_PARAMETERS", parameters)
    loading.load_model(str(tmp_path), weights="stream")
    loading.load_model(str(tmp_path), weights="full")
    assert calls == [1, 1]


def test_layers_trim_between_them_only_under_a_bounded_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    from describer.maps import memory

    trims: list[int] = []
    monkeypatch.setattr(memory, "trim", lambda: trims.append(1))
    for bounded, expected in ((False, 0), (True, 1)):
        monkeypatch.setattr(memory, "_bounded", bounded)
        trims.clear()
        memory.between_layers()
        assert len(trims) == expected, bounded
