"""Does the static QK view (describer/maps/qk.py) mean anything? Its scores against the model's
own attention logits on random token sequences (the measurement is ``describer.maps.qk_check``'s).

The sequences are the pattern scores' (``describer.maps.attention.sample_sequences``: a prefix,
then ``--length`` distinct random readable tokens, then the same tokens again); the model runs
on them with eager attention and a hook keeps each layer's attention probabilities. Only the
first half is used: for each query position m (at least ``--min-keys`` keys before it) the keys
are the random tokens at positions 1 … m−1 (the prefix/sink and the query itself left out), all
distinct. Within such a row log p differs from the logit by a constant, so the Spearman rank
correlation between a head's static scores of those keys and its log-probabilities measures
how well the static view orders what the head actually prefers. Per head: the median over rows;
then the median over heads (and the share of heads above 0.3, and the best head).

Static variants: the token representation (``embed``; ``embed+mlp0``; ``residual``, the
context-free residual entering the layer when the model reads ``[prefix, token]``; ``linear``, the
least-squares proxy of it from the embedding that the CLI streams the vocabulary with) × the
rotary handling (``mean``: the rotation averaged over offsets 1…``--max-offset``, the CLI's
default; ``none``: offset 0, no rotation; ``exact``: the model's own rotation at each key's actual
offset, an oracle no vocabulary-wide view can use — the gap to it is what averaging positions away
costs). Baselines measured in the same run: ``position`` (score = −offset: the nearer key wins),
``shuffled`` (the ``residual``/``mean`` scores permuted among the row's keys: the noise floor) and
``other-head`` (the ``residual``/``mean`` scores of the same head index one layer up: how much is
a token prior shared by heads rather than this head's own). Ratios are against ``position``.
The ``proxy:`` lines compare static scores with static scores: how well the ``linear`` proxy (the
CLI's candidate picker) and ``embed+mlp0`` order each row's keys as the ``residual`` source does.

    python benchmarks/bench_qk.py --model gemma-3-270m
    python benchmarks/bench_qk.py --model qwen2.5-coder-0.5b-instruct --layers /2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from describer.maps.analyzer import Analyzer  # noqa: E402
from describer.maps.attention import sample_sequences  # noqa: E402
from describer.maps.loading import load_model  # noqa: E402
from describer.maps.patterns import PatternSettings  # noqa: E402
from describer.maps.qk import head_qk, rotate_half  # noqa: E402
from describer.maps.qk_check import (  # noqa: E402
    attention_logprobs,
    position_scores,
    row_agreement,
    shuffled_agreement,
)
from describer.maps.residual import linear_maps  # noqa: E402
from describer.maps.settings import AnalysisSettings  # noqa: E402

SOURCES = ("embed", "embed+mlp0", "linear", "residual")
ROTARY = ("mean", "none", "exact")


def exact_keys_queries(adapter, none_qk, layer: int, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Static token scores with the model's own rotation at each position: ``[B, T, T]``."""
    rot = adapter.qk_extras(layer).rotary
    if rot is None:
        return torch.einsum("btd,bsd->bts", q, k)
    cos, sin = rot(torch.arange(q.shape[1]))
    r = cos.shape[-1]

    def apply(v: torch.Tensor) -> torch.Tensor:
        return torch.cat([v[..., :r] * cos + rotate_half(v[..., :r]) * sin, v[..., r:]], dim=-1)

    # ``none_qk.keys`` already carry the rotary's scaling squared; ranks ignore the extra factor.
    return torch.einsum("btd,bsd->bts", apply(q), apply(k))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--length", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--min-keys", type=int, default=8)
    parser.add_argument("--max-offset", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", default="all", help="all, or every N-th layer as /N (e.g. /2).")
    parser.add_argument("--per-head", action="store_true", help="Print every head's medians.")
    args = parser.parse_args()
    t0 = time.time()
    loaded = load_model(args.model)
    adapter, tok = loaded.adapter, loaded.tokenizer
    settings = PatternSettings(length=args.length, batch=args.batch, seed=args.seed)
    ids = sample_sequences(tok, adapter.vocab_size, settings)
    step = 1 if args.layers == "all" else int(args.layers.removeprefix("/"))
    layers = list(range(0, adapter.n_layers, step))
    logps = attention_logprobs(adapter, ids)
    # One Analyzer for every representation: its embedding, block 0's MLP, the context-free
    # residual and the linear proxy of it (fitted on PROXY_SAMPLE tokens run through the model).
    analyzer = Analyzer(adapter, tok, AnalysisSettings(source="residual", salient_proxy="linear"))
    maps = linear_maps(analyzer, analyzer.residual, analyzer.readable_mask())
    t_setup = time.time() - t0
    flat = ids.reshape(-1)
    gen = torch.Generator().manual_seed(args.seed)
    names = [f"{s}/{r}" for s in SOURCES for r in ROTARY] + ["position", "shuffled", "other-head"]
    names += ["proxy: linear~residual", "proxy: embed+mlp0~residual"]
    per_head: dict[str, list[float]] = {n: [] for n in names}
    B, T = ids.shape
    embedded = analyzer._embed(flat)
    L_ = args.length
    offsets = range(1, args.max_offset + 1)

    def represent(source: str, layer: int) -> torch.Tensor:
        if source == "embed" or (layer == 0 and source == "embed+mlp0"):
            rows = embedded
        elif source == "embed+mlp0":
            rows = analyzer._represent(embedded, "embed+mlp0")
        elif source == "linear":
            rows = embedded @ maps[layer][:-1] + maps[layer][-1]
        else:
            rows = analyzer.source_rows(layer, flat)
        return rows.view(B, T, -1)

    def agree(static: torch.Tensor, logp: torch.Tensor) -> float:
        return float(row_agreement(static, logp, L_, args.min_keys).median())

    position = position_scores(T).expand(B, T, T)
    for L in layers:
        reps = {s: represent(s, L) for s in SOURCES}
        up = (L + 1) % adapter.n_layers
        reps_up = represent("residual", up)
        for h in range(adapter.n_heads):
            logp = logps[L][:, h]
            mean_qk = head_qk(adapter, L, h, "mean", offsets=offsets)
            none_qk = head_qk(adapter, L, h, "none")
            scores: dict[str, float] = {}
            for s, xs in reps.items():
                q = mean_qk.queries(xs)  # the query side is the same for every rotary handling
                scores[f"{s}/mean"] = agree(torch.einsum("btd,bsd->bts", q, mean_qk.keys(xs)), logp)
                k = none_qk.keys(xs)
                scores[f"{s}/none"] = agree(torch.einsum("btd,bsd->bts", q, k), logp)
                scores[f"{s}/exact"] = agree(exact_keys_queries(adapter, none_qk, L, q, k), logp)
            scores["position"] = agree(position, logp)
            # How well the cheap representations order the keys as the residual does (with the
            # mean rotation): what picking candidates by the linear proxy can rely on.
            statics = {
                src: torch.einsum("btd,bsd->bts", mean_qk.queries(reps[src]), mean_qk.keys(reps[src]))
                for src in ("linear", "embed+mlp0", "residual")
            }
            for src in ("linear", "embed+mlp0"):
                scores[f"proxy: {src}~residual"] = agree(statics[src], statics["residual"])
            base = torch.einsum(
                "btd,bsd->bts", mean_qk.queries(reps["residual"]), mean_qk.keys(reps["residual"])
            )
            scores["shuffled"] = float(shuffled_agreement(base, logp, L_, gen, args.min_keys).median())
            other = head_qk(adapter, up, h, "mean", offsets=offsets)
            scores["other-head"] = agree(
                torch.einsum("btd,bsd->bts", other.queries(reps_up), other.keys(reps_up)), logp
            )
            for name, value in scores.items():
                per_head[name].append(value)
            if args.per_head:
                shown = ", ".join(
                    f"{n} {scores[n]:+.2f}"
                    for n in ("embed/mean", "linear/mean", "residual/mean", "residual/exact", "position")
                )
                print(f"  {L}.{h}: {shown}")
    print(
        f"{loaded.name}: {len(layers)} of {adapter.n_layers} layers × {adapter.n_heads} heads, {B} sequences of "
        f"2×{args.length} tokens, rows with ≥{args.min_keys} keys, mean rotation over offsets 1…{args.max_offset}"
    )
    pos = statistics.median(per_head["position"])
    print(f"{'variant':<28}{'median':>8}{'heads>0.3':>11}{'best head':>11}{'ratio to position':>19}")
    for name in names:
        values = per_head[name]
        med = statistics.median(values)
        share = sum(v > 0.3 for v in values) / len(values)
        ratio = f"{med / pos:.2f}" if abs(pos) > 1e-6 and not name.startswith("proxy") else ""
        print(f"{name:<28}{med:>8.3f}{share:>11.2f}{max(values):>11.2f}{ratio:>19}")
    heads = [(L, h) for L in layers for h in range(adapter.n_heads)]
    for name in ("residual/mean", "linear/mean"):
        top = sorted(range(len(heads)), key=lambda i: -per_head[name][i])[:8]
        shown = ", ".join(f"{heads[i][0]}.{heads[i][1]} {per_head[name][i]:.2f}" for i in top)
        print(f"heads where {name} agrees best: {shown}")
    first = [v for (L, _), v in zip(heads, per_head["residual/mean"], strict=True) if L <= 1]
    later = [v for (L, _), v in zip(heads, per_head["residual/mean"], strict=True) if L > 1]
    if first and later:
        print(
            f"residual/mean median, layers 0-1: {statistics.median(first):.3f}; later layers: {statistics.median(later):.3f}"
        )
    print(f"({time.time() - t0:.0f} s, of which {t_setup:.0f} s loading and fitting the proxy)")


if __name__ == "__main__":
    main()
