"""The web app's own queries: heatmap grids and the review queue.

Each is a handful of set-based queries over the store's ORM session (never one query per
head), so a 5,000-head model page costs the same few queries as a 12-head one.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy import Connection, Executable, exists, func, select

from describer.errors import InvalidValue, NotFound
from describer.maps.patterns import check_pattern
from evaluation.web.patterns import ordered
from store import tables as S
from store.labels import RATING_LABELS

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from store import Store


class Cell(BaseModel):
    """One head of the heatmap."""

    layer: int
    head: int
    line: str | None = None
    """The latest description in one line (its pattern), None when undescribed."""
    description_id: int | None = None
    category: str | None = None
    status: str | None = None
    descriptions: int = 0
    unclear: bool = False
    """The latest description found no pattern."""
    rating: str | None = None
    """The most frequent current rating label over the head's descriptions (ties: the better)."""
    ratings: int = 0
    score: float | None = None
    """The chosen operation's relation (or suppression) score, or the chosen attention
    pattern's score."""


class Grid(BaseModel):
    model: str
    family: str
    n_layers: int
    n_heads: int
    operations: list[str]
    """Operations scored for this model, by name."""
    operation: str | None
    metric: str = "relation"
    """Which of the operation's scores ``score`` is: ``relation`` or ``suppression``."""
    k: int | None = None
    """The operation's k (its target among the head's top k) in the scores shown."""
    n_pairs: int | None = None
    """How many of the operation's pairs were scored (single tokens for the tokenizer)."""
    patterns: list[str] = []
    """Attention patterns stored for this model (its latest pattern analysis), by name."""
    pattern: str | None = None
    cells: list[list[Cell]]
    """``[layer][head]``; ``grid()`` fills it with dicts of ``Cell``'s fields."""


def one_line(pattern: str | None, inputs: str | None, reasoning: str | None, status: str | None) -> str:
    """A description in one line: its pattern, else the start of its reasoning."""
    for text in (pattern, inputs, reasoning):
        if text and text.strip():
            line = " ".join(text.split())
            return line if len(line) <= 160 else line[:157] + "…"
    return "(no parsed description: the LLM's answer could not be read)" if status == "failed" else ""


def model_row(session: Session, name: str) -> S.Model:
    model = session.scalar(select(S.Model).where(S.Model.name == name))
    if model is None:
        raise NotFound(f"unknown model {name!r} in the store")
    return model


def operations(session: Session, model_id: int) -> list[str]:
    """Names of the operations with scores for the model (an index seek per operation)."""
    analyses = select(S.Analysis.id).where(S.Analysis.model_id == model_id).scalar_subquery()
    scored = exists().where(
        S.OperationScore.analysis_id.in_(analyses), S.OperationScore.operation_id == S.Operation.id
    )
    return sorted(set(session.scalars(select(S.Operation.name).where(scored))))


def latest_patterns(session: Session, model_id: int) -> tuple[int | None, list[str]]:
    """The model's latest pattern analysis and the patterns it scored (``PATTERNS`` order)."""
    analysis = session.scalar(
        select(func.max(S.PatternAnalysis.id)).where(S.PatternAnalysis.model_id == model_id)
    )
    if analysis is None:
        return None, []
    names = session.scalars(
        select(S.HeadPattern.pattern).where(S.HeadPattern.pattern_analysis_id == analysis).distinct()
    )
    return analysis, ordered(list(names))


METRICS = ("relation", "suppression")
"""An operation's two scores (``operation_score``): its pairs' targets among the head's top k
mappings of their sources, or among its k most suppressed."""


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise InvalidValue(f"metric must be relation or suppression, not {metric!r}")
    return metric


def score_source(session: Session, model_id: int, operation: str) -> tuple[int, int] | None:
    """The (analysis, operation) ids of the latest analysis that scored ``operation`` at its
    default k: a primary-key probe per pair, newest first, instead of a join that walks every
    score of the model."""
    analyses = session.scalars(
        select(S.Analysis.id).where(S.Analysis.model_id == model_id).order_by(S.Analysis.id.desc())
    ).all()
    op_ids = session.scalars(
        select(S.Operation.id).where(S.Operation.name == operation).order_by(S.Operation.id.desc())
    ).all()
    return next(
        (
            (a, o)
            for a in analyses
            for o in op_ids
            if session.scalar(
                select(S.OperationScore.head_id)
                .where(
                    S.OperationScore.analysis_id == a,
                    S.OperationScore.operation_id == o,
                    S.OperationScore.default_k,
                )
                .limit(1)
            )
            is not None
        ),
        None,
    )


def fetch_rows(conn: Connection, statement: Executable) -> list[tuple]:
    """A statement's rows as plain tuples straight from the driver's cursor: for the ~25,000
    rows of a big heatmap, SQLAlchemy's per-row result processing cost more than the queries
    (``benchmarks/bench_web.py``). Same transaction, same SQL, any dialect's paramstyle."""
    compiled = statement.compile(dialect=conn.dialect)
    params = compiled.construct_params()
    args = tuple(params[name] for name in compiled.positiontup) if compiled.positional else params
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(str(compiled), args)
        return cursor.fetchall()
    finally:
        cursor.close()


def grid(
    store: Store,
    model: str,
    operation: str | None = None,
    pattern: str | None = None,
    *,
    viewer: str | None = None,
    metric: str = "relation",
) -> Grid:
    """Every head of ``model`` with its latest description, rating summary and (when
    ``operation`` is given) that operation's score from the latest analysis scoring it, or
    (when ``pattern`` is given) that attention pattern's score from the latest pattern analysis.
    A cell's rating label counts only descriptions ``viewer`` has rated (blind review: nobody
    sees how others judged a description before judging it); its number counts them all.
    ``metric`` picks the operation's relation or suppression score.

    Rows are read through Core (no ORM objects) into plain dicts and the result is built
    without re-validation: a 5,120-head grid is about 20,000 rows."""
    check_metric(metric)
    k_of = pairs = None
    with store.read() as session:
        m = model_row(session, model)
        ops = operations(session, m.id)
        if operation is not None and operation not in ops:
            known = ", ".join(ops) if ops else "none"
            raise NotFound(f"no scores for operation {operation!r} of {model}; scored: {known}")
        if operation is not None and pattern is not None:
            raise InvalidValue("colour by an operation or by an attention pattern, not both")
        pattern_analysis, patterns = latest_patterns(session, m.id)
        if pattern is not None:
            check_pattern(pattern)
            if pattern not in patterns:
                known = ", ".join(patterns) if patterns else "none"
                raise NotFound(f"no scores for pattern {pattern!r} of {model}; stored: {known}")
        conn = session.connection()
        blank = {f: None for f in ("line", "description_id", "category", "status", "rating", "score")}
        cells = [
            [
                {**blank, "layer": layer, "head": h, "descriptions": 0, "unclear": False, "ratings": 0}
                for h in range(m.n_heads)
            ]
            for layer in range(m.n_layers)
        ]
        heads: dict[int, dict[str, Any]] = {
            hid: cells[layer][index]
            for hid, layer, index in fetch_rows(
                conn, select(S.Head.id, S.Head.layer, S.Head.index).where(S.Head.model_id == m.id)
            )
        }
        d = S.Description
        of_model = select(S.Head.id).where(S.Head.model_id == m.id).scalar_subquery()
        latest = (
            select(d.head_id, func.max(d.id).label("id"), func.count().label("n"))
            .where(d.head_id.in_(of_model))
            .group_by(d.head_id)
            .subquery()
        )
        # Only the start of the text travels: the line is at most 160 characters.
        text = func.substr(
            func.coalesce(func.nullif(d.pattern, ""), func.nullif(d.inputs, ""), d.reasoning), 1, 400
        )
        for hid, did, n, first_text, category, status, unclear in fetch_rows(
            conn,
            select(latest.c.head_id, latest.c.id, latest.c.n)
            .join(d, d.id == latest.c.id)
            .add_columns(text, d.category, d.status, d.unclear),
        ):
            cell = heads[hid]
            cell.update(description_id=did, descriptions=n, category=category, status=status)
            cell["unclear"] = bool(unclear)
            cell["line"] = one_line(first_text, None, None, status)
        # Current ratings are few next to descriptions: read them all, keep this model's.
        counts: dict[int, dict[str, int]] = {}
        totals: dict[int, int] = {}
        rows = [
            r
            for r in fetch_rows(
                conn,
                select(d.head_id, S.Rating.label, S.Rating.description_id, S.Rating.rater)
                .join(d, d.id == S.Rating.description_id)
                .where(S.Rating.is_current),
            )
            if r[0] in heads
        ]
        seen = {did for _, _, did, rater in rows if rater == viewer}
        for hid, label, did, _ in rows:
            totals[hid] = totals.get(hid, 0) + 1
            if did in seen:
                counter = counts.setdefault(hid, {})
                counter[label] = counter.get(label, 0) + 1
        rank = {label: n for n, label in enumerate(RATING_LABELS)}
        for hid, total in totals.items():
            counter = counts.get(hid)
            best = max(counter, key=lambda label: (counter[label], -rank.get(label, 99))) if counter else None
            heads[hid].update(rating=best, ratings=total)
        if operation is not None:
            source = score_source(session, m.id, operation)
            if source is not None:
                column = getattr(S.OperationScore, metric)
                for hid, value, k, n_pairs in fetch_rows(
                    conn,
                    select(
                        S.OperationScore.head_id, column, S.OperationScore.k, S.OperationScore.n_pairs
                    ).where(
                        S.OperationScore.analysis_id == source[0],
                        S.OperationScore.operation_id == source[1],
                        S.OperationScore.default_k,
                    ),
                ):
                    k_of, pairs = k, max(pairs or 0, n_pairs)
                    if hid in heads and value is not None and not math.isnan(value):
                        heads[hid]["score"] = value
        if pattern is not None:
            for hid, score in fetch_rows(
                conn,
                select(S.HeadPattern.head_id, S.HeadPattern.score).where(
                    S.HeadPattern.pattern_analysis_id == pattern_analysis, S.HeadPattern.pattern == pattern
                ),
            ):
                if hid in heads and not math.isnan(score):
                    heads[hid]["score"] = score
        return Grid.model_construct(
            model=m.name,
            family=m.family,
            n_layers=m.n_layers,
            n_heads=m.n_heads,
            operations=ops,
            operation=operation,
            metric=metric,
            k=k_of,
            n_pairs=pairs,
            patterns=patterns,
            pattern=pattern,
            cells=cells,  # plain dicts with Cell's fields: 5,000 models cost more than the queries
        )


def description_location(store: Store, description_id: int) -> dict[str, Any]:
    """Model, layer and head of a description."""
    with store.read() as session:
        row = session.execute(
            select(S.Model.name, S.Head.layer, S.Head.index)
            .join(S.Head, S.Head.model_id == S.Model.id)
            .join(S.Description, S.Description.head_id == S.Head.id)
            .where(S.Description.id == description_id)
        ).first()
    if row is None:
        raise NotFound(f"no description with id {description_id}")
    return {"model": row[0], "layer": row[1], "head": row[2]}


def operations_of(store: Store, model: str) -> list[str]:
    """Names of the operations with scores for ``model``."""
    with store.read() as session:
        return operations(session, model_row(session, model).id)


def head_count(store: Store, model: str) -> int:
    """Heads per layer of ``model`` (a 404 for an unknown one)."""
    with store.read() as session:
        return model_row(session, model).n_heads


def has_descriptions(store: Store, model: str) -> bool:
    with store.read() as session:
        m = model_row(session, model)
        heads = select(S.Head.id).where(S.Head.model_id == m.id).scalar_subquery()
        return (
            session.scalar(select(S.Description.id).where(S.Description.head_id.in_(heads)).limit(1))
            is not None
        )
