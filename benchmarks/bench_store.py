"""Store benchmark: writing a 5,000-head analysis and full-text search over 50,000 descriptions,
each against a baseline measured in the same run, on SQLite.

    .venv/bin/python benchmarks/bench_store.py [--layers 80 --heads 64 --descriptions 50000]

Write: ``Store.save_analysis`` (one transaction, driver-level ``executemany``) against naive ORM
inserts, one object per row and a commit per head, timed on the first layers and extrapolated.
Search: ``Store.search`` (FTS5, bm25) against a ``LIKE '%word%'`` scan, p95 over many queries.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from store import open_store, utcnow  # noqa: E402
from store import tables as S  # noqa: E402
from store.records import (  # noqa: E402
    AnalysisIn,
    HeadSalientIn,
    MappingIn,
    ModelInfo,
    OperationIn,
    OperationScoresIn,
    SalientIn,
)
from store.writes import bulk_insert  # noqa: E402

WORDS = [
    "capital",
    "country",
    "city",
    "copy",
    "name",
    "year",
    "month",
    "verb",
    "past",
    "tense",
    "french",
    "spanish",
    "english",
    "language",
    "pronoun",
    "antonym",
    "synonym",
    "letter",
    "first",
    "last",
    "number",
    "date",
    "person",
    "place",
    "company",
    "product",
    "work",
    "object",
    "animal",
    "color",
    "size",
    "comparative",
    "superlative",
    "plural",
    "suffix",
    "prefix",
    "token",
    "code",
    "bracket",
]


def synthetic(
    n_layers: int, n_heads: int, n_salient: int = 15, n_map: int = 5, n_ops: int = 20, seed: int = 0
):
    rng = random.Random(seed)
    info = ModelInfo(
        name="synthetic-70b",
        source="synthetic",
        family="llama",
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=8,
        d_model=8192,
        vocab_size=128256,
    )
    heads = [
        HeadSalientIn(
            layer=layer,
            head=head,
            salient=[
                SalientIn(
                    token=f" {rng.choice(WORDS)}{r}",
                    token_id=rng.randrange(128256),
                    amplification=rng.random() * 10,
                    mappings=[
                        MappingIn(
                            token=f" {rng.choice(WORDS)}", token_id=rng.randrange(128256), logit=rng.random()
                        )
                        for _ in range(n_map)
                    ],
                )
                for r in range(n_salient)
            ],
        )
        for layer in range(n_layers)
        for head in range(n_heads)
    ]
    ops = {
        f"op{i}": OperationScoresIn(
            name=f"op{i}",
            category="knowledge",
            k=10,
            n_pairs=100,
            scores=[[rng.random() for _ in range(n_heads)] for _ in range(n_layers)],
            suppression=[[rng.random() for _ in range(n_heads)] for _ in range(n_layers)],
        )
        for i in range(n_ops)
    }
    defs = [
        OperationIn(name=f"op{i}", category="knowledge", pairs=[(f"a{i}", f"b{i}")]) for i in range(n_ops)
    ]
    return info, AnalysisIn(model=info.name, settings={"source": "mlp0"}, heads=heads, operations=ops), defs


def naive_write(url: str, info: ModelInfo, data: AnalysisIn, n_layers: int) -> float:
    """Row-by-row ORM objects, a commit per head, for the heads of the first ``n_layers``."""
    store = open_store(url)
    with Session(store.engine) as session:
        model = S.Model(**info.model_dump(), created_at=utcnow())
        session.add(model)
        session.flush()
        analysis = S.Analysis(model_id=model.id, settings_key="naive", settings={}, created_at=utcnow())
        session.add(analysis)
        ops = [
            S.Operation(name=n, category="k", pairs=[], origin="builtin", content_hash=n)
            for n in data.operations
        ]
        session.add_all(ops)
        session.commit()
        op_ids = [op.id for op in ops]
        start = time.perf_counter()
        for h in data.heads:
            if h.layer >= n_layers:
                break
            head = S.Head(model_id=model.id, layer=h.layer, index=h.head)
            session.add(head)
            session.flush()
            for rank, s in enumerate(h.salient):
                session.add(
                    S.SalientToken(
                        analysis_id=analysis.id,
                        head_id=head.id,
                        rank=rank,
                        token=s.token,
                        token_id=s.token_id,
                        amplification=s.amplification,
                    )
                )
                session.flush()  # the ORM does not order mapped tokens after their salient token
                for mrank, m in enumerate(s.mappings):
                    session.add(
                        S.MappedToken(
                            analysis_id=analysis.id,
                            head_id=head.id,
                            salient_rank=rank,
                            rank=mrank,
                            token=m.token,
                            token_id=m.token_id,
                            logit=m.logit,
                        )
                    )
            for op_id, scores in zip(op_ids, data.operations.values(), strict=True):
                session.add(
                    S.OperationScore(
                        analysis_id=analysis.id,
                        operation_id=op_id,
                        k=scores.k,
                        head_id=head.id,
                        default_k=True,
                        n_pairs=scores.n_pairs,
                        relation=scores.scores[h.layer][h.head],
                        suppression=scores.suppression[h.layer][h.head],
                    )
                )
            session.commit()
        elapsed = time.perf_counter() - start
    store.close()
    return elapsed


def vocabulary(n: int = 4000, seed: int = 3) -> list[str]:
    """Domain words first, then pseudo-words; drawn with Zipf weights like real text."""
    rng = random.Random(seed)
    extra = {"".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(4, 9))) for _ in range(n)}
    return WORDS + sorted(extra - set(WORDS))


def fill_descriptions(store, n: int, vocab: list[str], seed: int = 1) -> None:  # noqa: ANN001
    rng = random.Random(seed)
    weights = [1 / (i + 10) for i in range(len(vocab))]
    with store.write() as session:
        head_ids = [h for (h,) in session.execute(text("SELECT id FROM head"))]
        rows = []
        for _ in range(n):
            words = rng.choices(vocab, weights, k=40)
            rows.append(
                (
                    rng.choice(head_ids), "p", "sha", "prompt", "llm", "host", "{}", "raw",
                    " ".join(words[:25]), " ".join(words[25:32]), " ".join(words[32:]),
                    False, "knowledge_recalling", "[]", "ok", utcnow(),
                )
            )  # fmt: skip
        bulk_insert(
            session.connection(),
            S.Description.__table__,
            (
                "head_id", "prompt_name", "prompt_sha", "rendered_prompt", "llm_model", "llm_host", "params",
                "raw_response", "reasoning", "inputs", "pattern", "unclear", "category", "tags", "status",
                "created_at",
            ),
            rows,
        )  # fmt: skip


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=80)
    parser.add_argument("--heads", type=int, default=64)
    parser.add_argument("--baseline-layers", type=int, default=4)
    parser.add_argument("--descriptions", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        info, data, defs = synthetic(args.layers, args.heads)
        n = args.layers * args.heads
        rows = sum(len(h.salient) * (1 + len(h.salient[0].mappings)) for h in data.heads) + n * len(defs)
        store = open_store(f"sqlite:///{tmp}/fast.db")
        start = time.perf_counter()
        store.save_analysis(info, data, settings_key="bench", operations=defs)
        fast = time.perf_counter() - start
        start = time.perf_counter()
        store.save_analysis(info, data, settings_key="bench", operations=defs)
        again = time.perf_counter() - start
        naive = naive_write(f"sqlite:///{tmp}/naive.db", info, data, args.baseline_layers)
        naive_full = naive * args.layers / args.baseline_layers
        print(f"write {n} heads ({rows:,} rows) to SQLite: {fast:.2f} s (target <= 10 s)")
        print(f"  re-saving the same analysis (idempotent no-op): {again:.2f} s")
        print(
            f"  baseline, ORM row by row with a commit per head: {naive:.2f} s for {args.baseline_layers} "
            f"layers -> {naive_full:.1f} s extrapolated; speed-up {naive_full / fast:.1f}x"
        )

        vocab = vocabulary()
        fill_descriptions(store, args.descriptions, vocab)
        rng = random.Random(2)
        # One or two words, from the most frequent (matching a third of all descriptions) to rare.
        queries = [" ".join(rng.sample(vocab[:400], rng.choice((1, 2)))) for _ in range(args.queries)]
        store.search(queries[0])  # warm the page cache
        fts = []
        for q in queries:
            start = time.perf_counter()
            store.search(q, limit=20)
            fts.append(time.perf_counter() - start)
        filtered = []
        for q in queries:
            start = time.perf_counter()
            store.search(q, model=info.name, layer_min=1, layer_max=args.layers - 2, limit=20)
            filtered.append(time.perf_counter() - start)
        like = []
        with store.engine.connect() as conn:
            for q in queries[: max(20, args.queries // 5)]:
                clauses = " AND ".join(
                    f"(coalesce(reasoning,'') || ' ' || coalesce(inputs,'') || ' ' || coalesce(pattern,'')) LIKE :w{i}"
                    for i in range(len(q.split()))
                )
                params = {f"w{i}": f"%{w}%" for i, w in enumerate(q.split())}
                start = time.perf_counter()
                # Every match, as ranking them would need; LIKE cannot rank by itself.
                conn.execute(text(f"SELECT id FROM description WHERE {clauses}"), params).all()
                like.append(time.perf_counter() - start)
        print(
            f"search {args.descriptions:,} descriptions: FTS5 p95 {p95(fts) * 1000:.1f} ms (target <= 50 ms), "
            f"median {statistics.median(fts) * 1000:.1f} ms"
        )
        print(f"  with model and layer filters: p95 {p95(filtered) * 1000:.1f} ms")
        print(
            f"  baseline LIKE '%word%' scan (all matches): p95 {p95(like) * 1000:.1f} ms; "
            f"ratio {p95(like) / p95(fts):.1f}x"
        )
        store.close()


if __name__ == "__main__":
    main()
