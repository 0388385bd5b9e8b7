"""Search by analysis: the heads passing filters on their scores, relations, attention patterns,
current description and mappings ("which heads map X to Y"), with no words needed.

Every head of the store is a candidate, described or not. Hits are ranked by the token match
(the least rank of a matching row) when tokens are asked for, then by the first shown score
(highest first), then by model, layer and head. The ranked ids are read in one query and the
page cut from them; only the page's heads are then fetched: their scores, current descriptions
and matching rows, one query each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from describer.errors import InvalidValue
from describer.maps.patterns import PATTERNS
from evaluation.search_models import Filters, Hit, SearchResult
from store import tables as S
from store.head_search import (
    TokenQuery,
    head_scores,
    matching_heads,
    matching_rows,
    pattern_score,
    score_sources,
    score_table,
    where_filters,
)

if TYPE_CHECKING:
    from store import Store

MATCHES_SHOWN = 5
"""Matching salient rows shown per head."""


def check_score_names(store: Store, filters: Filters) -> None:
    """An operation no analysis scored is a typo, not an empty result."""
    operations, _ = filters.score_names
    if not operations:
        return
    with store.read() as session:
        known = set(session.scalars(select(S.Operation.name).where(S.Operation.name.in_(operations))))
    for name in operations:
        if name not in known:
            raise InvalidValue(f"unknown operation {name!r}: no analysis in this store scored it")


def _current_descriptions():  # noqa: ANN202
    """Each head's current description: its newest answer that did not fail."""
    d = S.Description
    return select(func.max(d.id).label("max_id")).where(d.status != "failed").group_by(d.head_id)


def search_heads(store: Store, filters: Filters, *, limit: int, offset: int) -> SearchResult:
    """The heads passing ``filters``, ranked as the module docstring says; ``total`` counts them."""
    f = filters
    operations, patterns = f.score_names
    h, m, d = S.Head, S.Model, aliased(S.Description)
    with store.read() as session:
        query = select(h.id).join(m, m.id == h.model_id)
        if f.category is not None or f.unclear is not None or f.label is not None:
            # The head's current description, joined as a table: an ``IN (…)`` in the join's ON
            # clause was evaluated again for every head (a second at 5,000 heads).
            current = _current_descriptions().add_columns(S.Description.head_id).subquery("current")
            query = query.outerjoin(current, current.c.head_id == h.id).outerjoin(d, d.id == current.c.max_id)
        # The token match both filters and ranks, so it is joined here rather than filtered.
        query = where_filters(session, query, f.model_copy(update={"tokens": TokenQuery()}), d)
        order = []
        if f.tokens.active:
            tokens = matching_heads(
                f.tokens.source or None, f.tokens.target or None, f.tokens.match
            ).subquery()
            query = query.join(tokens, tokens.c.head_id == h.id)
            order.append(tokens.c.best)
        first = f.shown[0] if f.shown else None
        if first is not None:
            if first in PATTERNS:
                ranked = pattern_score(h.id, first)
            else:  # every head's score in one grouped scan, joined (not a subquery per head)
                table = score_table(score_sources(session, first), "rank_scores")
                query = query.outerjoin(table, table.c.head_id == h.id)
                ranked = table.c.score
            order += [ranked.is_(None), ranked.desc()]
        order += [m.name, h.layer, h.index]
        # One pass: every passing head's id in order (a few thousand ints at most), then the page.
        ranked = list(session.scalars(query.order_by(*order)))
        total, ids = len(ranked), ranked[offset : offset + limit]
        heads = {
            row.id: row
            for row in session.execute(
                select(h.id, m.name.label("model"), h.layer, h.index)
                .join(m, m.id == h.model_id)
                .where(h.id.in_(ids))
            )
        }
        described = {
            row.head_id: row
            for row in session.execute(
                select(d.head_id, d.id, d.pattern, d.category, d.status).where(
                    d.head_id.in_(ids), d.id.in_(_current_descriptions())
                )
            )
        }
        scores = head_scores(session, ids, operations, patterns)
        matches = (
            matching_rows(
                session, ids, f.tokens.source or None, f.tokens.target or None, f.tokens.match, MATCHES_SHOWN
            )
            if f.tokens.active
            else {}
        )
    hits = []
    for hid in ids:
        head, desc, found = heads[hid], described.get(hid), matches.get(hid, [])
        hits.append(
            Hit(
                description_id=desc.id if desc else None,
                head_id=hid,
                model=head.model,
                layer=head.layer,
                head=head.index,
                text=(desc.pattern or "") if desc else "",
                score=None,
                category=desc.category if desc else None,
                status=desc.status if desc else None,
                scores=scores.get(hid, {}),
                matches=found,
                best_rank=min((r.target_rank if f.tokens.target else r.rank) for r in found)
                if found
                else None,
            )
        )
    return SearchResult(
        results=hits, mode="heads", offset=offset, more=offset + len(hits) < total, total=total
    )


def with_scores(store: Store, hits: list[Hit], filters: Filters) -> list[Hit]:
    """``hits`` (a page of a search by text) with their heads' scores on the filtered and shown
    operations and patterns: one query for the page."""
    operations, patterns = filters.score_names
    if not hits or not (operations or patterns):
        return hits
    with store.read() as session:
        scores = head_scores(
            session, [h.head_id for h in hits if h.head_id is not None], operations, patterns
        )
    return [hit.model_copy(update={"scores": scores.get(hit.head_id, {})}) for hit in hits]
