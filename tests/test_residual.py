"""The residual source on tiny models of every family: its rows are what each layer's attention
really reads for a token after ``[prefix, token]``, and the salient search over candidates is the
exact ranking when the candidates cover the vocabulary."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from describer.errors import HeadmapsError
from describer.maps.adapters import adapter_for
from describer.maps.analyzer import Analyzer
from describer.maps.residual import ResidualSource, prefix_token
from describer.maps.settings import AnalysisSettings, SourceChoice
from tests._fidelity import FAMILIES, VOCAB, build

BOS = 3


class Tokenizer(SimpleNamespace):
    """Just what the analyzer asks of a tokenizer, over ``VOCAB`` tokens named ``t<i>``."""

    def batch_decode(self, ids: list[list[int]]) -> list[str]:
        return [f" t{i[0]}" for i in ids]

    def get_vocab(self) -> dict[str, int]:
        return {f"t{i}": i for i in range(VOCAB)}


TOKENIZER = Tokenizer(bos_token_id=BOS, bos_token="t3", all_special_ids=[BOS])


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_residual_rows_are_what_attention_reads(name: str) -> None:
    model = build(name)
    adapter = adapter_for(model)
    ids = torch.tensor([5, 17, 200])
    seen: dict[int, torch.Tensor] = {}

    def grab(layer: int):  # noqa: ANN202
        def hook(_module, args, kwargs) -> None:  # noqa: ANN001
            seen[layer] = (kwargs.get("hidden_states") if "hidden_states" in kwargs else args[0]).detach()

        return hook

    handles = [
        adapter.attention_module(L).register_forward_pre_hook(grab(L), with_kwargs=True)
        for L in range(adapter.n_layers)
    ]
    try:
        with torch.no_grad():
            model(torch.stack([torch.full_like(ids, BOS), ids], dim=1))
    finally:
        for h in handles:
            h.remove()
    residual = ResidualSource(adapter, TOKENIZER, torch.device("cpu"), batch_size=2)
    for layer in range(adapter.n_layers):
        normed = adapter.layer(layer).attn_norm(residual.rows(layer, ids))
        torch.testing.assert_close(normed, seen[layer][:, 1], rtol=1e-4, atol=1e-5)
    assert residual.forward_passes == len(ids)  # each token once, however many layers ask


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_a_shallow_need_stops_the_pass_before_the_blocks_it_does_not_need(name: str) -> None:
    model = build(name)
    adapter = adapter_for(model)
    ids = torch.tensor([5, 17, 200])
    with torch.no_grad():
        hidden = model(torch.stack([torch.full_like(ids, BOS), ids], dim=1), output_hidden_states=True)
    residual = ResidualSource(adapter, TOKENIZER, torch.device("cpu"))
    residual.forward(ids[:1], upto=0)  # the prefix's keys and values: computed here, once
    ran: list[int] = []
    handles = [
        adapter.block_module(L).register_forward_hook(lambda *_, L=L: ran.append(L))
        for L in range(adapter.n_layers)
    ]
    try:
        shallow = residual.forward(ids, upto=0)
        assert ran == [] and shallow.shape == (3, 1, adapter.d_model)  # not even block 0 ran
        full = residual.forward(ids)
        assert ran == list(range(adapter.n_layers - 1))  # the last block's output is not needed
    finally:
        for h in handles:
            h.remove()
    for layer in range(adapter.n_layers):
        torch.testing.assert_close(full[:, layer], hidden.hidden_states[layer][:, 1].float())
    torch.testing.assert_close(shallow[:, 0], full[:, 0])
    # Needs at mixed depths: each token stored at exactly its layers, equal to the full pass.
    residual.ensure_at({5: [0], 17: [adapter.n_layers - 1], 200: [0, 1]})
    assert residual.kept == 4
    for layer, token in [(0, 5), (adapter.n_layers - 1, 17), (1, 200)]:
        i = ids.tolist().index(token)
        torch.testing.assert_close(residual.rows(layer, torch.tensor([token]))[0], full[i, layer])


@pytest.mark.parametrize("candidates", [VOCAB, 0], ids=["all-candidates", "sweep"])
@pytest.mark.parametrize("name", ["llama", "gpt2", "gemma3_text"])
def test_salient_candidates_covering_the_vocabulary_give_the_exact_ranking(
    name: str, candidates: int
) -> None:
    model = build(name)
    adapter = adapter_for(model)
    settings = AnalysisSettings(
        source="residual", top_tokens=4, readable_only=False, salient_candidates=candidates
    )
    analyzer = Analyzer(adapter, TOKENIZER, settings)
    analyzer.residual.batch_size = 50  # the sweep streams the vocabulary in several chunks
    ids, amp = analyzer.salient_sources()
    if candidates == 0:  # streamed: only the winners' rows are kept, each at its own layer
        assert analyzer.residual.kept <= adapter.n_layers * adapter.n_heads * 4 < VOCAB
    every = torch.arange(VOCAB)
    for layer in range(adapter.n_layers):
        exact = analyzer.amplification(layer, every).T  # [heads, vocab]
        v, i = exact.topk(4, dim=1)
        assert torch.equal(ids[layer], i)
        torch.testing.assert_close(amp[layer], v)


@pytest.mark.parametrize("proxy", ["linear", "embed+mlp0"])
def test_few_candidates_still_rank_by_the_residual(proxy: str) -> None:
    model = build("llama")
    adapter = adapter_for(model)
    settings = AnalysisSettings(
        source="residual", top_tokens=3, readable_only=False, salient_candidates=8, salient_proxy=proxy
    )
    analyzer = Analyzer(adapter, TOKENIZER, settings)
    ids, amp = analyzer.salient_sources()
    if proxy == "embed+mlp0":  # weights only: just the candidates run through the model
        assert analyzer.residual.forward_passes < VOCAB
    for layer in range(adapter.n_layers):
        recomputed = analyzer.amplification(layer, ids[layer].reshape(-1)).T.reshape(adapter.n_heads, -1)
        per_head = torch.stack([recomputed[h, h * 3 : (h + 1) * 3] for h in range(adapter.n_heads)])
        torch.testing.assert_close(per_head, amp[layer])
        assert torch.all(amp[layer][:, :-1] >= amp[layer][:, 1:])  # ranked


def test_prefix_is_bos_else_endoftext_else_eos() -> None:
    assert prefix_token(TOKENIZER) == (BOS, "t3")
    qwen_like = Tokenizer(bos_token_id=None, eos_token_id=9, eos_token="t9")
    qwen_like.get_vocab = lambda: {"<|endoftext|>": 7, "t9": 9}
    assert prefix_token(qwen_like) == (7, "<|endoftext|>")
    eos_only = Tokenizer(bos_token_id=None, eos_token_id=9, eos_token="t9")
    assert prefix_token(eos_only) == (9, "t9")
    with pytest.raises(HeadmapsError, match="needs a BOS"):
        prefix_token(Tokenizer(bos_token_id=None, eos_token_id=None))


def test_source_choice_presets_and_norm_parts() -> None:
    paper = SourceChoice(source="paper").settings("llama")
    assert (paper.source, paper.mlp_norm, paper.attn_norm, paper.fold_norms) == ("mlp0", True, False, False)
    assert SourceChoice().settings("gpt2") == paper  # families without measured weights keep the recipe
    mixed = SourceChoice(source="embed+mlp0", norms=False, fold_norms=True).settings("llama")
    assert (mixed.mlp_norm, mixed.attn_norm, mixed.fold_norms) == (False, False, True)
    assert SourceChoice().settings("gemma3_text").source == "residual"
    with pytest.raises(HeadmapsError, match="unknown --source 'mlp1'; use one of: embed, mlp0"):
        SourceChoice.checked("mlp1")


def test_the_linear_proxy_fits_the_residual() -> None:
    """On a tiny model the embedding-to-residual map is nearly linear at early layers: the proxy's
    top candidates must contain the exact top token of most heads."""
    from describer.maps.residual import _proxy

    model = build("llama")
    adapter = adapter_for(model)
    settings = AnalysisSettings(source="residual", readable_only=False, salient_proxy="linear")
    analyzer = Analyzer(adapter, TOKENIZER, settings)
    approximate, same_above_0 = _proxy(analyzer, analyzer.residual, None, None)
    assert not same_above_0  # a map per layer
    every = torch.arange(VOCAB)
    torch.testing.assert_close(
        approximate(0, 0, VOCAB), analyzer.residual.rows(0, every), rtol=1e-3, atol=1e-3
    )
    found = 0
    for layer in range(adapter.n_layers):
        exact = analyzer.amplification(layer, every).T.argmax(1)
        cheap = (
            analyzer.amplification(layer, every, rows=approximate(layer, 0, VOCAB)).T.topk(16, dim=1).indices
        )
        found += int((cheap == exact[:, None]).any(1).sum())
    assert found >= adapter.n_layers * adapter.n_heads // 2


class _Tok:
    """A tokenizer with given special ids (and ``<|endoftext|>`` in its vocabulary)."""

    bos_token, eos_token = "<bos>", "<eos>"

    def __init__(self, bos: int | None, endoftext: int | None, eos: int | None) -> None:
        self.bos_token_id, self.eos_token_id = bos, eos
        self._vocab = {} if endoftext is None else {"<|endoftext|>": endoftext}

    def get_vocab(self) -> dict[str, int]:
        return self._vocab


def test_the_prefix_token_must_be_inside_the_embedding() -> None:
    from describer.errors import HeadmapsError
    from describer.maps.residual import prefix_token

    assert prefix_token(_Tok(2, 5, 3)) == (2, "<bos>")
    assert prefix_token(_Tok(None, 5, 3), 100) == (5, "<|endoftext|>")
    # Qwen's tokenizer on a smaller embedding: its <|endoftext|> is past the rows, its EOS too.
    assert prefix_token(_Tok(None, 151643, 7), 128256) == (7, "<eos>")
    with pytest.raises(
        HeadmapsError, match=r"<\|endoftext\|> \(id 151643\), <eos> \(id 151645\) are outside"
    ):
        prefix_token(_Tok(None, 151643, 151645), 128256)
    with pytest.raises(HeadmapsError, match="needs a BOS"):
        prefix_token(_Tok(None, None, None), 10)
