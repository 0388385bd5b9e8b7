"""Describe throughput against an OpenAI-compatible endpoint that answers after a fixed delay.

A synthetic 500-head model (25 layers × 20 heads, 15 salient tokens × 5 mappings each, two
operations) is saved in a SQLite store; the real describe job (store reads, template
rendering, the openai SDK over HTTP on loopback, parsing, one committed row per head) runs
against ``tests._fake_llm.FakeOpenAIServer`` at concurrency 16 and at concurrency 1. The
concurrency-1 baseline takes 0.5 s a head, so by default it runs on the first 50 heads and is
extrapolated linearly to 500 (``--baseline-heads 500`` runs all of it). Then the same command
is run again (0 LLM calls expected) and once more against an empty database with the same
response cache (0 calls: the cache alone answers).

    python benchmarks/bench_describe.py [--heads 500] [--delay 0.5] [--baseline-heads 50]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import prompts  # noqa: E402
from describer.llm import Describer, GenerationParams, OpenAIBackend, ResponseCache  # noqa: E402
from describer.pipeline import DescribeJob  # noqa: E402
from store import open_store  # noqa: E402
from store.records import AnalysisIn, ModelInfo  # noqa: E402
from tests._fake_llm import FakeOpenAIServer  # noqa: E402

N_LAYERS = 25


def synthetic(n_heads_total: int, seed: int = 0) -> tuple[ModelInfo, AnalysisIn]:
    rng = random.Random(seed)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 8))) for _ in range(3000)]
    n_heads = n_heads_total // N_LAYERS
    info = ModelInfo(
        name=f"synthetic-{n_heads_total}",
        source="synthetic",
        kind="dir",
        family="llama",
        n_layers=N_LAYERS,
        n_heads=n_heads,
        n_kv_heads=n_heads,
        d_model=64 * n_heads,
        vocab_size=len(words),
    )

    def token() -> dict:
        i = rng.randrange(len(words))
        return {"token": " " + words[i], "token_id": i}

    heads = [
        {
            "layer": layer,
            "head": head,
            "salient": [
                {
                    **token(),
                    "amplification": rng.uniform(1, 5),
                    "mappings": [{**token(), "logit": rng.uniform(0, 10)} for _ in range(5)],
                }
                for _ in range(15)
            ],
        }
        for layer in range(N_LAYERS)
        for head in range(n_heads)
    ]
    grid = [[rng.random() for _ in range(n_heads)] for _ in range(N_LAYERS)]
    operations = {
        name: {"name": name, "category": cat, "k": 10, "n_pairs": 100, "scores": grid, "suppression": grid}
        for name, cat in (("general_copying", "algorithmic"), ("country_to_capital", "knowledge"))
    }
    analysis = AnalysisIn(
        model=info.name, settings={"source": "synthetic"}, heads=heads, operations=operations
    )
    return info, analysis


def describe_run(
    db: Path, cache_path: Path, name: str, server: FakeOpenAIServer, concurrency: int, limit: int | None
) -> tuple[float, int, int]:
    """(seconds, heads described, LLM calls sent) of one describe job."""
    with open_store(str(db)) as store:
        cache = ResponseCache(cache_path)
        backend = OpenAIBackend(server.base_url, server.model, None)
        describer = Describer(backend, GenerationParams(), concurrency=concurrency, cache=cache)
        job = DescribeJob(store, name, prompts.load("salient_evidence"), describer, "bench", limit=limit)
        calls_before = server.calls
        start = time.perf_counter()

        async def go():  # noqa: ANN202
            try:
                return await job.run()
            finally:
                await backend.aclose()

        stats = asyncio.run(go())
        seconds = time.perf_counter() - start
        cache.close()
        if describer.usage.retries:
            print(f"  ({describer.usage.retries} request(s) retried)")
        assert stats.llm_calls == server.calls - calls_before + describer.usage.retries
        return seconds, stats.done, stats.llm_calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=500)
    parser.add_argument("--delay", type=float, default=0.5, help="seconds per answer")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--baseline-heads", type=int, default=50, help="heads run at concurrency 1")
    args = parser.parse_args()

    info, analysis = synthetic(args.heads)
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAIServer(delay_s=args.delay) as server:
        work = Path(tmp)
        dbs = {key: work / f"{key}.sqlite" for key in ("base", "fast", "fresh")}
        for key in ("base", "fast"):
            with open_store(str(dbs[key])) as store:
                store.save_analysis(info, analysis, settings_key="synthetic")

        b_s, b_done, b_calls = describe_run(
            dbs["base"], work / "base-cache.sqlite", info.name, server, 1, args.baseline_heads
        )
        per_head = b_s / b_done
        baseline = per_head * args.heads
        f_s, f_done, f_calls = describe_run(
            dbs["fast"], work / "fast-cache.sqlite", info.name, server, args.concurrency, None
        )
        r_s, r_done, r_calls = describe_run(
            dbs["fast"], work / "fast-cache.sqlite", info.name, server, args.concurrency, None
        )
        with open_store(str(dbs["fresh"])) as store:
            store.save_analysis(info, analysis, settings_key="synthetic")
        c_s, c_done, c_calls = describe_run(
            dbs["fresh"], work / "fast-cache.sqlite", info.name, server, args.concurrency, None
        )

    extrapolated = (
        ""
        if b_done == args.heads
        else f" (measured on {b_done} heads, extrapolated ×{args.heads / b_done:g})"
    )
    print(f"endpoint delay {args.delay * 1000:.0f} ms, {args.heads} heads")
    print(f"concurrency 1:  {per_head:.3f} s/head → {baseline:.1f} s for {args.heads} heads{extrapolated}")
    print(
        f"concurrency {args.concurrency}: {f_s:.1f} s for {f_done} heads, {f_calls} LLM calls ({f_done / f_s:.1f} heads/s)"
    )
    print(f"speed-up: {baseline / f_s:.1f}× (target ≥ 12×; ideal {min(args.concurrency, args.heads)}×)")
    print(f"re-run, same database: {r_done} heads described, {r_calls} LLM calls, {r_s:.2f} s")
    print(
        f"re-run, empty database, same response cache: {c_done} heads stored, {c_calls} LLM calls, {c_s:.1f} s"
    )


if __name__ == "__main__":
    main()
