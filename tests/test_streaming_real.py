"""On the real weights: the analyzer over the streamed model (blocks read from the converted
safetensors when used) computes exactly what it computes over the model loaded whole."""

from __future__ import annotations

from functools import cache

import pytest
import torch

from describer.maps.analyzer import Analyzer
from describer.maps.loading import LoadedModel, load_model
from describer.maps.operations import builtin_operations, tokenize
from describer.maps.scan import scan_layer
from describer.maps.settings import AnalysisSettings, default_settings
from tests._real import REAL_MODELS, real_model


@cache
def streamed_model(alias: str) -> LoadedModel:
    return load_model(alias, weights="stream")


@pytest.fixture(scope="module", params=REAL_MODELS)
def pair(request) -> tuple[LoadedModel, LoadedModel]:  # noqa: ANN001
    return real_model(request.param), streamed_model(request.param)


def test_streamed_model_holds_no_block_weights(pair: tuple[LoadedModel, LoadedModel]) -> None:
    _, streamed = pair
    assert streamed.weights is not None and streamed.model.lm_head.weight.is_meta
    assert all(p.is_meta for n, p in streamed.model.named_parameters() if ".layers." in n)


def test_amplification_and_head_outputs_are_the_same(pair: tuple[LoadedModel, LoadedModel]) -> None:
    full, streamed = pair
    # The shared loaded model may have been switched to eager attention by another test; the
    # forward passes compared here must use the same kernel.
    streamed.model.set_attn_implementation(full.model.config._attn_implementation)
    weights_only = default_settings(full.family, source="embed+mlp0")
    a = Analyzer(full.adapter, full.tokenizer, weights_only)
    b = Analyzer(streamed.adapter, streamed.tokenizer, weights_only)
    ids = torch.randperm(a.vocab_size, generator=torch.Generator().manual_seed(0))[:512]
    for layer in range(a.n_layers):
        assert torch.equal(a.amplification(layer, ids), b.amplification(layer, ids)), layer
    residual = default_settings(full.family)
    assert residual.source == "residual"
    a = Analyzer(full.adapter, full.tokenizer, residual)
    b = Analyzer(streamed.adapter, streamed.tokenizer, residual)
    few = ids[:16]
    for layer in (0, a.n_layers // 2, a.n_layers - 1):
        torch.testing.assert_close(a.head_outputs(layer, few), b.head_outputs(layer, few), rtol=0, atol=0)
    # A pass over one token too (its kernels differ from a batch's).
    assert torch.equal(a.residual.forward(few[:1]), b.residual.forward(few[:1]))


def test_operation_ranks_are_the_same(pair: tuple[LoadedModel, LoadedModel]) -> None:
    full, streamed = pair
    settings = AnalysisSettings(**{**default_settings(full.family).model_dump(), "source": "embed+mlp0"})
    op = tokenize(builtin_operations()["country_to_capital"], full.tokenizer, full.adapter.vocab_size, None)
    src, tgt = torch.tensor(op.source_ids), torch.tensor(op.target_ids)
    unique, row = torch.unique(src, return_inverse=True)
    k = torch.full_like(src, op.k)
    last = full.adapter.n_layers - 1
    runs = [
        scan_layer(Analyzer(m.adapter, m.tokenizer, settings), last, unique, row, tgt, k, None)
        for m in (full, streamed)
    ]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
