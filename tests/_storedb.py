"""Store test helpers: a database URL per test on SQLite and, when ``HEADMAPS_TEST_POSTGRES_URL``
is set, on PostgreSQL (a fresh schema per test); synthetic analyses and descriptions; row counts."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from store import tables as S
from store.records import (
    AnalysisIn,
    DescriptionIn,
    HeadSalientIn,
    MappingIn,
    ModelInfo,
    OperationIn,
    OperationScoresIn,
    SalientIn,
)

PG_URL = os.environ.get("HEADMAPS_TEST_POSTGRES_URL")
ENGINES = [
    "sqlite",
    pytest.param(
        "postgresql", marks=pytest.mark.skipif(not PG_URL, reason="HEADMAPS_TEST_POSTGRES_URL is not set")
    ),
]


def make_url(engine: str, tmp_path: Path) -> Iterator[str]:
    if engine == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def model_info(name: str = "tiny", n_layers: int = 3, n_heads: int = 4) -> ModelInfo:
    return ModelInfo(
        name=name,
        source=f"/models/{name}",
        kind="dir",
        content_hash="abc123",
        family="llama",
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=2,
        d_model=64,
        vocab_size=500,
    )


def analysis(
    info: ModelInfo,
    n_salient: int = 3,
    n_map: int = 2,
    ops: tuple[str, ...] = ("copy", "capital"),
    seed: int = 0,
) -> AnalysisIn:
    rng = random.Random(seed)
    return AnalysisIn(
        model=info.name,
        settings={"source": "mlp0", "norms": False, "top_tokens": n_salient, "top_mappings": n_map},
        heads=[
            HeadSalientIn(
                layer=layer,
                head=head,
                salient=[
                    SalientIn(
                        token=f" w{layer}{head}{r}",
                        token_id=rng.randrange(info.vocab_size),
                        amplification=round(rng.random() * 5, 6),
                        mappings=[
                            MappingIn(
                                token=f" m{q}", token_id=rng.randrange(info.vocab_size), logit=rng.random()
                            )
                            for q in range(n_map)
                        ],
                    )
                    for r in range(n_salient)
                ],
            )
            for layer in range(info.n_layers)
            for head in range(info.n_heads)
        ],
        operations={
            name: OperationScoresIn(
                name=name,
                category="algorithmic",
                k=1,
                n_pairs=10,
                scores=[[rng.random() for _ in range(info.n_heads)] for _ in range(info.n_layers)],
                suppression=[[rng.random() for _ in range(info.n_heads)] for _ in range(info.n_layers)],
            )
            for name in ops
        },
    )


def definitions(ops: tuple[str, ...] = ("copy", "capital")) -> list[OperationIn]:
    return [OperationIn(name=name, category="algorithmic", pairs=[(f"{name}a", f"{name}b")]) for name in ops]


def description(model: str = "tiny", layer: int = 0, head: int = 0, **overrides: object) -> DescriptionIn:
    fields = {
        "model": model,
        "layer": layer,
        "head": head,
        "prompt_name": "describe_v1",
        "prompt_sha": "sha1",
        "rendered_prompt": "Describe this head.",
        "llm_model": "fake-llm",
        "llm_host": "localhost",
        "params": {"temperature": 0},
        "raw_response": '{"pattern": "..."}',
        "reasoning": "The head maps country names to capital cities.",
        "inputs": "country names",
        "pattern": "country to capital",
        "category": "knowledge_recalling",
        "tags": ["geography"],
        "status": "ok",
        "tokens_in": 100,
        "tokens_out": 20,
        "latency_s": 0.5,
    }
    return DescriptionIn(**(fields | overrides))


def counts(store) -> dict[str, int]:  # noqa: ANN001
    with store.read() as session:
        return {
            t.__tablename__: session.scalar(select(func.count()).select_from(t))
            for t in (S.Model, S.Head, S.Analysis, S.SalientToken, S.MappedToken, S.OperationScore,
                      S.Operation, S.Description, S.Rating, S.Run, S.DescriptionScore, S.HeadRelation)
        }  # fmt: skip
