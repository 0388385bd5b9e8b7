"""Full-text search over descriptions: FTS5 + bm25 on SQLite, a tsvector + ts_rank on PostgreSQL.

Both match every word of the query (stemmed) and apply the same filters."""

from __future__ import annotations

import re

from sqlalchemy import Select, func, literal_column, select, text
from sqlalchemy.orm import Session

from store import tables as S
from store.head_search import HeadFilters, where_filters
from store.records import SearchHit

PG_VECTOR = (
    "to_tsvector('english', coalesce(reasoning, '') || ' ' || coalesce(inputs, '') || ' ' || "
    "coalesce(pattern, ''))"
)
"""The expression the GIN index of migration 0002 is built on; keep the two identical."""

_WORD = re.compile(r"\w+", re.UNICODE)


def terms(query: str) -> list[str]:
    """The query's words; punctuation and FTS operators are ignored so any input is safe."""
    return _WORD.findall(query.lower())


def search(session: Session, query: str, filters: HeadFilters, limit: int) -> list[SearchHit]:
    words = terms(query)
    if not words:
        return []
    d = S.Description
    sqlite = session.get_bind().dialect.name == "sqlite"
    if sqlite:
        match = " ".join(f'"{w}"' for w in words)
        fts = (
            text(
                "SELECT rowid AS id, -bm25(description_fts) AS score FROM description_fts WHERE description_fts MATCH :match"
            )
            .bindparams(match=match)
            .columns(literal_column("id"), literal_column("score"))
            .subquery("fts")
        )
        base = select(d.id, fts.c.score, literal_column("NULL").label("snippet")).join(fts, fts.c.id == d.id)
    else:
        tsquery = func.plainto_tsquery("english", " ".join(words))
        vector = literal_column(PG_VECTOR)
        base = select(
            d.id,
            func.ts_rank(vector, tsquery).label("score"),
            func.ts_headline(
                "english",
                func.concat_ws(" ", d.reasoning, d.inputs, d.pattern),
                tsquery,
                "StartSel=[, StopSel=], MaxWords=30, MinWords=10",
            ).label("snippet"),
        ).where(vector.op("@@")(tsquery))
    if sqlite and filters == HeadFilters():
        # Unfiltered: rank inside FTS5 alone, then join only the hits shown.
        ranked = session.execute(
            text(
                "SELECT rowid, -bm25(description_fts) AS score FROM description_fts "
                "WHERE description_fts MATCH :match ORDER BY score DESC, rowid LIMIT :limit"
            ),
            {"match": match, "limit": limit},
        ).all()
        scores = {rowid: score for rowid, score in ranked}
        base = select(
            d.id, literal_column("0").label("score"), literal_column("NULL").label("snippet")
        ).where(d.id.in_(list(scores)))
        rows = [{**row._asdict(), "score": scores[row.id]} for row in session.execute(_shown(base))]
        rows.sort(key=lambda row: (-row["score"], row["id"]))
    else:
        base = where_filters(session, _shown(base), filters, d)
        rows = [
            row._asdict()
            for row in session.execute(base.order_by(literal_column("score").desc(), d.id).limit(limit))
        ]
    snippets = {row["id"]: row["snippet"] for row in rows}
    if sqlite and rows:
        # Snippets only for the hits shown: computing one per match would dominate the query.
        ids = ",".join(str(int(row["id"])) for row in rows)
        snippets = dict(
            session.execute(
                text(
                    "SELECT rowid, snippet(description_fts, -1, '[', ']', '…', 24) FROM description_fts "
                    f"WHERE description_fts MATCH :match AND rowid IN ({ids})"
                ),
                {"match": match},
            ).all()
        )
    return [
        SearchHit(
            description_id=row["id"],
            head_id=row["head_id"],
            model=row["model"],
            layer=row["layer"],
            head=row["index"],
            category=row["category"],
            status=row["status"],
            text=snippets.get(row["id"]) or "",
            score=float(row["score"]),
        )
        for row in rows
    ]


def _shown(base: Select) -> Select:
    """``base`` with what a hit shows: the head's model, layer and index, the category and status."""
    d = S.Description
    return (
        base.join(S.Head, S.Head.id == d.head_id)
        .join(S.Model, S.Model.id == S.Head.model_id)
        .add_columns(
            S.Head.id.label("head_id"),
            S.Model.name.label("model"),
            S.Head.layer,
            S.Head.index,
            d.category,
            d.status,
        )
    )
