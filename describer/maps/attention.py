"""Attention-pattern scores from the model's own forward pass (definitions in
``describer.maps.patterns``).

Every family is read the same way: the model runs with transformers' *eager* attention (set
with ``set_attn_implementation`` for the pass and restored after), whose attention modules
return the softmax probabilities ``[batch, heads, query, key]`` next to their output; a forward
hook on each layer's attention module (``Adapter.attention_module``) reduces them to the scores
at once, so no layer's probabilities outlive its hook. Only the base model runs (no LM head),
``chunk`` sequences at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from describer.errors import HeadmapsError
from describer.maps.adapters.base import Adapter
from describer.maps.patterns import PATTERNS, PatternScores, PatternSettings
from describer.maps.readable import readable, special_ids
from describer.maps.residual import prefix_token

Progress = Callable[[str, int, int], None]
MAX_DRAWS = 200
"""Rounds of candidate draws per sequence before giving up on finding readable tokens."""


def sample_sequences(tokenizer: object, vocab_size: int, settings: PatternSettings) -> Int[Tensor, "B T"]:
    """``batch`` rows of ``[prefix, r_1 … r_L, r_1 … r_L]`` with ``L = length`` distinct readable
    tokens per row, drawn uniformly by a generator seeded with ``seed``."""
    n = min(vocab_size, len(tokenizer))  # type: ignore[arg-type]
    special = special_ids(tokenizer)
    verdict: dict[int, bool] = {}
    gen = torch.Generator().manual_seed(settings.seed)
    prefix, _ = prefix_token(tokenizer, vocab_size)
    rows = []
    for _ in range(settings.batch):
        row: list[int] = []
        for _ in range(MAX_DRAWS):
            for c in torch.randint(0, n, (2 * settings.length,), generator=gen).tolist():
                if c not in verdict:
                    verdict[c] = readable(c, tokenizer.decode([c]), special)  # type: ignore[attr-defined]
                if verdict[c] and c not in row:
                    row.append(c)
                    if len(row) == settings.length:
                        break
            if len(row) == settings.length:
                break
        else:
            raise HeadmapsError(
                f"the tokenizer has too few readable tokens for pattern inputs of {settings.length} distinct tokens"
            )
        rows.append([prefix, *row, *row])
    return torch.tensor(rows)


def reduce_pattern(attn: Float[Tensor, "B H T T"], length: int) -> dict[str, Float[Tensor, " H"]]:
    """Each head's scores from its attention probabilities on ``sample_sequences`` rows (summed
    over the batch; divide by the number of rows)."""
    a = attn.float()
    L = length
    device = a.device
    first = torch.arange(1, L + 1, device=device)
    prev = torch.arange(2, L + 1, device=device)
    second = torch.arange(L + 1, 2 * L + 1, device=device)
    rows = a[:, :, 1 : L + 1, : L + 1]  # first-half queries see only positions 0…L
    dist = (first[:, None] - torch.arange(L + 1, device=device)[None, :]).clamp_min(0).float()
    entropy = -(rows * torch.log(rows.clamp_min(1e-30))).sum(-1)
    return {
        "previous_token": a[:, :, prev, prev - 1].mean(-1).sum(0),
        "induction": a[:, :, second, second - L + 1].mean(-1).sum(0),
        "duplicate_token": a[:, :, second, second - L].mean(-1).sum(0),
        "first_token": a[:, :, first, 0].mean(-1).sum(0),
        "entropy": entropy.mean(-1).sum(0),
        "distance": (rows * dist).sum(-1).mean(-1).sum(0),
    }


@contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Run ``model`` with eager attention (the implementation that returns probabilities)."""
    before = model.config._attn_implementation
    if before == "eager":
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def _weights(output: object, layer: int) -> Tensor:
    weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
    if not isinstance(weights, Tensor) or weights.dim() != 4:
        raise HeadmapsError(
            f"layer {layer}'s attention module returned no attention probabilities with eager attention"
        )
    return weights


@torch.inference_mode()
def pattern_scores(
    adapter: Adapter,
    tokenizer: object,
    settings: PatternSettings | None = None,
    *,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
) -> PatternScores:
    """Every head's pattern scores, from one pass of the model over ``sample_sequences``."""
    settings = settings or PatternSettings()
    ids = sample_sequences(tokenizer, adapter.vocab_size, settings).to(device)
    scores = measure(adapter, ids, settings.length, chunk=settings.chunk, progress=progress)
    return PatternScores(settings={**settings.model_dump(), "attention": "eager"}, scores=scores)


@torch.inference_mode()
def measure(
    adapter: Adapter,
    ids: Int[Tensor, "B T"],
    length: int,
    *,
    chunk: int = 8,
    progress: Progress | None = None,
) -> dict[str, list[list[float]]]:
    """``reduce_pattern`` of every layer's attention on ``ids`` (rows of ``1 + 2·length`` tokens),
    averaged over the rows: pattern name → ``[layer][head]``."""
    model: nn.Module = adapter.model
    sums = [dict.fromkeys(PATTERNS, torch.zeros(adapter.n_heads)) for _ in range(adapter.n_layers)]

    def hook(layer: int) -> Callable[..., None]:
        def record(module: nn.Module, args: object, output: object) -> None:
            for name, value in reduce_pattern(_weights(output, layer), length).items():
                sums[layer][name] = sums[layer][name] + value.cpu()

        return record

    handles = [
        adapter.attention_module(layer).register_forward_hook(hook(layer))
        for layer in range(adapter.n_layers)
    ]
    try:
        with eager_attention(model), adapter.running():
            for start in range(0, len(ids), chunk):
                model.base_model(**adapter.forward_inputs(ids[start : start + chunk]), use_cache=False)
                if progress:
                    progress("attention patterns", min(start + chunk, len(ids)), len(ids))
    finally:
        for handle in handles:
            handle.remove()
    return {
        name: [[float(v) / len(ids) for v in sums[layer][name]] for layer in range(adapter.n_layers)]
        for name in PATTERNS
    }
