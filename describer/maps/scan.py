"""One layer's pass over the vocabulary: where each operation pair's target ranks among a head's
logits for its source, and the top and bottom mappings of each head's salient sources (the
tokens a source most promotes, and those it most suppresses).

Memory stays bounded whatever the number of pairs or the model's size: pairs are taken in
batches whose sources' head outputs fit ``pair_bytes``, the vocabulary is streamed in chunks
whose logits fit the analyzer's ``chunk_elements`` (and whose unembedding columns do too), and a
pair stops being scored as soon as enough tokens have beaten its target on both sides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int
from torch import Tensor

if TYPE_CHECKING:
    from describer.maps.analyzer import Analyzer

PAIR_BYTES = 256 << 20
"""Budget for one batch of the pairs' head outputs (``[heads, sources, d]`` floats)."""
MAX_STEP = 1 << 17


def merge_topk(best_v: Tensor, best_i: Tensor, values: Tensor, offset: int, k: int) -> tuple[Tensor, Tensor]:
    """Running top-k over vocabulary chunks; ``values`` is ``[rows, c]`` for ids ``offset…``."""
    kk = min(k, values.shape[1])
    v, i = values.topk(kk, dim=1)
    all_v = torch.cat([best_v, v], dim=1)
    all_i = torch.cat([best_i, i + offset], dim=1)
    v, j = all_v.topk(min(k, all_v.shape[1]), dim=1)
    return v, all_i.gather(1, j)


def source_batches(
    n_sources: int, n_heads: int, d: int, pair_bytes: int = PAIR_BYTES
) -> list[tuple[int, int]]:
    """Ranges of source indices whose head outputs (``n_heads × sources × d`` floats) fit."""
    per = max(1, pair_bytes // max(n_heads * d * 4, 1))
    return [(a, min(a + per, n_sources)) for a in range(0, n_sources, per)]


PART_ROWS = 1024
"""The fewest (head, pair) rows scanned together against a vocabulary chunk."""

Mappings = tuple[Tensor, Tensor, Tensor, Tensor]
"""Salient sources' mappings, each ``[heads, n_top, top_mappings]``: the top logits and their ids
(highest first), then the bottom logits and their ids (most negative first); ``-inf`` / ``+inf``
where fewer tokens were allowed."""


def scan_layer(
    an: Analyzer,
    layer: int,
    unique_src: Int[Tensor, " u"],
    pair_row: Int[Tensor, " p"],
    pair_tgt: Int[Tensor, " p"],
    pair_k: Int[Tensor, " p"],
    salient: Int[Tensor, "n_heads n_top"] | None,
    pair_bytes: int = PAIR_BYTES,
) -> tuple[Tensor, Tensor, Mappings | None]:
    """Per head and pair, how many tokens' logits are above / below the target's (counted until
    both reach the pair's k), and the salient sources' top and bottom mappings."""
    H, P = an.n_heads, len(pair_row)
    greater = torch.zeros(H, P, dtype=torch.long, device=an.device)
    less = torch.zeros_like(greater)
    batches = source_batches(len(unique_src), H, an.d_model, pair_bytes) or [(0, 0)]
    top = None
    for i, (a, b) in enumerate(batches):
        idx = ((pair_row >= a) & (pair_row < b)).nonzero(as_tuple=True)[0]
        found = _scan(
            an, layer, unique_src[a:b], pair_row[idx] - a, pair_tgt[idx], pair_k[idx],
            salient if i == 0 else None,
        )  # fmt: skip
        greater[:, idx], less[:, idx] = found[0], found[1]
        if i == 0:
            top = found[2]
    return greater, less, top


def beaten(
    logits: Float[Tensor, "rows c"], target_logit: Float[Tensor, " rows"], targets: Tensor, start: int
) -> tuple[Tensor, Tensor]:
    """Per row, how many of a vocabulary chunk's columns (token ids ``start`` on) have a logit
    above / below the row's target logit, the target's own column not counted: it differs from
    ``target_logit`` by rounding (another summation order) and must not beat itself."""
    t = target_logit[:, None]
    # Counted in int32: a bool's plain ``sum`` first copies it to int64, eight times the
    # chunk's size, which then costs as much time as the comparison.
    n_greater = (logits > t).sum(1, dtype=torch.int32)
    n_less = (logits < t).sum(1, dtype=torch.int32)
    here = ((targets >= start) & (targets < start + logits.shape[1])).nonzero(as_tuple=True)[0]
    own = logits[here, targets[here] - start]
    n_greater[here] -= (own > t[here, 0]).int()
    n_less[here] -= (own < t[here, 0]).int()
    return n_greater, n_less


def _scan(
    an: Analyzer,
    layer: int,
    sources: Tensor,
    rows_of: Tensor,
    tgt: Tensor,
    pair_k: Tensor,
    salient: Tensor | None,
) -> tuple[Tensor, Tensor, Mappings | None]:
    H, P, d = an.n_heads, len(rows_of), an.d_model
    greater = torch.zeros(H, P, dtype=torch.long, device=an.device)
    less = torch.zeros_like(greater)
    active = torch.ones(H, P, dtype=torch.bool, device=an.device)
    Y_flat = target_logit = None
    if len(sources) and P:
        Y = an.head_outputs(layer, sources)  # [H, u, d]
        target_logit = torch.empty(H, P, device=an.device)
        per = max(1, (an.chunk_elements // max(H * d, 1)))
        for start in range(0, P, per):  # the targets' logits, a bounded slice of pairs at a time
            part = slice(start, min(start + per, P))
            u_t = an._unembed_columns(tgt[part])  # [d, p]
            target_logit[:, part] = an.einsum("hpd,dp->hp", Y[:, rows_of[part]], u_t)
        Y_flat = Y.reshape(H * len(sources), -1)
    else:
        active[:] = False
    n_top = 0 if salient is None else salient.shape[1]
    if salient is not None:
        Ys = torch.stack([an.head_outputs(layer, salient[h])[h] for h in range(H)])  # [H, N, d]
        Ys_flat = Ys.reshape(H * n_top, -1)
        k_map = an.settings.top_mappings
        best_v = torch.full((H * n_top, 0), float("-inf"), device=an.device)
        best_i = torch.zeros((H * n_top, 0), dtype=torch.long, device=an.device)
        # The bottom k, kept as the top k of the negated logits (same restrictions).
        low_v, low_i = best_v.clone(), best_i.clone()
        mask = an.readable_mask() if an.settings.readable_only else None
    start = 0
    column_cap = max(1024, an.chunk_elements // max(d, 1))
    while start < an.vocab_size:
        n_rows = int(active.sum()) + H * n_top
        if n_rows == 0:
            break
        step = int(min(max(an.chunk_elements // max(n_rows, 1), 1024), MAX_STEP, column_cap))
        stop = min(start + step, an.vocab_size)
        U_c = an._unembed_columns(slice(start, stop))
        if Y_flat is not None and active.any():
            h_all, p_all = active.nonzero(as_tuple=True)
            # The active (head, pair) rows in near-equal parts whose logits fit the chunk (of
            # at least PART_ROWS rows): a step has at least 1,024 columns, so without parts
            # many pairs would outgrow it.
            per_part = max(an.chunk_elements // (stop - start), PART_ROWS)
            parts = -(-len(h_all) // per_part)
            for h_idx, p_idx in zip(h_all.tensor_split(parts), p_all.tensor_split(parts), strict=True):
                rows = h_idx * len(sources) + rows_of[p_idx]
                uniq_rows, inverse = torch.unique(rows, return_inverse=True)
                logits = an.mm(Y_flat[uniq_rows], U_c)[inverse]  # [rows, c]
                n_greater, n_less = beaten(logits, target_logit[h_idx, p_idx], tgt[p_idx], start)
                greater[h_idx, p_idx] += n_greater
                less[h_idx, p_idx] += n_less
                k = pair_k[p_idx]
                # Once k tokens beat the target on both sides its top-k membership is settled.
                done = (greater[h_idx, p_idx] >= k) & (less[h_idx, p_idx] >= k)
                active[h_idx[done], p_idx[done]] = False
        if salient is not None:
            logits = an.mm(Ys_flat, U_c)
            negated = -logits
            if mask is not None:
                logits = logits.masked_fill(~mask[start:stop], float("-inf"))
                negated = negated.masked_fill(~mask[start:stop], float("-inf"))
            best_v, best_i = merge_topk(best_v, best_i, logits, start, k_map)
            low_v, low_i = merge_topk(low_v, low_i, negated, start, k_map)
        start = stop
    top = None
    if salient is not None:
        top = (
            best_v.view(H, n_top, -1),
            best_i.view(H, n_top, -1),
            -low_v.view(H, n_top, -1),
            low_i.view(H, n_top, -1),
        )
    return greater, less, top
