"""Rows kept for a run: in memory while few, else in a temporary file, read back unchanged; the
residual source keeps each (token, layer) row once and only those asked for."""

from __future__ import annotations

import pytest
import torch

from describer.maps import rowcache
from describer.maps.adapters import adapter_for
from describer.maps.residual import ResidualSource
from describer.maps.rowcache import RowStore
from tests._fidelity import VOCAB, build
from tests.test_residual import TOKENIZER


@pytest.mark.parametrize("budget", [1 << 20, 3 * 8 * 4])  # all in memory; spilled after 3 rows
def test_rows_come_back_as_written_in_any_order(budget: int) -> None:
    generator = torch.Generator().manual_seed(0)
    store = RowStore(8, torch.device("cpu"), memory_bytes=budget)
    batches = [torch.randn(n, 8, generator=generator) for n in (2, 1, 4, 3)]
    slots = [store.append(b) for b in batches]
    assert [list(s) for s in slots] == [[0, 1], [2], [3, 4, 5, 6], [7, 8, 9]]
    assert store.on_disk == (budget < 10 * 8 * 4)
    every = torch.cat(batches)
    wanted = torch.tensor([9, 0, 3, 3, 4, 5, 1, 8])  # out of order, a repeat, runs
    assert torch.equal(store.read(wanted), every[wanted])
    assert torch.equal(store.read(torch.arange(10)), every)
    store.close()


def test_residual_rows_spill_to_disk_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = adapter_for(build("llama"))
    ids = torch.arange(0, VOCAB, 3)
    in_memory = ResidualSource(adapter, TOKENIZER, torch.device("cpu"), batch_size=4)
    expected = [in_memory.rows(layer, ids) for layer in range(adapter.n_layers)]
    assert not in_memory.on_disk
    monkeypatch.setattr(rowcache, "MEMORY_BYTES", 5 * adapter.d_model * 4)  # five rows
    spilled = ResidualSource(adapter, TOKENIZER, torch.device("cpu"), batch_size=4)
    for layer in range(adapter.n_layers):
        assert torch.equal(spilled.rows(layer, ids), expected[layer])
    assert spilled.on_disk and spilled.kept == len(ids) * adapter.n_layers
    assert spilled.forward_passes == len(ids)


def test_candidates_are_kept_only_at_their_layers() -> None:
    adapter = adapter_for(build("llama"))
    full = ResidualSource(adapter, TOKENIZER, torch.device("cpu"))
    residual = ResidualSource(adapter, TOKENIZER, torch.device("cpu"))
    residual.ensure_at({5: {0}, 7: {0, 1}, 9: {1}})
    assert residual.kept == 4 and residual.forward_passes == 3
    # (A batch of other tokens rounds a little differently, hence close rather than equal.)
    torch.testing.assert_close(residual.rows(1, torch.tensor([9, 7])), full.rows(1, torch.tensor([9, 7])))
    assert residual.forward_passes == 3  # already kept: no forward pass
    residual.ensure_at({7: {1}, 9: {1}})
    assert residual.forward_passes == 3
    # A layer it was not kept at: the token runs again and is then kept at every layer.
    torch.testing.assert_close(residual.rows(1, torch.tensor([5])), full.rows(1, torch.tensor([5])))
    assert residual.forward_passes == 4 and residual.kept == 3 + adapter.n_layers
    residual.close()
    assert residual.kept == 0
    torch.testing.assert_close(residual.rows(0, torch.tensor([5])), full.rows(0, torch.tensor([5])))
