"""Salient sources with the residual source: how many candidates are enough?

Running every vocabulary token through the model is too slow on a CPU, so the residual source
ranks each head's ``salient_candidates`` best tokens by the weights-only ``embed+mlp0``
amplification. This measures, in one run, for several candidate counts: the time, the tokens run
through the model, and how many of each head's top 15 agree with the first proxy's largest
candidate count (the reference), for each candidate proxy (``linear``: a per-layer least-squares
map from the embedding to the residual, fitted on a sample; ``embed+mlp0``: weights only); and
how many of the top 15 the re-ranking changes against the weights-only ``embed+mlp0`` top 15
(the baseline, timed in the same run).

    python benchmarks/residual_salient.py --model gemma-3-270m --candidates 16,64,192
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from describer.maps.analyzer import Analyzer  # noqa: E402
from describer.maps.loading import load_model  # noqa: E402
from describer.maps.settings import SourceChoice  # noqa: E402


def overlap(a: list[set[int]], b: list[set[int]]) -> float:
    return sum(len(x & y) for x, y in zip(a, b, strict=True)) / sum(len(y) for y in b)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--candidates", default="16,64,256")
    parser.add_argument("--proxies", default="embed+mlp0")
    args = parser.parse_args()
    loaded = load_model(args.model)
    counts = sorted(int(c) for c in args.candidates.split(","))
    runs = {}
    t0 = time.perf_counter()
    weights_only = Analyzer(
        loaded.adapter, loaded.tokenizer, SourceChoice(source="embed+mlp0").settings(loaded.family)
    )
    ids, _ = weights_only.salient_sources()
    baseline_s = time.perf_counter() - t0
    baseline = [
        set(ids[layer, head].tolist()) for layer in range(ids.shape[0]) for head in range(ids.shape[1])
    ]
    proxies = args.proxies.split(",")
    for proxy, m in [(p, m) for p in proxies for m in counts]:
        settings = SourceChoice(source="residual").settings(
            loaded.family, salient_candidates=m, salient_proxy=proxy
        )
        t0 = time.perf_counter()
        analyzer = Analyzer(loaded.adapter, loaded.tokenizer, settings)
        ids, _ = analyzer.salient_sources()
        seconds = time.perf_counter() - t0
        tops = [
            set(ids[layer, head].tolist()) for layer in range(ids.shape[0]) for head in range(ids.shape[1])
        ]
        runs[proxy, m] = (seconds, analyzer.residual.forward_passes, tops)
    reference = runs[proxies[0], counts[-1]][2]
    print(f"{loaded.name}: top-15 salient sources of {len(reference)} heads")
    print(f"weights-only embed+mlp0 (baseline): {baseline_s:.1f}s")
    print(f"reference: the {proxies[0]} proxy with {counts[-1]} candidates")
    columns = (
        "proxy",
        "candidates",
        "tokens run",
        "seconds",
        "vs baseline",
        "same as ref",
        "same as weights",
    )
    print("".join(f"{c:>14}" for c in columns))
    for (proxy, m), (seconds, passes, tops) in runs.items():
        print(
            f"{proxy:>14}{m:>14}{passes:>14}{seconds:>14.1f}{seconds / baseline_s:>13.2f}x"
            f"{overlap(tops, reference):>14.3f}{overlap(tops, baseline):>14.3f}"
        )


if __name__ == "__main__":
    main()
