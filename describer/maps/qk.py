"""A static view of a head's QK circuit: which key tokens the query side of a token prefers,
read from the weights (the ``E·W_Q·W_Kᵀ·Eᵀ`` analogue of MAPS's OV mapping; docs/qk.md).

For layer L, head h (key/value head g = ``kv_head(h)``), a query token a and a key token b:

    q(a) = q_norm(attn_norm(x_a) · W_Q[h] + b_Q[h])
    k(b) = k_norm(attn_norm(x_b) · W_K[g] + b_K[g])
    score(a, b) = softcap(scale · q(a) · M k(b))

exactly as the model computes its attention logit, except for two stated simplifications:

- ``x`` is the token's representation alone (``source``: the embedding, as layer 0 receives it,
  or block 0's weights-only ``embed+mlp0``, as MAPS builds its sources; ``Analyzer.source_rows``),
  not the residual stream in a context;
- ``M`` stands in for the positions. With rotary embeddings the logit depends on the offset
  d = m − n between the query's and the key's positions only, through a rotation ``R(−dθ_i)`` of
  each frequency pair: ``rotary="mean"`` uses the mean rotation over offsets ``1 … max_offset``
  (per pair ``mean_d R(−dθ_i)``; dims a partial rotary leaves alone stay as they are),
  ``rotary="none"`` the identity (offset 0: a token attending to itself, where the two rotations
  cancel). Any list of offsets can be given; one offset d gives the exact logit for a key d
  positions before the query. GPT-2's learned positions are added to the residual, not to q or k:
  its view keeps the token terms only (position embeddings left out).

The vocabulary is streamed in chunks: nothing ``vocab × vocab`` is ever built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from pydantic import BaseModel
from torch import Tensor

from describer.errors import HeadmapsError
from describer.maps.adapters.base import Adapter, Norm
from describer.maps.analyzer import Analyzer, _merge_topk
from describer.maps.settings import AnalysisSettings

RotaryMode = Literal["mean", "none"]
QK_SOURCES = ("embed", "embed+mlp0", "mlp0")
MAX_OFFSET = 64
"""Default offsets averaged over by ``rotary="mean"``: 1 … 64 positions back."""
Progress = Callable[[str, int, int], None]


def rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


@dataclass
class HeadQK:
    """One head's QK circuit, ready to score token representations (rows of the residual)."""

    attn_norm: Norm
    W_Q: Float[Tensor, "d hd"]
    b_Q: Float[Tensor, " hd"] | None
    q_norm: Norm | None
    W_K: Float[Tensor, "d hd"]
    b_K: Float[Tensor, " hd"] | None
    k_norm: Norm | None
    scale: float
    softcap: float | None
    key_cos: Float[Tensor, " r"] | None
    """The key-side operator ``M`` on the first ``r`` dims: ``k·cos + rotate_half(k)·sin``."""
    key_sin: Float[Tensor, " r"] | None
    rotary: str
    """The rotary handling in words."""

    def queries(self, rows: Float[Tensor, "n d"]) -> Float[Tensor, "n hd"]:
        q = self.attn_norm(rows) @ self.W_Q
        if self.b_Q is not None:
            q = q + self.b_Q
        return self.q_norm(q) if self.q_norm is not None else q

    def keys(self, rows: Float[Tensor, "n d"]) -> Float[Tensor, "n hd"]:
        """``scale · M k(b)``: a query's scores are its dot products with these."""
        k = self.attn_norm(rows) @ self.W_K
        if self.b_K is not None:
            k = k + self.b_K
        if self.k_norm is not None:
            k = self.k_norm(k)
        if self.key_cos is not None:
            r = self.key_cos.shape[0]
            k_rot = k[..., :r] * self.key_cos + rotate_half(k[..., :r]) * self.key_sin
            k = torch.cat([k_rot, k[..., r:]], dim=-1)
        return k * self.scale

    def scores(self, q: Float[Tensor, "a hd"], k: Float[Tensor, "b hd"]) -> Float[Tensor, "a b"]:
        s = q @ k.T
        return self.softcap * torch.tanh(s / self.softcap) if self.softcap else s


def check_head(adapter: Adapter, layer: int, head: int) -> None:
    if not 0 <= layer < adapter.n_layers:
        raise HeadmapsError(f"layer {layer} out of range: the model has layers 0…{adapter.n_layers - 1}")
    if not 0 <= head < adapter.n_heads:
        raise HeadmapsError(f"head {head} out of range: each layer has heads 0…{adapter.n_heads - 1}")


@torch.inference_mode()
def head_qk(
    adapter: Adapter,
    layer: int,
    head: int,
    rotary: RotaryMode = "mean",
    offsets: Sequence[int] | None = None,
    device: str | torch.device = "cpu",
) -> HeadQK:
    """Head ``layer.head``'s QK circuit; ``offsets`` (default ``1 … MAX_OFFSET``) are the
    query−key distances the rotation is averaged over with ``rotary="mean"``."""
    check_head(adapter, layer, head)
    lw, ex = adapter.layer(layer), adapter.qk_extras(layer)
    g = adapter.kv_head(head)
    dev = torch.device(device)

    def on(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.to(dev)

    def norm_on(n: Norm | None) -> Norm | None:
        return None if n is None else Norm(n.kind, n.weight.to(dev), on(n.bias), n.eps)

    key_cos = key_sin = None
    if ex.rotary is None:
        note = "no rotary: learned absolute positions, token terms only (position embeddings left out)"
    else:
        offs = list(range(1, MAX_OFFSET + 1)) if offsets is None else [int(d) for d in offsets]
        if rotary == "none":
            offs = [0]
        if not offs or min(offs) < 0:
            raise HeadmapsError("rotary offsets must be a non-empty list of distances ≥ 0")
        cos, sin = ex.rotary(torch.arange(max(offs) + 1))
        at = torch.tensor(offs)
        # cos/sin at position d carry the rotary's attention scaling s once; q·k carries it twice.
        s = cos[0]
        key_cos = (s * cos[at].mean(0)).to(dev)
        key_sin = (-s * sin[at].mean(0)).to(dev)
        r, hd = cos.shape[-1], adapter.head_dim
        dims = f"all {hd} dims" if r == hd else f"{r} of {hd} dims (the other {hd - r} unrotated)"
        if rotary == "none":
            note = f"rotary on {dims}, taken at offset 0 (no rotation: position-independent)"
        elif len(offs) == 1:
            note = f"rotary on {dims}, exact for a key {offs[0]} positions before the query"
        else:
            note = (
                f"rotary on {dims}, each frequency pair's rotation averaged over query−key "
                f"offsets {min(offs)}…{max(offs)}"
            )
    return HeadQK(
        attn_norm=norm_on(lw.attn_norm),
        W_Q=lw.W_Q[head].to(dev),
        b_Q=None if ex.b_Q is None else ex.b_Q[head].to(dev),
        q_norm=norm_on(ex.q_norm),
        W_K=lw.W_K[g].to(dev),
        b_K=None if ex.b_K is None else ex.b_K[g].to(dev),
        k_norm=norm_on(ex.k_norm),
        scale=ex.scale,
        softcap=ex.softcap,
        key_cos=key_cos,
        key_sin=key_sin,
        rotary=note,
    )


# --- the view: each query token's preferred keys, over the vocabulary --------------------------


class QKKey(BaseModel):
    token: str
    token_id: int
    score: float
    """The static attention logit."""
    z: float
    """Standard deviations above the query's mean score over the readable vocabulary."""


class QKQuery(BaseModel):
    token: str
    token_id: int | None
    """None for the average query (the mean query vector over the readable vocabulary)."""
    spread: float
    """Standard deviation of this query's scores over the readable vocabulary's keys."""
    keys: list[QKKey]


class QKView(BaseModel):
    model: str
    family: str
    layer: int
    head: int
    source: str
    rotary: str
    queries: list[QKQuery]
    average: QKQuery
    """The keys the average query prefers: what the head's scores favour whatever the query."""
    agreement: str
    """What the measurement (docs/qk.md) says of this view for the family."""


def resolve_queries(tokenizer: object, texts: Sequence[str]) -> list[int]:
    """Each text as one token id, or an error naming the pieces it splits into."""
    ids = []
    for text in texts:
        pieces = tokenizer.encode(text, add_special_tokens=False)  # type: ignore[attr-defined]
        if len(pieces) != 1:
            shown = [tokenizer.decode([p]) for p in pieces]  # type: ignore[attr-defined]
            raise HeadmapsError(f"--query {text!r} is not one token (it tokenizes to {shown}); give one token")
        ids.append(int(pieces[0]))
    return ids


def _chunks(vocab: int, step: int) -> list[tuple[int, int]]:
    return [(start, min(start + step, vocab)) for start in range(0, vocab, step)]


@torch.inference_mode()
def qk_view(
    analyzer: Analyzer,
    layer: int,
    head: int,
    *,
    query_ids: Sequence[int] | None = None,
    n_queries: int = 10,
    top_k: int = 10,
    rotary: RotaryMode = "mean",
    chunk: int = 8192,
    progress: Progress | None = None,
) -> tuple[list[QKQuery], QKQuery, str]:
    """The top ``top_k`` readable keys of each query (``query_ids``, or else the ``n_queries``
    readable tokens whose scores spread most over the readable vocabulary) and of the average
    query, and the rotary handling in words."""
    qk = head_qk(analyzer.adapter, layer, head, rotary, device=analyzer.device)
    mask = analyzer.readable_mask()
    n_readable = int(mask.sum())
    if n_readable < 2:
        raise HeadmapsError("the tokenizer has fewer than two readable tokens")
    spans = _chunks(analyzer.vocab_size, chunk)

    def rows(start: int, stop: int) -> Tensor:
        return analyzer.source_rows(layer, slice(start, stop))

    hd = qk.W_Q.shape[1]
    q_sum = torch.zeros(hd, dtype=torch.float64, device=analyzer.device)
    chosen = list(query_ids) if query_ids is not None else []
    if query_ids is None:
        # Pass 1: the keys' covariance C, so that a query's spread is sqrt(q C qᵀ).
        k_sum = torch.zeros_like(q_sum)
        k_sq = torch.zeros(hd, hd, dtype=torch.float64, device=analyzer.device)
        for i, (start, stop) in enumerate(spans):
            k = qk.keys(rows(start, stop))[mask[start:stop]].double()
            k_sum += k.sum(0)
            k_sq += k.T @ k
            if progress:
                progress("key statistics", i + 1, len(spans))
        mean = k_sum / n_readable
        cov = k_sq / n_readable - torch.outer(mean, mean)
        best_v = torch.full((1, 0), float("-inf"), device=analyzer.device)
        best_i = torch.zeros((1, 0), dtype=torch.long, device=analyzer.device)
    # Pass 2: the average query (and, choosing queries, each one's spread).
    for i, (start, stop) in enumerate(spans):
        q = qk.queries(rows(start, stop))
        q_sum += q[mask[start:stop]].double().sum(0)
        if query_ids is None:
            spread = ((q.double() @ cov) * q.double()).sum(-1).clamp_min(0).sqrt().float()
            spread = spread.masked_fill(~mask[start:stop], float("-inf"))
            best_v, best_i = _merge_topk(best_v, best_i, spread[None], start, n_queries)
        if progress:
            progress("queries", i + 1, len(spans))
    if query_ids is None:
        chosen = [int(t) for t, v in zip(best_i[0], best_v[0], strict=True) if torch.isfinite(v)]
    ids = torch.tensor(chosen, dtype=torch.long, device=analyzer.device)
    Q = torch.cat([qk.queries(analyzer.source_rows(layer, ids)), (q_sum / n_readable).float()[None]])
    # Pass 3: every query's scores over the readable keys: running top-k, mean and spread.
    n = Q.shape[0]
    top_v = torch.full((n, 0), float("-inf"), device=analyzer.device)
    top_i = torch.zeros((n, 0), dtype=torch.long, device=analyzer.device)
    s_sum = torch.zeros(n, dtype=torch.float64, device=analyzer.device)
    s_sq = torch.zeros_like(s_sum)
    for i, (start, stop) in enumerate(spans):
        s = qk.scores(Q, qk.keys(rows(start, stop)))
        keep = mask[start:stop]
        s_sum += s[:, keep].double().sum(1)
        s_sq += s[:, keep].double().pow(2).sum(1)
        top_v, top_i = _merge_topk(top_v, top_i, s.masked_fill(~keep, float("-inf")), start, top_k)
        if progress:
            progress("key scores", i + 1, len(spans))
    mean = s_sum / n_readable
    std = (s_sq / n_readable - mean.pow(2)).clamp_min(0).sqrt()
    out = []
    for j in range(n):
        keys = [
            QKKey(
                token=analyzer.token_text(int(t)),
                token_id=int(t),
                score=float(v),
                z=float((v - mean[j]) / std[j].clamp_min(1e-12)),
            )
            for t, v in zip(top_i[j], top_v[j], strict=True)
            if torch.isfinite(v)
        ]
        is_avg = j == n - 1
        out.append(
            QKQuery(
                token="(average query)" if is_avg else analyzer.token_text(chosen[j]),
                token_id=None if is_avg else chosen[j],
                spread=float(std[j]),
                keys=keys,
            )
        )
    return out[:-1], out[-1], qk.rotary


def qk_analyzer(
    adapter: Adapter, tokenizer: object, source: str = "embed", device: str | torch.device = "cpu"
) -> Analyzer:
    """An ``Analyzer`` used only for its token representations, texts and readable mask."""
    if source not in QK_SOURCES:
        raise HeadmapsError(f"unknown source {source!r} for the QK view; use one of: {', '.join(QK_SOURCES)}")
    return Analyzer(adapter, tokenizer, AnalysisSettings(source=source), device)  # type: ignore[arg-type]
