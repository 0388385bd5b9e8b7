"""Semantic and hybrid search over descriptions.

Each description is embedded once with all-MiniLM-L6-v2, fully offline, when it is stored
(``evaluation.embeddings``). A search only reads: a description without a vector yet is found
by its words (hybrid and full-text modes), and the result's note says how many there are.

Ranking (``search``, mode ``hybrid``)::

    score = SEMANTIC_WEIGHT * cosine(query, description)
          + (1 - SEMANTIC_WEIGHT) * bm25(description) / max bm25 of the full-text hits

Every description gets both parts exactly: the cosine comes from one matrix product with
every stored vector, and the full-text part is 0 for a description that does not contain
every word of the query. A description found by meaning alone must reach a cosine of
``SEMANTIC_FLOOR``, so a query unrelated to everything returns nothing rather than noise.
Without the embedding model installed, search is the store's full-text search and says so
(mode ``fulltext``).

The encoder, the stored vectors and their in-memory matrix are ``evaluation.embeddings``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from evaluation.embeddings import (
    embedding_text,
    encode,
    encoder_unavailable,
    index,
)
from evaluation.head_search import check_score_names, search_heads, with_scores
from evaluation.relations import check_relation
from evaluation.search_models import MAX_RESULTS, Filters, Hit, Mode, SearchResult, split_min_scores
from store import tables as S
from store.head_search import where_filters

if TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlalchemy.orm import Session

    from store import Store

SEMANTIC_WEIGHT = 0.7
"""Weight of the cosine in the hybrid score; the rest is the normalised full-text rank."""
SEMANTIC_FLOOR = 0.25
"""Least cosine for a hit that does not contain every query word (MiniLM puts unrelated
sentences around 0 to 0.15 and paraphrases above 0.5)."""
CANDIDATES = 200
"""Semantic candidates examined per round before the filters; grows ×4 until enough pass."""

__all__ = [
    "CANDIDATES",
    "MAX_RESULTS",
    "SEMANTIC_FLOOR",
    "SEMANTIC_WEIGHT",
    "Filters",
    "Hit",
    "Mode",
    "SearchResult",
    "fulltext",
    "search",
    "split_min_scores",
]

# --- search -----------------------------------------------------------------------------------


def _allowed(store: Store, ids: list[int] | None, filters: Filters) -> dict[int, dict[str, Any]]:
    """Of ``ids`` (all descriptions when None), those passing ``filters``, with what a hit shows."""
    with store.read() as session:
        d = S.Description
        query = (
            select(d.id, S.Model.name, S.Head.layer, S.Head.index, d.category, d.status)
            .add_columns(d.pattern, d.inputs, d.reasoning, d.raw_response, S.Head.id)
            .join(S.Head, S.Head.id == d.head_id)
            .join(S.Model, S.Model.id == S.Head.model_id)
        )
        query = _where(session, query, ids, filters)
        return {
            row[0]: {
                "model": row[1],
                "layer": row[2],
                "head": row[3],
                "category": row[4],
                "status": row[5],
                "text": embedding_text(row[6], row[7], row[8], row[9]),
                "head_id": row[10],
            }
            for row in session.execute(query)
        }


def _where(session: Session, query: Select, ids: list[int] | None, filters: Filters) -> Select:
    if ids is not None:
        query = query.where(S.Description.id.in_(ids))
    return where_filters(session, query, filters, S.Description)


def fulltext(store: Store, query: str, filters: Filters, limit: int) -> list[Hit]:
    hits = store.search_filtered(query, filters.head_filters(), limit=limit)
    return [Hit.model_validate({**h.model_dump(), "head_id": h.head_id}) for h in hits]


def search(
    store: Store,
    query: str,
    filters: Filters | None = None,
    *,
    limit: int = 20,
    mode: Mode = "hybrid",
    offset: int = 0,
) -> SearchResult:
    """Descriptions matching ``query``, best first (see the module docstring for the ranking),
    ``limit`` of them from ``offset``; without words, the heads passing ``filters``
    (``evaluation.head_search``). Each hit shows its scores on the filtered operations."""
    filters = filters or Filters()
    filters.check()
    if filters.relation is not None:
        check_relation(store, filters.relation, filters.min_fraction)
    if filters.model is not None:
        store.get_model(filters.model)  # an unknown model is an error, not an empty result
    check_score_names(store, filters)
    limit = max(1, min(limit, MAX_RESULTS))
    offset = max(0, min(offset, MAX_RESULTS))
    if not query.strip():
        if not filters.active and not filters.show:
            return SearchResult(results=[], mode=mode)
        return search_heads(store, filters, limit=limit, offset=offset)
    found = _by_text(store, query, filters, min(offset + limit + 1, MAX_RESULTS + 1), mode)
    page = found.results[offset : offset + limit]
    return found.model_copy(
        update={
            "results": with_scores(store, page, filters),
            "offset": offset,
            "more": len(found.results) > offset + limit,
        }
    )


def _by_text(store: Store, query: str, filters: Filters, limit: int, mode: Mode) -> SearchResult:
    if mode == "fulltext":
        return SearchResult(results=fulltext(store, query, filters, limit), mode="fulltext")
    why = encoder_unavailable()
    if why is not None:
        return SearchResult(results=fulltext(store, query, filters, limit), mode="fulltext", note=why)

    idx = index(store, embed=False)  # a GET must not write: vectors are made when descriptions are stored
    note = _unembedded_note(idx.missing, mode)
    cosines = idx.matrix @ encode([query])[0] if len(idx.ids) else np.zeros(0, dtype=np.float32)
    text_hits = fulltext(store, query, filters, limit * 3) if mode == "hybrid" else []
    top_bm25 = max((h.score for h in text_hits), default=0.0)
    scored: dict[int, Hit] = {}
    for h in text_hits:
        row = idx.row_of.get(h.description_id)
        cosine = float(cosines[row]) if row is not None else 0.0
        part = h.score / top_bm25 if top_bm25 > 0 else 1.0
        scored[h.description_id] = h.model_copy(
            update={"score": SEMANTIC_WEIGHT * cosine + (1 - SEMANTIC_WEIGHT) * part}
        )

    weight = SEMANTIC_WEIGHT if mode == "hybrid" else 1.0
    n = len(cosines)
    first = min(n, max(CANDIDATES, limit * 10))
    # The first round needs only the best few: a partial sort; later rounds sort everything.
    top = np.argpartition(-cosines, first - 1)[:first] if first < n else np.arange(n)
    order = top[np.argsort(-cosines[top], kind="stable")]
    wanted, start, size = limit, 0, max(CANDIDATES, limit * 10)
    semantic: list[Hit] = []
    while start < n and len(semantic) < wanted:
        chunk = order[start : start + size]
        chunk = chunk[cosines[chunk] >= SEMANTIC_FLOOR]
        if len(chunk) == 0:
            break
        ids = [int(i) for i in idx.ids[chunk]]
        # A round that covers most of the store is cheaper as one filtered scan than an IN list.
        allowed = _allowed(store, None if len(ids) > 5000 else ids, filters) if filters.active else None
        if allowed is None:
            allowed = _allowed(store, [i for i in ids if i not in scored][: wanted * 2], Filters())
        for i, row in zip(ids, chunk, strict=True):
            if i in scored or i not in allowed or len(semantic) >= wanted:
                continue
            semantic.append(Hit(description_id=i, score=weight * float(cosines[row]), **allowed[i]))
        if start == 0 and len(order) < n:
            order = np.argsort(-cosines, kind="stable")
        start, size = start + size, size * 4
    hits = sorted([*scored.values(), *semantic], key=lambda h: (-h.score, h.description_id))
    return SearchResult(results=hits[:limit], mode=mode, note=note)


def _unembedded_note(missing: int, mode: Mode) -> str | None:
    if not missing:
        return None
    some = f"{missing} description{'s are' if missing != 1 else ' is'} not embedded yet"
    if mode == "semantic":
        return f"{some}: search by meaning cannot find {'them' if missing != 1 else 'it'} (hybrid search can)"
    return f"{some}: found by {'their' if missing != 1 else 'its'} words only"
