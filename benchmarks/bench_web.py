"""Web app benchmark: server time of the head page, the model page and search, on SQLite with
a 5,120-head model (80 layers × 64 heads) and 50,000 descriptions, each against a naive
baseline measured in the same run.

    .venv/bin/python benchmarks/bench_web.py [--layers 80 --heads 64 --descriptions 50000]

Server time is measured in process through Starlette's TestClient (routing, the store's
queries, template rendering and JSON encoding; no network). Baselines:

- head page: the same data gathered the ORM-naive way (each salient token's mappings, each
  description's ratings and each score's operation by its own query);
- model page: one query per head (its latest description and its score);
- full-text search: ``LIKE '%word%'`` over every description (no index);
- semantic search: the vectors read from the database and normalised on every query instead
  of the cached in-memory matrix.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

from benchmarks.bench_store import synthetic, vocabulary  # noqa: E402
from benchmarks.web_baselines import (  # noqa: E402
    naive_grid,
    naive_head,
    naive_review_next,
    naive_semantic,
    naive_token_search,
)
from evaluation import embeddings  # noqa: E402
from evaluation.web import create_app  # noqa: E402
from store import open_store, utcnow  # noqa: E402
from store import tables as S  # noqa: E402
from store.labels import CATEGORIES, RATING_LABELS  # noqa: E402
from store.writes import bulk_insert  # noqa: E402

SUBJECTS = [
    "country",
    "city",
    "verb",
    "adjective",
    "noun",
    "name",
    "year",
    "month",
    "number",
    "language",
    "company",
    "product",
    "animal",
    "color",
    "token",
    "word",
    "letter",
    "person",
    "place",
    "code",
]
OBJECTS = [
    "capital",
    "currency",
    "past tense",
    "plural",
    "antonym",
    "synonym",
    "first letter",
    "last letter",
    "French translation",
    "Spanish translation",
    "pronoun",
    "next year",
    "superclass",
    "founder",
    "rhyme",
    "abbreviation",
    "homophone",
    "compound",
    "comparative",
    "superlative",
    "itself",
]
VERBS = ["maps", "sends", "turns", "copies", "converts", "links", "associates", "promotes", "suppresses"]  # fmt: skip


def phrases(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = set()
    while len(out) < n:
        s, o = rng.choice(SUBJECTS), rng.choice(OBJECTS)
        out.add(
            (
                f"{rng.choice(VERBS)} each {s} to its {o}",
                f"{s}s {rng.choice(['in English', 'and names', 'tokens', 'with a leading space', 'from lists'])}",
            )
        )
    return sorted(out)


def fill(store, n: int, seed: int = 1) -> None:  # noqa: ANN001
    """``n`` descriptions: patterns and inputs from 3,000 phrases, reasoning of Zipf-drawn words."""
    rng = random.Random(seed)
    vocab = vocabulary()
    weights = [1 / (i + 10) for i in range(len(vocab))]
    pool = phrases(3000, seed)
    with store.write() as session:
        head_ids = [h for (h,) in session.execute(text("SELECT id FROM head ORDER BY id"))]
        rows = []
        for i in range(n):
            pattern, inputs = rng.choice(pool)
            unclear = rng.random() < 0.1
            rows.append(
                (
                    head_ids[i % len(head_ids)], rng.choice(["evidence_v1", "terse_v1"]), "sha", "prompt", rng.choice(["llm-a", "llm-b"]),
                    "host", "{}", "raw", " ".join(rng.choices(vocab, weights, k=30)), inputs, pattern, unclear,
                    "unclear" if unclear else rng.choice(CATEGORIES[:4]), "[]", "unclear" if unclear else "ok", utcnow(),
                )
            )  # fmt: skip
        bulk_insert(
            session.connection(),
            S.Description.__table__,
            ("head_id", "prompt_name", "prompt_sha", "rendered_prompt", "llm_model", "llm_host", "params",
             "raw_response", "reasoning", "inputs", "pattern", "unclear", "category", "tags", "status", "created_at"),
            rows,
        )  # fmt: skip
        ratings = [
            (rng.randrange(1, n + 1), f"rater{r}", rng.choice(RATING_LABELS), None, utcnow(), True)
            for r in range(5)
            for _ in range(2000)
        ]
        ratings = list({(d, r): (d, r, *rest) for d, r, *rest in ratings}.values())
        bulk_insert(
            session.connection(),
            S.Rating.__table__,
            ("description_id", "rater", "label", "comment", "created_at", "is_current"),
            ratings,
        )


class Samples(list):
    """Wall-clock seconds per call, with the process's CPU seconds per call in ``cpu``: on a
    shared machine the wall time includes waiting for a core, the CPU time does not."""

    cpu: list[float]


def timed(fn, items) -> Samples:  # noqa: ANN001
    """Seconds of ``fn(item)`` for each item."""
    samples = Samples()
    samples.cpu = []
    for item in items:
        start, cpu = time.perf_counter(), time.process_time()
        fn(item)
        samples.append(time.perf_counter() - start)
        samples.cpu.append(time.process_time() - cpu)
    return samples


def cpu(samples: Samples) -> str:
    return f"[CPU time p50 {ms(statistics.median(samples.cpu))}, p95 {ms(p95(samples.cpu))}]"


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18] if len(samples) >= 2 else samples[0]


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=80)
    parser.add_argument("--heads", type=int, default=64)
    parser.add_argument("--descriptions", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/web.db"
        info, data, defs = synthetic(args.layers, args.heads)
        store = open_store(url)
        store.save_analysis(info, data, settings_key="bench", operations=defs)
        fill(store, args.descriptions)
        start = time.perf_counter()
        embedded = embeddings.embed_missing(store)
        with store.read() as session:
            unique = session.scalar(
                select(func.count(func.distinct(S.Description.pattern + S.Description.inputs)))
            )
        print(
            f"store: {args.layers}×{args.heads} = {args.layers * args.heads} heads, {args.descriptions:,} descriptions"
        )
        print(
            f"embedded {embedded:,} descriptions ({unique:,} distinct texts) in {time.perf_counter() - start:.1f} s"
        )

        print(f"load average before timing: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        model = info.name
        rng = random.Random(5)
        heads = [(rng.randrange(args.layers), rng.randrange(args.heads)) for _ in range(60)]
        with TestClient(create_app(url), base_url="http://127.0.0.1") as client:
            assert client.get(f"/models/{model}/heads/0.0").status_code == 200
            head_page = timed(
                lambda h: client.get(f"/models/{model}/heads/%d.%d" % h).raise_for_status(), heads
            )
            head_api = timed(
                lambda h: client.get(f"/api/models/{model}/heads/%d.%d" % h).raise_for_status(), heads
            )
            head_naive = timed(lambda h: naive_head(store, model, *h), heads)
            print(
                f"head page: p50 {ms(statistics.median(head_page))}, p95 {ms(p95(head_page))} (target <= 100 ms); "
                f"JSON p95 {ms(p95(head_api))} {cpu(head_page)}"
            )
            print(
                f"  baseline, a query per row (data only, no rendering): p50 {ms(statistics.median(head_naive))}; "
                f"ratio {statistics.median(head_naive) / statistics.median(head_page):.1f}x"
            )

            model_pages = {
                by: timed(
                    lambda _, by=by: client.get(
                        f"/models/{model}", params={"by": by, "operation": "op3"}
                    ).raise_for_status(),
                    range(8),
                )
                for by in ("operation", "category", "rating")
            }
            grid_naive = timed(lambda _: naive_grid(store, model, "op3"), range(2))
            worst = max(p95(v) for v in model_pages.values())
            print(
                "model page (5,120 cells): "
                + ", ".join(f"by {by} p50 {ms(statistics.median(v))}" for by, v in model_pages.items())
                + f"; worst p95 {ms(worst)} (target <= 300 ms) "
                + " ".join(f"{by} {cpu(v)}" for by, v in model_pages.items())
            )
            print(
                f"  baseline, two queries per head (data only): {ms(statistics.median(grid_naive))}; "
                f"ratio {statistics.median(grid_naive) / statistics.median(model_pages['operation']):.1f}x"
            )

            overview = timed(lambda _: client.get(f"/models/{model}/overview").raise_for_status(), range(4))
            compared = timed(
                lambda i: client.get(
                    "/compare",
                    params={"model": model, "heads": ",".join(f"L{a}.H{b}" for a, b in heads[i : i + 4])},
                ).raise_for_status(),
                range(8),
            )
            print(
                f"overview (every operation x layer): p95 {ms(p95(overview))}; "
                f"compare 4 heads: p95 {ms(p95(compared))} (no baseline: new pages)"
            )

            # The review queue: each rater's own order over every current description.
            raters = [f"rater{i}" for i in range(12)]
            review = timed(
                lambda r: client.get("/api/review/next", params={"rater": r}).raise_for_status(), raters
            )
            review_naive = timed(lambda r: naive_review_next(store, r), raters)
            print(
                f"review queue, next item (seeded per-rater order, progress, evidence): p95 {ms(p95(review))}; "
                f"baseline, the first unrated id alone (id order, no evidence): p95 {ms(p95(review_naive))}"
            )

            # Search by analysis: filters without words, and "which heads map X to Y".
            by_score = timed(
                lambda m: client.get(
                    "/api/search", params={"min_score": f"op3={m}", "show": "op3", "limit": 50}
                ).raise_for_status(),
                [0.5, 0.7, 0.9, 0.3] * 3,
            )
            planted = [
                (h.salient[r].token, h.salient[r].mappings[0].token) for h in data.heads[::97] for r in (0, 2)
            ]
            pairs = [(s_.strip().upper(), t.strip()) for s_, t in planted[:20]]
            by_tokens = timed(
                lambda st: client.get(
                    "/api/search", params={"source": st[0], "target": st[1]}
                ).raise_for_status(),
                pairs,
            )
            naive_tokens = timed(lambda st: naive_token_search(store, *st), pairs[:5])
            print(
                f"search by analysis: score filter p95 {ms(p95(by_score))}; source -> target tokens p95 "
                f"{ms(p95(by_tokens))}, median {ms(statistics.median(by_tokens))} {cpu(by_tokens)}"
            )
            print(
                f"  baseline, every latest (source, target) row read and matched in Python: median "
                f"{ms(statistics.median(naive_tokens))}; ratio {statistics.median(naive_tokens) / statistics.median(by_tokens):.1f}x"
            )

            vocab = vocabulary()
            words = [" ".join(rng.sample(vocab[:400], rng.choice((1, 2)))) for _ in range(args.queries)]
            full = timed(
                lambda w: client.get("/api/search", params={"q": w, "mode": "fulltext"}).raise_for_status(),
                words,
            )
            like = []
            with store.engine.connect() as conn:
                for q in words[:20]:
                    clauses = " AND ".join(
                        f"(coalesce(reasoning,'') || ' ' || coalesce(inputs,'') || ' ' || coalesce(pattern,'')) LIKE :w{i}"
                        for i in range(len(q.split()))
                    )
                    params = {f"w{i}": f"%{w}%" for i, w in enumerate(q.split())}
                    start = time.perf_counter()
                    conn.execute(text(f"SELECT id FROM description WHERE {clauses}"), params).all()
                    like.append(time.perf_counter() - start)
            print(
                f"search, full text: p95 {ms(p95(full))} (target <= 50 ms), median {ms(statistics.median(full))} {cpu(full)}"
            )
            print(f"  baseline, LIKE scan: p95 {ms(p95(like))}; ratio {p95(like) / p95(full):.1f}x")

            sentences = [
                f"heads that {rng.choice(['map', 'turn', 'send'])} {rng.choice(SUBJECTS)}s to their {rng.choice(OBJECTS)}"
                for _ in range(args.queries)
            ]
            client.get(
                "/api/search", params={"q": sentences[0]}
            ).raise_for_status()  # loads the encoder and the matrix
            results = {}
            for mode in ("hybrid", "semantic"):
                results[mode] = timed(
                    lambda w, mode=mode: client.get(
                        "/api/search", params={"q": w, "mode": mode}
                    ).raise_for_status(),
                    sentences,
                )
            filtered = timed(
                lambda w: client.get(
                    "/api/search",
                    params={"q": w, "layer_min": 10, "layer_max": 20, "category": "latent_reasoning"},
                ).raise_for_status(),
                sentences,
            )
            encode = timed(lambda w: embeddings.encode([w]), sentences)
            naive = timed(lambda v: naive_semantic(store, v), embeddings.encode(sentences[:10]))
            print(
                f"search, hybrid: p95 {ms(p95(results['hybrid']))} (target <= 150 ms), median {ms(statistics.median(results['hybrid']))}; "
                f"semantic only p95 {ms(p95(results['semantic']))}; hybrid with layer+category filters p95 {ms(p95(filtered))}"
            )
            print(f"  hybrid {cpu(results['hybrid'])}, semantic {cpu(results['semantic'])}")
            print(f"  of which encoding the query: median {ms(statistics.median(encode))}")
            print(
                f"  baseline, vectors read from the database per query (plus encoding): p95 {ms(p95(naive) + p95(encode))}; "
                f"ratio {(p95(naive) + p95(encode)) / p95(results['semantic']):.1f}x"
            )
        store.close()
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
