"""The residual source's forward passes: what the salient-candidate search pays per token.

The candidate search needs, for each layer, the residual entering that layer at a few thousand
tokens (each head's best candidates there). The baseline is the pass as it was: ``[prefix,
token]`` through every block for each token, all layers kept. The measured path reuses the
prefix's key/value cache (only the token's own position is computed) and stops each batch
before the first block none of its tokens needs (tokens sorted by depth). Both run in the same
process on the same needs: per layer, ``--per-layer`` distinct tokens drawn (seeded) from the
vocabulary, as the search draws per-layer candidates. The rows must agree.

    python benchmarks/bench_residual.py [--model gemma-3-270m] [--per-layer 256]

Prints both times, the ratio, tokens per second and the largest difference between the rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from describer.maps.loading import load_model  # noqa: E402
from describer.maps.residual import ResidualSource  # noqa: E402


def needs_of(n_layers: int, vocab: int, per_layer: int, seed: int = 0) -> dict[int, set[int]]:
    generator = torch.Generator().manual_seed(seed)
    needs: dict[int, set[int]] = {}
    for layer in range(n_layers):
        for token in torch.randperm(vocab, generator=generator)[:per_layer].tolist():
            needs.setdefault(token, set()).add(layer)
    return needs


@torch.inference_mode()
def baseline(residual: ResidualSource, needs: dict[int, set[int]]) -> dict[tuple[int, int], torch.Tensor]:
    """Every token as ``[prefix, token]`` through every block (the cache switched off)."""
    residual._prefix = False  # noqa: SLF001  (the fallback path: no key/value cache)
    rows = {}
    order = sorted(needs)
    with residual.adapter.running():
        for start in range(0, len(order), residual.batch_size):
            chunk = order[start : start + residual.batch_size]
            out = residual.forward(torch.tensor(chunk))
            for i, token in enumerate(chunk):
                for layer in needs[token]:
                    rows[token, layer] = out[i, layer]
    residual._prefix = None  # noqa: SLF001
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--per-layer", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    loaded = load_model(args.model, weights="stream")
    adapter = loaded.adapter
    needs = needs_of(adapter.n_layers, adapter.vocab_size, args.per_layer)
    pairs = sum(len(layers) for layers in needs.values())
    print(f"{loaded.name}: {len(needs)} tokens, {pairs} (token, layer) rows, {adapter.n_layers} layers")

    residual = ResidualSource(adapter, loaded.tokenizer, torch.device("cpu"), args.batch_size)
    t0 = time.perf_counter()
    reference = baseline(residual, needs)
    base_s = time.perf_counter() - t0

    residual = ResidualSource(adapter, loaded.tokenizer, torch.device("cpu"), args.batch_size)
    t0 = time.perf_counter()
    residual.ensure_at(needs)
    new_s = time.perf_counter() - t0

    worst = 0.0
    for (token, layer), row in reference.items():
        got = residual.rows(layer, torch.tensor([token]))[0]
        worst = max(worst, float((got - row).abs().max() / row.abs().max().clamp_min(1e-12)))
    print(f"baseline [prefix, token], every block: {base_s:8.1f}s  {len(needs) / base_s:8.1f} tokens/s")
    print(f"prefix cache, stopped at depth:        {new_s:8.1f}s  {len(needs) / new_s:8.1f} tokens/s")
    print(f"speed-up: {base_s / new_s:.2f}x; largest row difference (relative to the row's max): {worst:.2e}")


if __name__ == "__main__":
    main()
