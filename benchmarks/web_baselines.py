"""The fair baselines ``bench_web`` times each page against: the same data read the obvious way
(a query per row or head, every row read and matched in Python, vectors read per query)."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select, text

from evaluation import embeddings
from store import tables as S


def naive_head(store, model: str, layer: int, head: int) -> int:  # noqa: ANN001
    """A head's data with one query per row (the ORM lazy-loading way)."""
    n = 0
    with store.read() as session:
        m = session.scalar(select(S.Model).where(S.Model.name == model))
        h = session.scalar(
            select(S.Head).where(S.Head.model_id == m.id, S.Head.layer == layer, S.Head.index == head)
        )
        for s in session.scalars(select(S.SalientToken).where(S.SalientToken.head_id == h.id)):
            n += len(
                session.scalars(
                    select(S.MappedToken).where(
                        S.MappedToken.head_id == h.id, S.MappedToken.salient_rank == s.rank
                    )
                ).all()
            )
        for sc in session.scalars(select(S.OperationScore).where(S.OperationScore.head_id == h.id)):
            n += session.get(S.Operation, sc.operation_id) is not None
        for d in session.scalars(select(S.Description).where(S.Description.head_id == h.id)):
            n += len(session.scalars(select(S.Rating).where(S.Rating.description_id == d.id)).all())
    return n


def naive_grid(store, model: str, operation: str) -> int:  # noqa: ANN001
    """The heatmap with one query per head for its latest description and one for its score."""
    n = 0
    with store.read() as session:
        m = session.scalar(select(S.Model).where(S.Model.name == model))
        op = session.scalar(select(S.Operation.id).where(S.Operation.name == operation))
        for h in session.scalars(select(S.Head).where(S.Head.model_id == m.id)):
            d = session.scalar(
                select(S.Description)
                .where(S.Description.head_id == h.id)
                .order_by(S.Description.id.desc())
                .limit(1)
            )
            score = session.scalar(
                select(S.OperationScore.relation).where(
                    S.OperationScore.head_id == h.id, S.OperationScore.operation_id == op
                )
            )
            n += (d is not None) + (score is not None)
    return n


def naive_token_search(store, source: str, target: str) -> list[int]:  # noqa: ANN001
    """The heads mapping ``source`` to ``target``, read as a script would: every (head, source,
    target) row of the latest analysis in one query, compared in Python with the same loose key."""
    key = lambda t: t.lstrip(" \u2581\u0120\t\n").rstrip().lower()  # noqa: E731
    with store.engine.connect() as conn:
        latest = conn.execute(text("SELECT max(id) FROM analysis")).scalar()
        rows = conn.execute(
            text(
                "SELECT s.head_id, s.token, m.token FROM salient_token s JOIN mapped_token m ON "
                "m.analysis_id = s.analysis_id AND m.head_id = s.head_id AND m.salient_rank = s.rank "
                "WHERE s.analysis_id = :a"
            ),
            {"a": latest},
        ).all()
    return sorted({h for h, s_, t in rows if key(s_) == key(source) and key(t) == key(target)})


def naive_semantic(store, query_vector: np.ndarray, limit: int = 20) -> list[int]:  # noqa: ANN001
    pairs = store.embeddings(embeddings.ENCODER)
    ids = np.array([i for i, _ in pairs])
    matrix = np.frombuffer(b"".join(v for _, v in pairs), dtype="<f4").reshape(len(pairs), -1)
    matrix = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return ids[np.argsort(-(matrix @ query_vector))[:limit]].tolist()


def naive_review_next(store, rater: str) -> int | None:  # noqa: ANN001
    """The review queue as it first was: the lowest description id the rater has not rated."""
    with store.read() as session:
        rated = select(S.Rating.description_id).where(S.Rating.rater == rater)
        return session.scalar(
            select(S.Description.id).where(S.Description.id.not_in(rated)).order_by(S.Description.id).limit(1)
        )
