"""A slow, settings-general MAPS loop that the tests check the analyzer's shortcuts against.

For each layer and head it materialises the ``d×d`` matrix ``W_VO = W_V W_O``, maps every
source token through it and multiplies by the whole unembedding: nothing is shared between
heads, nothing is streamed and nothing stops early, so the analyzer's QR amplification factor,
chunked vocabulary and early stopping are checked for every weights-only source and norm
setting. It reads the weights through the adapters, as the analyzer does; the independent
check of the paper's recipe is ``describer.maps.reference``.

Conventions are the Analyzer's (see ``AnalysisSettings``): layer 0 reads the token
embedding and later layers read ``settings.source`` (block 0's MLP after its pre-MLP norm
when ``settings.mlp_norm``); with ``settings.attn_norm`` the source goes through the layer's
pre-attention norm; with ``settings.fold_norms`` ``W_O`` gets the post-attention norm's scale,
the unembedding the final norm's (``Norm.fold_into_columns``) and the MLP source Gemma's
post-MLP norm. A pair's target is in the top k of a row iff fewer than k tokens have a
strictly greater logit; suppression uses the negated row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from describer.maps.adapters.base import Adapter
from describer.maps.operations import TokenizedOperation
from describer.maps.results import HeadSalient, MappedToken, OperationScores, SalientToken
from describer.maps.settings import AnalysisSettings

Head = tuple[int, int]
PAIRS_PER_BLOCK = 256
"""Pairs whose full logit rows are held at once (only to bound memory)."""


def all_heads(adapter: Adapter) -> list[Head]:
    return [(layer, head) for layer in range(adapter.n_layers) for head in range(adapter.n_heads)]


def readable_tokens(tokenizer: object, vocab_size: int) -> Tensor:
    """True for tokens that are not special, unused (``<…>``), control/byte-fallback or blank."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    bad = re.compile(r"^<[^<>\s]+>$|[\x00-\x08\x0b-\x1f\x7f\ufffd]")
    keep = []
    for i in range(vocab_size):
        text = tokenizer.decode([i])  # type: ignore[attr-defined]
        keep.append(i not in special and text.strip() != "" and not bad.search(text))
    return torch.tensor(keep)


class ReferenceModel:
    """The weights one head needs, read straight from the adapter."""

    def __init__(self, adapter: Adapter, settings: AnalysisSettings) -> None:
        self.adapter, self.settings = adapter, settings
        if settings.source == "residual":
            raise ValueError("the reference covers the weights-only sources, not residual")
        self.embedding = adapter.embedding()  # [V, d]
        if settings.source == "embed":
            self.later_source = self.embedding
        else:
            with torch.no_grad():
                mlp = adapter.mlp0(self.embedding, pre_norm=settings.mlp_norm, post_norm=settings.fold_norms)
            self.later_source = mlp if settings.source == "mlp0" else self.embedding + mlp
        U = adapter.unembedding()  # [d, V]
        self.U = adapter.final_norm().fold_into_columns(U) if settings.fold_norms else U
        self._inputs: dict[int, Tensor] = {}

    @torch.no_grad()
    def inputs(self, layer: int) -> Tensor:
        """What layer ``layer``'s value projection reads for every vocabulary token: ``[V, d]``."""
        if layer not in self._inputs:
            self._inputs.clear()  # one layer at a time is enough and keeps memory flat
            x = self.embedding if layer == 0 else self.later_source
            if self.settings.attn_norm:
                x = self.adapter.layer(layer).attn_norm(x)
            self._inputs[layer] = x
        return self._inputs[layer]

    def W_VO(self, layer: int, head: int) -> Tensor:
        lw = self.adapter.layer(layer)
        W_O = lw.W_O[head]
        if self.settings.fold_norms and lw.post_attn_norm is not None:
            W_O = lw.post_attn_norm.fold(W_O)
        return lw.W_V[self.adapter.kv_head(head)] @ W_O  # [d, d]


@torch.no_grad()
def reference_operation_scores(
    adapter: Adapter,
    tokenized_ops: Sequence[TokenizedOperation],
    settings: AnalysisSettings,
    heads: Iterable[Head] | None = None,
) -> list[OperationScores]:
    """Relation and suppression scores of each operation for each head (``heads``: a subset;
    the others are NaN)."""
    m = ReferenceModel(adapter, settings)
    heads = sorted(all_heads(adapter) if heads is None else heads)
    L, H = adapter.n_layers, adapter.n_heads
    scores = [torch.full((L, H), float("nan")) for _ in tokenized_ops]
    suppression = [torch.full((L, H), float("nan")) for _ in tokenized_ops]
    for layer, head in heads:
        x, W_VO = m.inputs(layer), m.W_VO(layer, head)
        for i, op in enumerate(tokenized_ops):
            hits = suppressed = 0
            for start in range(0, op.n_pairs, PAIRS_PER_BLOCK):
                sources = torch.tensor(op.source_ids[start : start + PAIRS_PER_BLOCK], device=x.device)
                targets = torch.tensor(op.target_ids[start : start + PAIRS_PER_BLOCK], device=x.device)
                rows = x[sources] @ W_VO @ m.U  # [pairs, V]: logits over the whole vocabulary
                target = rows.gather(1, targets[:, None])
                hits += int(((rows > target).sum(1) < op.k).sum())
                suppressed += int(((-rows > -target).sum(1) < op.k).sum())
            scores[i][layer, head] = hits / op.n_pairs
            suppression[i][layer, head] = suppressed / op.n_pairs
    return [
        OperationScores(
            name=op.operation.name,
            category=op.operation.category,
            k=op.k,
            n_pairs=op.n_pairs,
            scores=scores[i].tolist(),
            suppression=suppression[i].tolist(),
        )
        for i, op in enumerate(tokenized_ops)
    ]


@torch.no_grad()
def reference_salient(
    adapter: Adapter,
    tokenizer: object,
    settings: AnalysisSettings,
    heads: Iterable[Head] | None = None,
) -> list[HeadSalient]:
    """Each head's top-N most amplified source tokens and the top-k tokens each maps to."""
    m = ReferenceModel(adapter, settings)
    readable = None
    if settings.readable_only:
        readable = readable_tokens(tokenizer, adapter.vocab_size).to(m.embedding.device)
    text = lambda i: tokenizer.decode([i])  # type: ignore[attr-defined]  # noqa: E731
    results = []
    for layer, head in sorted(all_heads(adapter) if heads is None else heads):
        x, W_VO = m.inputs(layer), m.W_VO(layer, head)
        out = x @ W_VO  # [V, d]: the head's output for every source token
        amplification = out.norm(dim=-1) / x.norm(dim=-1)
        if readable is not None:
            amplification = amplification.masked_fill(~readable, float("-inf"))
        top_amp, top_src = amplification.topk(settings.top_tokens)
        salient = []
        for amp, source in zip(top_amp.tolist(), top_src.tolist(), strict=True):
            if amp == float("-inf"):
                continue
            logits = out[source] @ m.U
            negated = -logits
            if readable is not None:
                logits = logits.masked_fill(~readable, float("-inf"))
                negated = negated.masked_fill(~readable, float("-inf"))
            values, targets = logits.topk(settings.top_mappings)
            low, low_targets = negated.topk(settings.top_mappings)  # the most negative logits, lowest first
            suppressed = [
                MappedToken(token=text(t), token_id=t, logit=-v)
                for v, t in zip(low.tolist(), low_targets.tolist(), strict=True)
                if v != float("-inf")
            ]
            mappings = [
                MappedToken(token=text(t), token_id=t, logit=v)
                for v, t in zip(values.tolist(), targets.tolist(), strict=True)
                if v != float("-inf")
            ]
            salient.append(
                SalientToken(
                    token=text(source),
                    token_id=source,
                    amplification=amp,
                    mappings=mappings,
                    suppressed=suppressed,
                )
            )
        results.append(HeadSalient(layer=layer, head=head, salient=salient))
    return results
