"""The allocator settings that keep a streamed analysis' resident memory to what it holds."""

from __future__ import annotations

import ctypes
import ctypes.util

import pytest
import torch

from describer.maps.adapters import adapter_for
from describer.maps.adapters import base as adapter_base
from describer.maps.memory import MMAP_THRESHOLD, bound_heap, trim
from tests.test_analysis import FAMILIES, tiny_model


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mapped_bytes() -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2().hblkhd


def test_a_large_buffer_is_mapped_on_its_own_and_returned_when_freed() -> None:
    assert bound_heap()
    # glibc raises its threshold past any mapped block that is freed: without a fixed threshold
    # the 8 MB buffer after this one would come from the (never shrinking) heap.
    torch.empty(24 << 20, dtype=torch.uint8).fill_(1)
    before = _mapped_bytes()
    size = 8 * MMAP_THRESHOLD
    buffer = torch.empty(size, dtype=torch.uint8)
    buffer.fill_(1)
    assert _mapped_bytes() - before >= size
    del buffer
    assert _mapped_bytes() - before < MMAP_THRESHOLD
    trim()


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
