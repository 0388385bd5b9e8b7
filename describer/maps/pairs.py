"""An analysis' operation pairs as flat tensors, and the operation scores from their ranks."""

from __future__ import annotations

from collections.abc import Sequence

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
    operations: Sequence[TokenizedOperation], pair_op: Tensor, pair_k: Tensor, greater: Tensor, less: Tensor
) -> list[OperationScores]:
    """Relation and suppression scores from each pair's rank counts ``[layers, heads, pairs]``: how
    many tokens beat the target (``greater``) and the negated target (``less``)."""
    hit = (greater < pair_k).float()
    suppressed = (less < pair_k).float()
    results = []
    for index, top in enumerate(operations):
        sel = pair_op == index
        results.append(
            OperationScores(
                name=top.operation.name,
                category=top.operation.category,
                k=top.k,
                n_pairs=top.n_pairs,
                scores=hit[:, :, sel].mean(-1).tolist(),
                suppression=suppressed[:, :, sel].mean(-1).tolist(),
            )
        )
    return results
