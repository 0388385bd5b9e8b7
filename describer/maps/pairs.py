"""An analysis' operation pairs as flat tensors, and the operation scores from their ranks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from describer.maps.operations import TokenizedOperation
from describer.maps.results import OperationScores


def flatten_pairs(operations: Sequence[TokenizedOperation]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every operation's pairs in one list: source ids, target ids, each pair's k and operation."""
    src, tgt, ks, op = [], [], [], []
    for index, top in enumerate(operations):
        src += top.source_ids
        tgt += top.target_ids
        ks += [top.k] * top.n_pairs
        op += [index] * top.n_pairs
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return as_long(src), as_long(tgt), as_long(ks), as_long(op)


def pair_scores(
    operations: Sequence[TokenizedOperation],
    pair_op: Tensor,
    pair_k: Tensor,
    greater: Tensor,
    less: Tensor,
    token_text: Callable[[int], str] | None = None,
) -> list[OperationScores]:
    """Relation and suppression scores from each pair's rank counts ``[layers, heads, pairs]``: how
    many tokens beat the target (``greater``) and the negated target (``less``). With
    ``token_text``, each operation also keeps its pairs and their counts (``OperationScores.ranks``)."""
    results = []
    for index, top in enumerate(operations):
        sel = pair_op == index
        k = pair_k[sel][:1]  # every pair of the operation has its k
        # count / n in float64, as Python's ``sum(hits) / n``: stored scores are then exactly
        # the mean of the stored pairs' hits.
        hits = (greater[:, :, sel] < k).sum(-1).double() / top.n_pairs
        suppressed = (less[:, :, sel] < k).sum(-1).double() / top.n_pairs
        kept = {}
        if token_text is not None:
            # int32 is enough (a count is below the vocabulary size) and halves the memory of
            # a 5,000-head model's 50,000 pairs.
            kept = dict(
                pairs=[
                    (token_text(s), s, token_text(t), t)
                    for s, t in zip(top.source_ids, top.target_ids, strict=True)
                ],
                ranks=greater[:, :, sel].to(torch.int32),
                suppressed_ranks=less[:, :, sel].to(torch.int32),
            )
        results.append(
            OperationScores(
                name=top.operation.name,
                category=top.operation.category,
                k=top.k,
                n_pairs=top.n_pairs,
                scores=hits.tolist(),
                suppression=suppressed.tolist(),
                **kept,
            )
        )
    return results
