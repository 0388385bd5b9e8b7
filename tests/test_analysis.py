"""The fast Analyzer computes exactly what the slow per-head reference computes.

Tiny random models of five families (hidden 64, 4 heads, 3 layers, 2 key/value heads where the
family has grouped-query attention) share a 2508-token word-level tokenizer; the Analyzer gets
a tiny ``chunk_elements`` so the vocabulary is streamed in several chunks and pairs drop out
early. Norm weights and biases get random noise so folding mistakes cannot hide behind ones
and zeros. Planted heads check that the scores mean what they say.
"""

from __future__ import annotations

import random
import warnings

import pytest
import torch
import transformers
from torch import nn

from describer.maps.adapters import adapter_for
from describer.maps.analyzer import Analyzer
from describer.maps.operations import Operation, TokenizedOperation, tokenize
from describer.maps.results import HeadSalient, OperationScores
from describer.maps.settings import STORED_SOURCES, AnalysisSettings
from tests._slow_maps import readable_tokens, reference_operation_scores, reference_salient
from tests.conftest import UNREADABLE_TOKENS, WORD_TOKENIZER_WORDS, letter_words

CHUNK = 2048
"""Analyzer.chunk_elements: the smallest step (1024 tokens), so 2508 tokens take 3 chunks."""
LLAMA_LIKE = dict(
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    num_hidden_layers=3,
    intermediate_size=128,
    max_position_embeddings=64,
)
FAMILIES = {
    "gpt2": (
        "GPT2Config",
        dict(n_embd=64, n_head=4, n_layer=3, n_inner=128, n_positions=64, bos_token_id=2, eos_token_id=3),
    ),
    "llama": ("LlamaConfig", LLAMA_LIKE),
    "qwen2": ("Qwen2Config", LLAMA_LIKE),
    "gemma3_text": ("Gemma3TextConfig", dict(LLAMA_LIKE, head_dim=24, sliding_window=4)),
    "gpt_neox": (
        "GPTNeoXConfig",
        dict(
            hidden_size=64,
            num_attention_heads=4,
            num_hidden_layers=3,
            intermediate_size=128,
            max_position_embeddings=64,
            rotary_pct=0.25,
        ),
    ),
}
SOURCES = ("embed", "mlp0", "embed+mlp0")
N_SPECIAL = len(UNREADABLE_TOKENS)


def tiny_model(family: str, vocab_size: int, noise: bool = True) -> nn.Module:
    config_cls, config = FAMILIES[family]
    torch.manual_seed(0)
    config = getattr(transformers, config_cls)(vocab_size=vocab_size, initializer_range=0.1, **config)
    model = transformers.AutoModelForCausalLM.from_config(config).float().eval().requires_grad_(False)
    if noise:
        gen = torch.Generator().manual_seed(1)
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name or "ln_" in name:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return model


def word_id(tokenizer: object, word: str) -> int:
    (i,) = tokenizer.encode(" " + word, add_special_tokens=False)
    return i


def make_ops(tokenizer: object, vocab_size: int) -> list[TokenizedOperation]:
    """A copying operation (k=1) and random relations scored with k=20 and k=400."""
    words = letter_words(WORD_TOKENIZER_WORDS)
    rng = random.Random(5)
    specs = [
        ("copy", [(w, w) for w in rng.sample(words, 40)], 1),
        ("rand_small_k", [(rng.choice(words), rng.choice(words)) for _ in range(60)], 20),
        ("rand_large_k", [(rng.choice(words), rng.choice(words)) for _ in range(50)], 400),
    ]
    return [
        tokenize(Operation(name=name, category="custom", pairs=tuple(pairs)), tokenizer, vocab_size, k=k)
        for name, pairs, k in specs
    ]


def assert_same_scores(fast: list[OperationScores], ref: list[OperationScores]) -> None:
    assert [s.name for s in fast] == [s.name for s in ref]
    for f, r in zip(fast, ref, strict=True):
        assert (f.k, f.n_pairs) == (r.k, r.n_pairs)
        for what in ("scores", "suppression"):
            got, want = torch.tensor(getattr(f, what)), torch.tensor(getattr(r, what))
            assert torch.allclose(got, want, rtol=0, atol=1e-6), f"{f.name} {what}:\n{got}\n{want}"


def assert_same_salient(fast: list[HeadSalient], ref: list[HeadSalient]) -> None:
    assert [(h.layer, h.head) for h in fast] == [(h.layer, h.head) for h in ref]
    for f, r in zip(fast, ref, strict=True):
        where = f"L{f.layer}H{f.head}"
        assert [s.token_id for s in f.salient] == [s.token_id for s in r.salient], where
        assert [s.token for s in f.salient] == [s.token for s in r.salient], where
        amp_f = torch.tensor([s.amplification for s in f.salient])
        amp_r = torch.tensor([s.amplification for s in r.salient])
        assert torch.allclose(amp_f, amp_r, rtol=1e-4, atol=0), where
        for sf, sr in zip(f.salient, r.salient, strict=True):
            for what in ("mappings", "suppressed"):
                got, want = getattr(sf, what), getattr(sr, what)
                assert len(want) == 5, where
                assert [m.token_id for m in got] == [m.token_id for m in want], f"{where} {what}"
                lf = torch.tensor([m.logit for m in got])
                lr = torch.tensor([m.logit for m in want])
                assert torch.allclose(lf, lr, rtol=1e-4, atol=1e-4 * float(lr.abs().max())), where


@pytest.fixture(scope="module", params=list(FAMILIES))
def family_model(request, word_tokenizer) -> tuple[str, nn.Module]:
    return request.param, tiny_model(request.param, len(word_tokenizer))


@pytest.mark.parametrize("norms", [True, False], ids=["norms", "raw"])
@pytest.mark.parametrize("source", SOURCES)
def test_fast_equals_reference(family_model, word_tokenizer, source: str, norms: bool) -> None:
    family, model = family_model
    adapter = adapter_for(model)
    assert adapter.vocab_size == len(word_tokenizer) > 2 * 1024
    ops = make_ops(word_tokenizer, adapter.vocab_size)
    settings = AnalysisSettings(source=source, mlp_norm=norms, attn_norm=norms, fold_norms=norms)
    analyzer = Analyzer(adapter, word_tokenizer, settings, chunk_elements=CHUNK)
    chunks = []
    unembed = analyzer._unembed_columns
    analyzer._unembed_columns = lambda ids: (
        (isinstance(ids, slice) and chunks.append(ids.start)) or unembed(ids)
    )
    heads, scores = analyzer.analyze(ops)
    assert len(chunks) == 3 * adapter.n_layers  # the vocabulary really is streamed
    assert_same_scores(scores, reference_operation_scores(adapter, ops, settings))
    assert_same_salient(heads, reference_salient(adapter, word_tokenizer, settings))
    # The random relations are not trivially all-zero: the comparison above has teeth.
    assert max(max(row) for row in scores[2].scores) > 0
    _, alone = analyzer.analyze(ops, with_salient=False)
    assert_same_scores(alone, scores)


def test_reference_subset_of_heads(family_model, word_tokenizer) -> None:
    _, model = family_model
    adapter = adapter_for(model)
    ops = make_ops(word_tokenizer, adapter.vocab_size)
    settings = AnalysisSettings()
    full = reference_operation_scores(adapter, ops, settings)
    some = reference_operation_scores(adapter, ops, settings, heads=[(2, 1), (0, 3)])
    for f, s in zip(full, some, strict=True):
        for layer in range(3):
            for head in range(4):
                if (layer, head) in {(2, 1), (0, 3)}:
                    assert s.scores[layer][head] == f.scores[layer][head]
                else:
                    assert s.scores[layer][head] != s.scores[layer][head]  # NaN
    salient = reference_salient(adapter, word_tokenizer, settings, heads=[(2, 1), (0, 3)])
    assert [(h.layer, h.head) for h in salient] == [(0, 3), (2, 1)]


# --- planted heads -----------------------------------------------------------------------------


def _plant(model: nn.Module, layer: int, head: int, sources: list[int], directions: torch.Tensor) -> None:
    """Make ``head`` map the embedding of ``sources[i]`` to ``directions[:, i]`` (Llama layout)."""
    adapter = adapter_for(model)
    hd, group = adapter.head_dim, adapter.n_heads // adapter.n_kv_heads
    kv = head // group
    attn = model.model.layers[layer].self_attn
    E = adapter.embedding()[sources]  # [m, d], full row rank
    W_V = torch.zeros(adapter.d_model, hd)
    W_V[:, : len(sources)] = torch.linalg.pinv(E)  # E @ W_V = [I | 0]
    attn.v_proj.weight[kv * hd : (kv + 1) * hd] = W_V.T
    W_O = torch.zeros(hd, adapter.d_model)
    W_O[: len(sources)] = directions.T
    attn.o_proj.weight[:, head * hd : (head + 1) * hd] = W_O.T


@pytest.mark.parametrize("norms", [True, False], ids=["norms", "raw"])
def test_planted_heads(word_tokenizer, norms: bool) -> None:
    """A head built to map a→b for 12 pairs scores 1.0 and tops the table; its negation
    scores 1.0 on suppression. (No norm noise: with unit norm weights the planted logits
    stay exactly as built, up to a positive per-token scale.)"""
    model = tiny_model("llama", len(word_tokenizer), noise=False)
    words = letter_words(WORD_TOKENIZER_WORDS)[:24]
    pairs = list(zip(words[:12], words[12:], strict=True))
    ids = [(word_id(word_tokenizer, a), word_id(word_tokenizer, b)) for a, b in pairs]
    sources, targets = [a for a, _ in ids], [b for _, b in ids]
    Q, _ = torch.linalg.qr(torch.randn(64, 12, generator=torch.Generator().manual_seed(3)))
    with torch.no_grad():
        model.lm_head.weight[targets] = 10 * Q.T  # the targets' unembeddings: orthogonal and long
        _plant(model, 2, 3, sources, Q)  # relation head: a_i -> +b_i
        _plant(model, 1, 0, sources, -Q)  # suppression head: a_i -> -b_i
    adapter = adapter_for(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer than 30 pairs
        op = Operation(name="planted", category="custom", pairs=tuple(pairs))
        ops = [tokenize(op, word_tokenizer, adapter.vocab_size, k=k) for k in (1, 10)]
    settings = AnalysisSettings(source="embed", mlp_norm=norms, attn_norm=norms, fold_norms=norms)
    analyzer = Analyzer(adapter, word_tokenizer, settings, chunk_elements=CHUNK)
    _, scores = analyzer.analyze(ops, with_salient=False)
    assert_same_scores(scores, reference_operation_scores(adapter, ops, settings))
    for s in scores:
        assert s.n_pairs == 12
        assert s.scores[2][3] == 1.0 and s.suppression[2][3] == 0.0
        assert s.suppression[1][0] == 1.0 and s.scores[1][0] == 0.0
        assert s.top_heads(2) == [{"layer": 2, "head": 3, "score": 1.0}, s.top_heads(2)[1]]
        assert s.top_heads(2)[1]["score"] < 1.0
        top_suppression = s.top_heads(2, suppression=True)
        assert top_suppression[0] == {"layer": 1, "head": 0, "score": 1.0}
        assert top_suppression[1]["score"] < 1.0


# --- readable tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize("readable_only", [True, False])
def test_readable_only(word_tokenizer, readable_only: bool) -> None:
    """Special, unused and blank tokens are made the most amplified sources of one head and
    likely mappings of every head; ``readable_only`` keeps them out of the report."""
    model = tiny_model("llama", len(word_tokenizer))
    adapter = adapter_for(model)
    unreadable = set(range(N_SPECIAL))
    lw = adapter.layer(0)
    W_VO = lw.W_V[adapter.kv_head(1)] @ lw.W_O[1]
    left, _, _ = torch.linalg.svd(W_VO)  # x @ W_VO is longest for x = left[:, 0]
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        # Rows close to head (0, 1)'s top left singular vector: the most amplified inputs.
        rows = left[:, 0] + 0.1 * torch.randn(N_SPECIAL, adapter.d_model, generator=gen) / 8
        model.model.embed_tokens.weight[:N_SPECIAL] = rows
        model.lm_head.weight[:N_SPECIAL] *= 20  # huge logits, of either sign, from every head
    settings = AnalysisSettings(
        source="embed", mlp_norm=False, attn_norm=False, fold_norms=False, readable_only=readable_only
    )
    analyzer = Analyzer(adapter, word_tokenizer, settings, chunk_elements=CHUNK)
    assert torch.equal(analyzer.readable_mask(), readable_tokens(word_tokenizer, adapter.vocab_size))
    assert set((~analyzer.readable_mask()).nonzero().flatten().tolist()) == unreadable
    heads, _ = analyzer.analyze([])
    assert_same_salient(heads, reference_salient(adapter, word_tokenizer, settings))
    sources = {s.token_id for h in heads for s in h.salient}
    mapped = {m.token_id for h in heads for s in h.salient for m in s.mappings}
    head01 = next(h for h in heads if (h.layer, h.head) == (0, 1))
    if readable_only:
        assert not (sources | mapped) & unreadable
        assert all(
            len(h.salient) == STORED_SOURCES and all(len(s.mappings) == 5 for s in h.salient) for h in heads
        )
    else:
        assert head01.salient[0].token_id in unreadable
        assert mapped & unreadable


def test_many_pairs_are_scanned_in_bounded_parts(word_tokenizer) -> None:
    """More (head, pair) rows than a vocabulary chunk's logits may hold at once go in parts
    (memory stays flat as pairs grow), and the scores are still the reference's."""
    from describer.maps import scan

    adapter = adapter_for(tiny_model("llama", len(word_tokenizer)))
    words = letter_words(WORD_TOKENIZER_WORDS)
    rng = random.Random(9)
    pairs = tuple({(rng.choice(words), rng.choice(words)) for _ in range(900)})
    ops = [
        tokenize(
            Operation(name="many", category="custom", pairs=pairs), word_tokenizer, adapter.vocab_size, k=5
        )
    ]
    assert ops[0].n_pairs * adapter.n_heads > 3 * scan.PART_ROWS  # at least three parts
    settings = AnalysisSettings(source="embed", mlp_norm=True, attn_norm=True, fold_norms=True)
    sizes: list[int] = []  # rows of each part's logits (its distinct head × source rows)
    analyzer = Analyzer(adapter, word_tokenizer, settings, chunk_elements=CHUNK)
    mm = analyzer.mm
    analyzer.mm = lambda a, b: sizes.append(len(a)) or mm(a, b)
    _, scores = analyzer.analyze(ops, with_salient=False)
    assert max(sizes) <= scan.PART_ROWS < sum(sizes[: len(sizes) // adapter.n_layers])
    assert_same_scores(scores, reference_operation_scores(adapter, ops, settings))
    assert max(max(row) for row in scores[0].scores) > 0
