"""The paper's recipe, literally, as an independent check of the fast analyzer.

MAPS as its code computes it, one head at a time: a source token is represented by its
embedding at layer 0 and by block 0's MLP applied to block 0's pre-MLP norm of its embedding
(``mlp(ln2(x))``, the norm's weights kept) at later layers; the head maps it to
``x @ W_V @ W_O @ W_U`` with no biases and no other norm, and ``torch.topk`` over the whole
vocabulary decides whether a pair's target is among the top k (suppression: of the negated
row). Salient tokens are the ``top_tokens`` largest ``‖x W_VO‖ / ‖x‖``.

Nothing here is shared with the analyzer: the weights are read from the ``transformers``
modules by this file's own names for each family (not through ``describer.maps.adapters``), the
embedding is looked up through the model's own embedding module, block 0's norm and MLP are the
model's modules called as they are, and each head's ``d×d`` ``W_VO`` is materialised. It is
slow on purpose; the tests check ``--source paper`` of the analyzer against it, and
``benchmarks/bench_analyzer.py`` times the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from describer.maps.operations import TokenizedOperation
from describer.maps.results import HeadSalient, MappedToken, OperationScores, SalientToken

Head = tuple[int, int]
PAIRS_PER_BLOCK = 256
"""Pairs whose full logit rows are held at once (only to bound memory)."""


class PaperReference:
    """One model's weights, read the way the MAPS code reads them."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        config = getattr(model.config, "text_config", None) or model.config
        self.family = config.model_type
        self.d = config.hidden_size
        self.n_layers = config.num_hidden_layers
        self.n_heads = config.num_attention_heads
        self.n_kv = getattr(config, "num_key_value_heads", None) or self.n_heads
        self.hd = getattr(config, "head_dim", None) or self.d // self.n_heads
        base = model.base_model
        self.blocks = base.h if self.family == "gpt2" else base.layers
        with torch.no_grad():
            ids = torch.arange(model.get_input_embeddings().weight.shape[0])
            self.embedding = self._embed(ids)
            first = self.blocks[0]
            self.later = first.mlp(self._pre_mlp_norm(first)(self.embedding)).float()
        self.U = model.get_output_embeddings().weight.float().T  # [d, V]

    def _embed(self, ids: Tensor) -> Tensor:
        module = self.model.get_input_embeddings()
        x = module(ids)
        # Gemma 1/2 scale the embedding inside the model's forward (Gemma 3's module does it
        # itself), by sqrt(d) rounded to the weights' dtype.
        if self.family in ("gemma", "gemma2") and "Scaled" not in type(module).__name__:
            x = x * torch.tensor(self.d**0.5, dtype=x.dtype)
        return x.float()

    def _pre_mlp_norm(self, block: nn.Module) -> nn.Module:
        if self.family == "gpt2":
            return block.ln_2
        if self.family in ("gemma2", "gemma3_text", "gemma3"):
            return block.pre_feedforward_layernorm
        return block.post_attention_layernorm  # Llama, Mistral, Qwen, Gemma 1, Phi-3, NeoX

    def W_VO(self, layer: int, head: int) -> Tensor:
        """``W_V W_O`` of one head, ``[d, d]``, from the attention module's own weights."""
        block, hd, d = self.blocks[layer], self.hd, self.d
        kv = head // (self.n_heads // self.n_kv)
        if self.family == "gpt2":
            W_V = block.attn.c_attn.weight[
                :, 2 * d + head * hd : 2 * d + (head + 1) * hd
            ]  # Conv1D: [in, out]
            W_O = block.attn.c_proj.weight[head * hd : (head + 1) * hd, :]
        elif self.family == "gpt_neox":
            rows = block.attention.query_key_value.weight.view(self.n_heads, 3, hd, d)[
                head, 2
            ]  # per head: q, k, v
            W_V, W_O = rows.T, block.attention.dense.weight[:, head * hd : (head + 1) * hd].T
        elif self.family == "phi3":
            start = (self.n_heads + self.n_kv + kv) * hd  # rows: all q, all k, then v
            W_V = block.self_attn.qkv_proj.weight[start : start + hd].T
            W_O = block.self_attn.o_proj.weight[:, head * hd : (head + 1) * hd].T
        else:
            W_V = block.self_attn.v_proj.weight[kv * hd : (kv + 1) * hd].T
            W_O = block.self_attn.o_proj.weight[:, head * hd : (head + 1) * hd].T
        return W_V.float() @ W_O.float()

    def sources(self, layer: int) -> Tensor:
        return self.embedding if layer == 0 else self.later


def _heads(ref: PaperReference, heads: Iterable[Head] | None) -> list[Head]:
    every = [(layer, head) for layer in range(ref.n_layers) for head in range(ref.n_heads)]
    return sorted(every if heads is None else heads)


@torch.no_grad()
def paper_operation_scores(
    model: nn.Module, tokenized_ops: Sequence[TokenizedOperation], heads: Iterable[Head] | None = None
) -> list[OperationScores]:
    """Relation and suppression scores of each operation for each head (``heads``: a subset;
    the others are NaN)."""
    ref = PaperReference(model)
    L, H = ref.n_layers, ref.n_heads
    scores = [torch.full((L, H), float("nan")) for _ in tokenized_ops]
    suppression = [torch.full((L, H), float("nan")) for _ in tokenized_ops]
    for layer, head in _heads(ref, heads):
        x, W_VO = ref.sources(layer), ref.W_VO(layer, head)
        for i, op in enumerate(tokenized_ops):
            hits = suppressed = 0
            for start in range(0, op.n_pairs, PAIRS_PER_BLOCK):
                sources = torch.tensor(op.source_ids[start : start + PAIRS_PER_BLOCK])
                targets = torch.tensor(op.target_ids[start : start + PAIRS_PER_BLOCK])[:, None]
                logits = x[sources] @ W_VO @ ref.U  # [pairs, V]
                hits += int((logits.topk(op.k, dim=1).indices == targets).any(1).sum())
                suppressed += int(((-logits).topk(op.k, dim=1).indices == targets).any(1).sum())
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
def paper_salient(
    model: nn.Module,
    token_text: list[str],
    top_tokens: int = 15,
    top_mappings: int = 5,
    allowed: Tensor | None = None,
    heads: Iterable[Head] | None = None,
) -> list[HeadSalient]:
    """Each head's ``top_tokens`` most amplified sources and the ``top_mappings`` tokens each
    maps to (and the ``top_mappings`` it maps lowest, most negative first); ``allowed`` (a
    vocabulary mask) limits them to the tokens it keeps."""
    ref = PaperReference(model)
    results = []
    for layer, head in _heads(ref, heads):
        x = ref.sources(layer)
        out = x @ ref.W_VO(layer, head)  # [V, d]: the head's output for every source token
        # A zero row (a padding token's embedding) amplifies nothing: 0, not 0/0.
        amplification = torch.nan_to_num(out.norm(dim=-1) / x.norm(dim=-1), nan=0.0)
        if allowed is not None:
            amplification = amplification.masked_fill(~allowed, float("-inf"))
        top_amp, top_src = amplification.topk(top_tokens)
        salient = []
        for amp, source in zip(top_amp.tolist(), top_src.tolist(), strict=True):
            if amp == float("-inf"):
                continue
            logits = out[source] @ ref.U
            negated = -logits
            if allowed is not None:
                logits = logits.masked_fill(~allowed, float("-inf"))
                negated = negated.masked_fill(~allowed, float("-inf"))
            values, targets = logits.topk(top_mappings)
            low, low_targets = negated.topk(top_mappings)  # the most negative logits, lowest first
            suppressed = [
                MappedToken(token=token_text[t], token_id=t, logit=-v)
                for v, t in zip(low.tolist(), low_targets.tolist(), strict=True)
                if v != float("-inf")
            ]
            mappings = [
                MappedToken(token=token_text[t], token_id=t, logit=v)
                for v, t in zip(values.tolist(), targets.tolist(), strict=True)
                if v != float("-inf")
            ]
            salient.append(
                SalientToken(
                    token=token_text[source],
                    token_id=source,
                    amplification=amp,
                    mappings=mappings,
                    suppressed=suppressed,
                )
            )
        results.append(HeadSalient(layer=layer, head=head, salient=salient))
    return results
