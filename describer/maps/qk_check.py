"""How well a head's static QK scores (``describer.maps.qk``) order the keys the model actually
prefers: the measurement behind docs/qk.md, for one head on demand or every head in
``benchmarks/bench_qk.py``.

The inputs are the pattern scores' random sequences (``sample_sequences``: a prefix, ``length``
distinct random readable tokens, the same tokens again), run with eager attention. Only the
first half is used: for a query at position m with at least ``min_keys`` keys before it, the keys
are the random tokens at positions 1 … m−1 (the prefix, an attention sink, and the query itself
left out), all distinct. Within such a row the log-probability differs from the attention logit
by one constant, so the Spearman rank correlation between the static scores of those keys and
the model's log-probabilities says how well the static view orders what the head prefers. A
head's agreement is the median over its rows; the same run gives two baselines: ``position``
(the nearer key wins) and ``shuffled`` (the static scores permuted among the row's keys).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from describer.maps.adapters.base import Adapter
from describer.maps.attention import eager_attention, sample_sequences
from describer.maps.patterns import PatternSettings
from describer.maps.qk import HeadQK

CHECK_SETTINGS = PatternSettings(length=48, batch=8, seed=0)
MIN_KEYS = 8
Rows = Callable[[int, Tensor], Tensor]
"""``rows(layer, ids)``: token representations ``[n, d]`` for ``ids``."""


@torch.inference_mode()
def attention_logprobs(
    adapter: Adapter, ids: Int[Tensor, "B T"], layers: Iterable[int] | None = None
) -> dict[int, Float[Tensor, "B H T T"]]:
    """The log attention probabilities of ``layers`` (default: all) on ``ids``, one forward pass."""
    wanted = list(range(adapter.n_layers)) if layers is None else sorted(set(layers))
    kept: dict[int, Tensor] = {}

    def hook(layer: int) -> Callable[..., None]:
        def record(module: object, args: object, output: object) -> None:
            kept[layer] = output[1].detach().float().clamp_min(1e-38).log()  # type: ignore[index]

        return record

    handles = [adapter.attention_module(L).register_forward_hook(hook(L)) for L in wanted]
    try:
        with eager_attention(adapter.model):
            adapter.model.base_model(
                input_ids=ids.to(adapter.embedding_module().weight.device), use_cache=False
            )
    finally:
        for handle in handles:
            handle.remove()
    return {L: kept[L].cpu() for L in wanted}


def _rows(length: int, min_keys: int) -> tuple[Tensor, Tensor]:
    """The query positions used and, per row, which of the key positions 1 … length−1 it has."""
    ms = torch.arange(min_keys + 1, length + 1)
    return ms, torch.arange(1, length)[None, :] < ms[:, None]


def masked_spearman(x: Tensor, y: Tensor, valid: Tensor) -> Tensor:
    """Spearman over the ``valid`` entries of each row of ``[..., R, K]`` tensors (``valid``
    ``[R, K]``; ties get the lowest rank), all rows at once."""
    v = valid.to(x.dtype)

    def ranks(t: Tensor) -> Tensor:
        r = ((t[..., None, :] < t[..., :, None]).to(torch.float64) * v[:, None, :].double()).sum(-1)
        n = v.double().sum(-1, keepdim=True)
        return (r - (r * v).sum(-1, keepdim=True) / n) * v

    rx, ry = ranks(x), ranks(y)
    return (rx * ry).sum(-1) / (rx.norm(dim=-1) * ry.norm(dim=-1)).clamp_min(1e-12)


def row_agreement(
    static: Float[Tensor, "B T T"], logp: Float[Tensor, "B T T"], length: int, min_keys: int = MIN_KEYS
) -> Tensor:
    """Spearman of each first-half row m (keys 1 … m−1), all rows flattened."""
    ms, valid = _rows(length, min_keys)
    x, y = static[:, ms, 1:length], logp[:, ms, 1:length]
    return masked_spearman(x, y, valid).reshape(-1)


def position_scores(T: int) -> Float[Tensor, "T T"]:
    """The position-only baseline: the nearer key scores higher (−offset)."""
    return -(torch.arange(T)[:, None] - torch.arange(T)[None, :]).float()


def shuffled_agreement(
    static: Tensor, logp: Tensor, length: int, gen: torch.Generator, min_keys: int = MIN_KEYS
) -> Tensor:
    """``row_agreement`` with the static scores permuted among each row's keys: the noise floor."""
    ms, valid = _rows(length, min_keys)
    perm = torch.arange(length - 1).repeat(len(ms), 1)
    for r, m in enumerate(ms.tolist()):
        perm[r, : m - 1] = torch.randperm(m - 1, generator=gen)
    x = static[:, ms, 1:length].gather(-1, perm.expand(static.shape[0], -1, -1))
    return masked_spearman(x, logp[:, ms, 1:length], valid).reshape(-1)


def static_matrix(qk: HeadQK, rows: Float[Tensor, "B T d"]) -> Float[Tensor, "B T T"]:
    """The static score of every (query position, key position) pair of each sequence."""
    return torch.einsum("btd,bsd->bts", qk.queries(rows), qk.keys(rows)).cpu()


@dataclass
class Agreement:
    static: float
    """Median over rows of the within-row Spearman between static scores and log-probabilities."""
    position: float
    shuffled: float
    rows: int


@torch.inference_mode()
def head_agreement(
    adapter: Adapter,
    tokenizer: object,
    layer: int,
    head: int,
    qk: HeadQK,
    rows: Rows,
    settings: PatternSettings = CHECK_SETTINGS,
) -> Agreement:
    """One head's agreement and baselines on ``settings``' random sequences."""
    ids = sample_sequences(tokenizer, adapter.vocab_size, settings)
    logp = attention_logprobs(adapter, ids, [layer])[layer][:, head]
    B, T = ids.shape
    device = qk.W_Q.device
    reps = rows(layer, ids.reshape(-1).to(device)).view(B, T, -1)
    static = static_matrix(qk, reps)
    L = settings.length
    agree = row_agreement(static, logp, L)
    position = row_agreement(position_scores(T).expand(B, T, T), logp, L)
    shuffled = shuffled_agreement(static, logp, L, torch.Generator().manual_seed(settings.seed))
    return Agreement(
        static=float(agree.median()),
        position=float(position.median()),
        shuffled=float(shuffled.median()),
        rows=len(agree),
    )
