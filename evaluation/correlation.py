"""The paper's correlative experiment: do the static scores predict what heads output in context?

For each operation, the model reads prompts built from the paper's four templates with the
pair's source word ``X`` (the leading-space single token the static analysis scores). At the
last position each head's output is projected to the vocabulary exactly as the static analysis
projects ``rep(X) @ W_V @ W_O`` (same folded ``W_O`` and unembedding, same k), and the
*dynamic* relation score is the fraction of prompts whose target is in the top k (suppression:
in the bottom k), averaged over templates. It is computed twice:

- *with context*: the head's real output (its real attention);
- *without context*: the head's attention forced onto the source token — its output is then the
  value vector of ``X`` in this prompt, ``v_X @ W_O`` (``hooks.HeadCapture.forced_z``). Each head
  is forced alone, the rest of the model running as it does; for a source before the last
  position this equals forcing every head at once, since nothing before the last position changes.

Pearson r between the static and the dynamic scores over all heads, per operation
(``evaluation.correlation_stats``: over templates × heads as the paper's code computes it, with
the template-averaged variant, the templates' own agreement and the within-layer r beside it),
is the paper's Table (median r without context 0.82–0.95 and with context 0.68–0.75 on GPT-2 xl,
Pythia 6.9B/12B and Llama-3.1-8B).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from jaxtyping import Float, Int
from pydantic import BaseModel
from torch import Tensor

from describer.maps.adapters.base import Adapter
from describer.maps.analyzer import Analyzer
from describer.maps.operations import TokenizedOperation
from describer.maps.results import OperationScores
from describer.maps.scan import beaten
from describer.maps.settings import NORM_PARTS, AnalysisSettings
from evaluation.correlation_stats import CorrelationRow, Dynamic, correlation_row, medians, rows_csv
from evaluation.hooks import head_hooks, run_captured

Progress = Callable[[str, int, int], None]

TEMPLATES: tuple[tuple[str, str], ...] = (
    ("No", " means no"),
    ("The story of", " contains"),
    ("This is a document about", ""),
    ("When I think about", " I think about"),
)
"""The paper's four templates as (text before X, text after X); X is one leading-space token."""


class CorrelationResult(BaseModel):
    model: str
    settings: dict[str, object]
    max_pairs: int | None
    rows: list[CorrelationRow]
    median_r_without_context: float | None
    """Medians over operations of the rows' pooled r (and below, of the other statistics)."""
    median_r_with_context: float | None
    median_r_without_context_averaged: float | None = None
    median_r_with_context_averaged: float | None = None
    median_ceiling_without_context: float | None = None
    median_ceiling_with_context: float | None = None
    median_within_layer_r_without_context: float | None = None
    median_within_layer_r_with_context: float | None = None


def cap_pairs(op: TokenizedOperation, max_pairs: int | None, seed: int = 0) -> TokenizedOperation:
    """At most ``max_pairs`` pairs, a fixed random sample (the first ones are often the easiest)."""
    if max_pairs is None or op.n_pairs <= max_pairs:
        return op
    keep = sorted(random.Random(seed).sample(range(op.n_pairs), max_pairs))
    return replace(
        op,
        source_ids=tuple(op.source_ids[i] for i in keep),
        target_ids=tuple(op.target_ids[i] for i in keep),
    )


def template_ids(tokenizer: object, template: tuple[str, str], x: int) -> tuple[list[int], int]:
    """Token ids of a template around token ``x`` and the position of ``x``."""
    before = tokenizer.encode(template[0], add_special_tokens=True)  # type: ignore[attr-defined]
    after = tokenizer.encode(template[1], add_special_tokens=False) if template[1] else []  # type: ignore[attr-defined]
    return [*before, x, *after], len(before)


# --- projection to the vocabulary, as the static analysis does ---------------------------------


def output_side(adapter: Adapter, settings: AnalysisSettings, index: slice | Tensor) -> Float[Tensor, "d c"]:
    """Columns ``index`` of the output side MAPS uses: ``U`` with the final norm's scale (and
    LayerNorm's centring) folded in when ``settings.fold_norms``, else ``U`` as is."""
    u = adapter.unembedding_module().weight[index].float().T
    if not settings.fold_norms:
        return u
    final = adapter.final_norm()
    u = u * final.weight.to(u.device)[:, None]
    return u - u.mean(0, keepdim=True) if final.kind == "layer" else u


def output_W_O(adapter: Adapter, settings: AnalysisSettings, layer: int) -> Float[Tensor, "H hd d"]:
    """``W_O`` as the static analysis projects it (post-attention norm folded with norms)."""
    lw = adapter.layer(layer)
    return lw.W_O_folded() if settings.fold_norms else lw.W_O


@torch.inference_mode()
def topk_membership(
    adapter: Adapter,
    settings: AnalysisSettings,
    z: Float[Tensor, "H R hd"],
    W_O: Float[Tensor, "H hd d"],
    targets: Int[Tensor, " R"],
    k: Int[Tensor, " R"],
    budget: int = 1 << 24,
) -> tuple[Tensor, Tensor]:
    """For head ``h`` and row ``r``: is ``targets[r]`` among the top ``k[r]`` tokens of
    ``z[h, r] @ W_O[h] @ U`` (hit), and among the bottom ``k[r]`` (suppressed)?

    Streams the vocabulary through ``M = W_O[h] @ U`` (``hd`` wide instead of ``d``) and stops
    scoring a row once ``k`` tokens beat its target on both sides, as the analyzer does.
    """
    H, R, _ = z.shape
    vocab = adapter.vocab_size
    target_logit = torch.einsum("hre,hed,dr->hr", z, W_O, output_side(adapter, settings, targets))
    greater = torch.zeros(H, R, dtype=torch.long, device=z.device)
    less = torch.zeros_like(greater)
    active = torch.ones(H, R, dtype=torch.bool, device=z.device)
    start = 0
    while start < vocab and bool(active.any()):
        n_active = int(active.sum(1).max())
        step = int(min(max(budget // max(n_active, 1), 2048), 1 << 16))
        stop = min(start + step, vocab)
        U_c = output_side(adapter, settings, slice(start, stop))
        # Few rows left: project them to d then to the chunk; many: go through M = W_O @ U_c.
        M = torch.einsum("hed,dc->hec", W_O, U_c) if int(active.sum()) > H * z.shape[2] else None
        for h in range(H):
            rows = active[h].nonzero(as_tuple=True)[0]
            if len(rows) == 0:
                continue
            logits = z[h, rows] @ M[h] if M is not None else (z[h, rows] @ W_O[h]) @ U_c
            n_greater, n_less = beaten(logits, target_logit[h, rows], targets[rows], start)
            greater[h, rows] += n_greater
            less[h, rows] += n_less
            done = (greater[h, rows] >= k[rows]) & (less[h, rows] >= k[rows])
            active[h, rows[done]] = False
        start = stop
    return greater < k, less < k


# --- the experiment ------------------------------------------------------------------------------


@torch.inference_mode()
def capture_prompts(
    model: torch.nn.Module,
    adapter: Adapter,
    tokenizer: object,
    sources: Sequence[int],
    template: tuple[str, str],
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> tuple[Float[Tensor, "L P H hd"], Float[Tensor, "L P H hd"]]:
    """Heads' ``z`` at the last position of ``template`` around each source token: with their
    real attention and with it forced onto the source token."""
    prompts = [template_ids(tokenizer, template, x) for x in sources]
    ids = torch.tensor([p for p, _ in prompts], dtype=torch.long)  # one length: X is one token
    position = prompts[0][1]
    device = adapter.embedding_module().weight.device
    real, forced = [], []
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size].to(device)
        src = torch.full((len(batch),), position, dtype=torch.long)
        with head_hooks(adapter, source=src, stop_after_last_layer=True) as cap:
            run_captured(model, batch)
        real.append(torch.stack(cap.z))
        forced.append(torch.stack([cap.forced_z(adapter, L) for L in range(adapter.n_layers)]))
        if progress:
            progress(len(batch))
    return torch.cat(real, 1), torch.cat(forced, 1)


def dynamic_scores(
    model: torch.nn.Module,
    adapter: Adapter,
    tokenizer: object,
    settings: AnalysisSettings,
    ops: Sequence[TokenizedOperation],
    batch_size: int = 64,
    progress: Progress | None = None,
) -> list[Dynamic]:
    """Each operation's dynamic relation and suppression scores, with and without context."""
    sources = [s for op in ops for s in op.source_ids]
    targets = torch.tensor([t for op in ops for t in op.target_ids], dtype=torch.long)
    ks = torch.tensor([op.k for op in ops for _ in op.source_ids], dtype=torch.long)
    P, T, L, H = len(sources), len(TEMPLATES), adapter.n_layers, adapter.n_heads
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress("prompts", done, P * T)

    captured = [
        capture_prompts(model, adapter, tokenizer, sources, t, batch_size, advance) for t in TEMPLATES
    ]
    # rows: (condition: with, without) × template × pair
    hits = torch.empty(L, H, 2, T, P, dtype=torch.bool)
    supp = torch.empty_like(hits)
    device = adapter.embedding_module().weight.device
    for layer in range(L):
        z = torch.cat([torch.cat([c[cond][layer] for c in captured]) for cond in (0, 1)])  # [2TP, H, hd]
        hit, sup = topk_membership(
            adapter,
            settings,
            z.transpose(0, 1).contiguous().to(device),
            output_W_O(adapter, settings, layer).to(device),
            targets.repeat(2 * T).to(device),
            ks.repeat(2 * T).to(device),
        )
        hits[layer], supp[layer] = hit.view(H, 2, T, P).cpu(), sup.view(H, 2, T, P).cpu()
        if progress:
            progress("dynamic scores", layer + 1, L)
    out, offset = [], 0
    for op in ops:
        sel = slice(offset, offset + op.n_pairs)
        offset += op.n_pairs
        # per template: the fraction of the operation's pairs, [L, H, condition, T] -> [T, L, H]
        h = hits[..., sel].float().mean(-1).permute(2, 3, 0, 1)
        s = supp[..., sel].float().mean(-1).permute(2, 3, 0, 1)
        out.append(
            Dynamic(
                with_context=h[0].tolist(),
                without_context=h[1].tolist(),
                suppression_with_context=s[0].tolist(),
                suppression_without_context=s[1].tolist(),
            )
        )
    return out


def run_correlation(
    loaded: object,
    ops: Sequence[TokenizedOperation],
    settings: AnalysisSettings,
    *,
    max_pairs: int | None = 50,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> tuple[CorrelationResult, list[OperationScores], list[Dynamic]]:
    """The whole experiment on a loaded model (``describer.maps.loading.LoadedModel``)."""
    adapter, tokenizer = loaded.adapter, loaded.tokenizer  # type: ignore[attr-defined]
    ops = [cap_pairs(op, max_pairs) for op in ops]
    device = adapter.embedding_module().weight.device
    analyzer = Analyzer(adapter, tokenizer, settings, device=device)
    _, static = analyzer.analyze(ops, with_salient=False, progress=progress)
    dyn = dynamic_scores(loaded.model, adapter, tokenizer, settings, ops, batch_size, progress)  # type: ignore[attr-defined]
    rows = [correlation_row(s, d) for s, d in zip(static, dyn, strict=True)]
    result = CorrelationResult(
        model=loaded.name,  # type: ignore[attr-defined]
        settings={**settings.model_dump(include={"source", *NORM_PARTS}), "family": loaded.family},  # type: ignore[attr-defined]
        max_pairs=max_pairs,
        rows=rows,
        **medians(rows),
    )
    return result, static, dyn


def to_csv(result: CorrelationResult) -> str:
    return rows_csv(result.rows)
