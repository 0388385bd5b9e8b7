"""``--source paper`` of the fast analyzer equals the paper's loop (``describer.maps.reference``,
which reads the model's own modules and shares nothing with the analyzer), on tiny random
models of every family and on the real qwen weights."""

from __future__ import annotations

import random

import pytest
import torch

from describer.maps.adapters import adapter_for
from describer.maps.analyzer import Analyzer
from describer.maps.operations import Operation, TokenizedOperation
from describer.maps.reference import paper_operation_scores, paper_salient
from describer.maps.settings import SourceChoice
from tests._fidelity import FAMILIES, VOCAB, build


class Tokenizer:
    all_special_ids: list[int] = []

    def batch_decode(self, ids: list[list[int]]) -> list[str]:
        return [f" t{i[0]}" for i in ids]


def random_ops(embedding: torch.Tensor, seed: int = 0) -> list[TokenizedOperation]:
    """Random pairs, sources with a non-zero embedding: a padding token's zero row ties every
    logit at 0, where top-k is arbitrary (the exemption for ties)."""
    rng = random.Random(seed)
    usable = [i for i in range(embedding.shape[0]) if float(embedding[i].norm()) > 0]
    ops = []
    for index, k in enumerate((1, 5, 20)):
        pairs = [(rng.choice(usable), rng.randrange(embedding.shape[0])) for _ in range(40)]
        op = Operation(
            name=f"op{index}", category="custom", pairs=tuple((f"s{s}", f"t{t}") for s, t in pairs)
        )
        ops.append(TokenizedOperation(op, k, tuple(s for s, _ in pairs), tuple(t for _, t in pairs), 0))
    return ops


def check_equal(
    model: torch.nn.Module, tokenizer: object, heads: list[tuple[int, int]] | None = None
) -> None:
    adapter = adapter_for(model)
    settings = SourceChoice(source="paper").settings(adapter.config.model_type, readable_only=False)
    ops = random_ops(adapter.embedding_module().weight.detach())
    analyzer = Analyzer(adapter, tokenizer, settings, chunk_elements=1 << 12)
    fast_heads, fast_scores = analyzer.analyze(ops)
    ref_scores = paper_operation_scores(model, ops, heads=heads)
    for fast, ref in zip(fast_scores, ref_scores, strict=True):
        for table in ("scores", "suppression"):
            f, r = torch.tensor(getattr(fast, table)), torch.tensor(getattr(ref, table))
            chosen = ~torch.isnan(r)
            assert torch.equal(f[chosen], r[chosen]), (fast.name, table)
    texts = [analyzer.token_text(i) for i in range(adapter.vocab_size)]
    ref_heads = paper_salient(model, texts, settings.top_tokens, settings.top_mappings, heads=heads)
    by_head = {(h.layer, h.head): h for h in fast_heads}
    for ref in ref_heads:
        fast = by_head[(ref.layer, ref.head)]
        assert [s.token_id for s in fast.salient] == [s.token_id for s in ref.salient]
        for a, b in zip(fast.salient, ref.salient, strict=True):
            assert a.amplification == pytest.approx(b.amplification, rel=1e-4)
            for what in ("mappings", "suppressed"):
                got, want = getattr(a, what), getattr(b, what)
                assert want and [m.token_id for m in got] == [m.token_id for m in want], what
                assert [m.logit for m in got] == pytest.approx([m.logit for m in want], rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_paper_source_equals_the_papers_loop(name: str) -> None:
    check_equal(build(name), Tokenizer())


def test_the_reference_reads_weights_without_the_adapters() -> None:
    import describer.maps.reference as reference

    with open(reference.__file__, encoding="utf-8") as handle:
        source = handle.read()
    assert "adapters" not in source.split('"""', 2)[2]  # only the docstring names them
    assert "analyzer" not in source.split('"""', 2)[2]


@pytest.mark.slow
def test_paper_source_equals_the_papers_loop_on_qwen() -> None:
    from tests._real import real_model

    loaded = real_model("qwen2.5-coder-0.5b-instruct")
    check_equal(loaded.model, loaded.tokenizer, heads=[(0, 3), (11, 0), (23, 13)])


assert VOCAB > 40
