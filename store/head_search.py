"""Set-based pieces of the search by analysis (``evaluation.head_search``): the heads whose
salient (source) tokens, or the tokens those map to, match a token; and the operation or
attention-pattern score a head is filtered and ranked by.

Tokens are read from each model's latest analysis (the one a head page shows). Every query
is one statement over all heads: the token tables are walked by their primary key's prefix
``(analysis_id, head_id, …)`` and a page's rows are fetched by head id, never one query per
head. Without an index on the token text a target-only search scans the latest analysis'
``mapped_token`` rows once (about 1M at 5,000 heads)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel
from sqlalchemy import Boolean, ColumnElement, Select, and_, false, func, literal, or_, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.functions import FunctionElement

from store import tables as S
from store.patterns import has_pattern, latest_pattern_analyses
from store.relations import has_relation, latest_analyses

Match = Literal["exact", "loose"]
LEADING = " \u2581\u0120\t\n"
"""What ``loose`` matching strips from the start of a token: a space, SentencePiece's ``▁``,
GPT-2's ``Ġ`` (and other whitespace)."""


class TokenMatch(BaseModel):
    """One salient row of a head matching the token search: its source and, when a target was
    asked for, the mapped token that matched (else the source's top mapped token)."""

    rank: int
    """The source's salient rank (0: the most amplified)."""
    source: str
    source_id: int
    amplification: float
    target: str | None = None
    target_id: int | None = None
    target_rank: int | None = None
    """The target's rank among the source's mapped tokens (0: the top)."""
    logit: float | None = None


def loose_key(token: str) -> str:
    """What ``loose`` compares: no leading space or word-start mark, no trailing whitespace."""
    return token.lstrip(LEADING).rstrip()


class _contains(FunctionElement):
    """``column`` contains ``pattern``'s text ignoring case: a cheap test run before the
    stripped comparison (a LIKE is a few times faster than ``lower(rtrim(ltrim(…)))`` on every
    row). PostgreSQL's ILIKE; SQLite's LIKE, which already ignores ASCII case (as its ``lower``
    folds only ASCII, the two agree)."""

    inherit_cache = True
    type = Boolean()


@compiles(_contains)
def _contains_default(element, compiler, **kw) -> str:  # noqa: ANN001
    column, pattern = list(element.clauses)
    return f"{compiler.process(column, **kw)} ILIKE {compiler.process(pattern, **kw)} ESCAPE '\\'"


@compiles(_contains, "sqlite")
def _contains_sqlite(element, compiler, **kw) -> str:  # noqa: ANN001
    column, pattern = list(element.clauses)
    return f"{compiler.process(column, **kw)} LIKE {compiler.process(pattern, **kw)} ESCAPE '\\'"


def token_is(column: ColumnElement[str], token: str, match: Match) -> ColumnElement[bool]:
    """``column`` is ``token`` exactly, or (``loose``) once both are stripped and case-folded.
    SQL ``lower`` folds both sides (SQLite folds only ASCII letters, PostgreSQL every letter)."""
    if match == "exact":
        return column == token
    key = loose_key(token)
    escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    stripped = func.lower(func.rtrim(func.ltrim(column, LEADING))) == func.lower(literal(key))
    return and_(_contains(column, literal(f"%{escaped}%")), stripped)


def _rows(source: str | None, target: str | None, match: Match) -> Select:
    """(head_id, salient rank, the rank the hit is ranked by) of every matching row."""
    st, mt = aliased(S.SalientToken), aliased(S.MappedToken)
    pk = and_(mt.analysis_id == st.analysis_id, mt.head_id == st.head_id, mt.salient_rank == st.rank)
    if target is None:
        assert source is not None
        return select(st.head_id, st.rank.label("srank"), st.rank.label("best")).where(
            st.analysis_id.in_(latest_analyses()), token_is(st.token, source, match)
        )
    query = (
        select(mt.head_id, mt.salient_rank.label("srank"), mt.rank.label("best"))
        .join(st, pk)
        .where(mt.analysis_id.in_(latest_analyses()), token_is(mt.token, target, match))
    )
    return query.where(token_is(st.token, source, match)) if source is not None else query


def matching_heads(source: str | None, target: str | None, match: Match) -> Select:
    """Per matching head: ``head_id``, ``best`` (the least rank of a matching row: the source's
    salient rank, or with a target its rank among the source's mappings) and ``n`` (rows)."""
    rows = _rows(source, target, match).subquery("token_rows")
    return select(rows.c.head_id, func.min(rows.c.best).label("best"), func.count().label("n")).group_by(
        rows.c.head_id
    )


def token_counts(session: Session, token: str, match: Match = "loose") -> tuple[int, int]:
    """How many heads have ``token`` as a salient (source) token, and how many map a salient
    token to it (target): one statement."""
    counts = [
        select(func.count(func.distinct(rows.c.head_id))).select_from(rows).scalar_subquery()
        for rows in (_rows(token, None, match).subquery("s"), _rows(None, token, match).subquery("t"))
    ]
    sources, targets = session.execute(select(*counts)).one()
    return int(sources), int(targets)


def matching_rows(
    session: Session, head_ids: list[int], source: str | None, target: str | None, match: Match, per_head: int
) -> dict[int, list[TokenMatch]]:
    """The matching rows of the heads ``head_ids`` (a page of results), best first, at most
    ``per_head`` each: one query, by head id."""
    if not head_ids:
        return {}
    st, mt = aliased(S.SalientToken), aliased(S.MappedToken)
    pk = and_(mt.analysis_id == st.analysis_id, mt.head_id == st.head_id, mt.salient_rank == st.rank)
    query = select(
        st.head_id, st.rank, st.token, st.token_id, st.amplification, mt.token, mt.token_id, mt.rank, mt.logit
    ).where(st.analysis_id.in_(latest_analyses()), st.head_id.in_(head_ids))
    if source is not None:
        query = query.where(token_is(st.token, source, match))
    if target is not None:
        query = (
            query.join(mt, pk).where(token_is(mt.token, target, match)).order_by(st.head_id, mt.rank, st.rank)
        )
    else:
        query = query.outerjoin(mt, and_(pk, mt.rank == 0)).order_by(st.head_id, st.rank)
    out: dict[int, list[TokenMatch]] = {}
    for hid, rank, tok, tok_id, amp, target_tok, target_id, target_rank, logit in session.execute(query):
        found = out.setdefault(hid, [])
        if len(found) < per_head:
            found.append(
                TokenMatch(
                    rank=rank,
                    source=tok,
                    source_id=tok_id,
                    amplification=amp,
                    target=target_tok,
                    target_id=target_id,
                    target_rank=target_rank,
                    logit=logit,
                )
            )
    return out


def score_sources(session: Session, operation: str) -> list[tuple[int, int]]:
    """Per model, the (analysis, operation) ids of its latest analysis that scored
    ``operation`` at its default k: the scores its heatmap shows. Found once per session (a
    search asks for it to filter, to rank and for the page's columns)."""
    memo: dict[str, list[tuple[int, int]]] = session.info.setdefault("score_sources", {})
    if operation in memo:
        return memo[operation]
    best: dict[int, tuple[int, int]] = {}
    os, a, o = S.OperationScore, S.Analysis, S.Operation
    scored = (
        select(os.head_id)
        .where(os.analysis_id == a.id, os.operation_id == o.id, os.default_k)
        .limit(1)
        .exists()
    )
    # Per (analysis, operation) one probe of the scores' primary key, not a scan of its rows.
    pairs = select(a.model_id, a.id, o.id).select_from(a).join(o, true())  # every (analysis, this op)
    rows = session.execute(pairs.where(o.name == operation, scored))
    for model_id, analysis_id, operation_id in rows:
        best[model_id] = max(best.get(model_id, (0, 0)), (analysis_id, operation_id))
    memo[operation] = sorted(best.values())
    return memo[operation]


def _which(os: type, sources: list[tuple[int, int]]) -> ColumnElement[bool]:
    return or_(*(and_(os.analysis_id == a, os.operation_id == o) for a, o in sources)) if sources else false()


def operation_score(head_id: ColumnElement[int], sources: list[tuple[int, int]]) -> ColumnElement[float]:
    """The head's relation score from ``score_sources`` (NULL where it has none): a correlated
    subquery, for a page of heads (``score_table`` ranks every head at once)."""
    os = aliased(S.OperationScore)
    return (
        select(func.max(os.relation))
        .where(os.head_id == head_id, os.default_k, _which(os, sources))
        .scalar_subquery()
    )


def score_table(sources: list[tuple[int, int]], name: str = "scores"):  # noqa: ANN201  (a Subquery)
    """Every scored head's relation score from ``score_sources``: ``(head_id, score)``, one
    range scan of the scores' primary key per source (an outer join ranks by it)."""
    os = aliased(S.OperationScore)
    return (
        select(os.head_id, func.max(os.relation).label("score"))
        .where(os.default_k, _which(os, sources))
        .group_by(os.head_id)
        .subquery(name)
    )


def pattern_score(head_id: ColumnElement[int], pattern: str) -> ColumnElement[float]:
    """The head's score on ``pattern`` in its model's latest pattern analysis (or NULL)."""
    p = aliased(S.HeadPattern)
    return (
        select(func.max(p.score))
        .where(
            p.head_id == head_id, p.pattern == pattern, p.pattern_analysis_id.in_(latest_pattern_analyses())
        )
        .scalar_subquery()
    )


def has_operation_score(
    session: Session, head_id: ColumnElement[int], operation: str, minimum: float
) -> ColumnElement[bool]:
    """The head's ``operation_score`` (as above) is at least ``minimum`` (exactly: scores are
    exact fractions count/n): the searches filter on the score the results show (the
    heatmap's: latest analysis, default k). A semi-join on the passing heads' ids, not a
    subquery per head."""
    os = aliased(S.OperationScore)
    sources = score_sources(session, operation)
    return head_id.in_(select(os.head_id).where(os.default_k, _which(os, sources), os.relation >= minimum))


class TokenQuery(BaseModel):
    """Heads by their mappings: a salient (source) token, the token it is mapped to (target),
    or both on one row ("which heads map X to Y")."""

    source: str | None = None
    target: str | None = None
    match: Match = "loose"
    """``exact``: the stored token string; ``loose``: ignoring a leading space or word-start
    mark, trailing whitespace and case."""

    @property
    def active(self) -> bool:
        return bool(self.source) or bool(self.target)


class HeadFilters(BaseModel):
    """What a search keeps, on the head (model, layers, scores, relations, patterns, mappings)
    and on its description (category, unclear, a current rating's label)."""

    model: str | None = None
    category: str | None = None
    layer_min: int | None = None
    layer_max: int | None = None
    min_scores: dict[str, float] = {}
    """Operation name -> least relation score of the head (``operation_score``)."""
    min_patterns: dict[str, float] = {}
    """Attention pattern (``previous_token``, ``induction``, …) -> least score of the head in
    its model's latest pattern analysis."""
    label: str | None = None
    """Keep descriptions with a current rating of this label."""
    unclear: bool | None = None
    relation: str | None = None
    """Keep heads with this relation evidence (a key, or a prefix ending in ``:``)."""
    min_fraction: float = 0.0
    """… in at least this fraction of their salient rows."""
    tokens: TokenQuery = TokenQuery()
    """Keep heads with a salient row mapping these tokens."""


def where_filters(session: Session, query: Select, filters: HeadFilters, description: type) -> Select:
    """``query`` (which joins ``S.Head``, ``S.Model`` and the ``description`` entity, perhaps an
    outer-joined alias, to the head) keeping only what ``filters`` pass: the one builder of
    every search's conditions (full text, meaning, and heads without words)."""
    f, h, d = filters, S.Head, description
    if f.model is not None:
        query = query.where(S.Model.name == f.model)
    if f.layer_min is not None:
        query = query.where(h.layer >= f.layer_min)
    if f.layer_max is not None:
        query = query.where(h.layer <= f.layer_max)
    if f.category is not None:
        query = query.where(d.category == f.category)
    if f.unclear is not None:
        query = query.where(d.unclear == f.unclear)
    if f.label is not None:
        rated = select(S.Rating.id).where(
            S.Rating.description_id == d.id, S.Rating.is_current, S.Rating.label == f.label
        )
        query = query.where(rated.exists())
    for name, minimum in f.min_scores.items():
        query = query.where(has_operation_score(session, h.id, name, minimum))
    for name, minimum in f.min_patterns.items():
        query = query.where(has_pattern(h.id, name, minimum))
    if f.relation is not None:
        query = query.where(has_relation(h.id, f.relation, f.min_fraction))
    if f.tokens.active:
        query = query.where(h.id.in_(token_head_ids(f.tokens)))
    return query


def token_head_ids(tokens: TokenQuery) -> Select:
    """The ids of the heads matching ``tokens`` (a filter: ``head_id IN (...)``)."""
    rows = _rows(tokens.source or None, tokens.target or None, tokens.match).subquery("token_rows")
    return select(rows.c.head_id).distinct()


def head_scores(
    session: Session, head_ids: list[int], operations: list[str], patterns: list[str]
) -> dict[int, dict[str, float | None]]:
    """The scores of a page of heads on each named operation (relation score, as the heatmap)
    and attention pattern: one query."""
    if not head_ids or not (operations or patterns):
        return {hid: {} for hid in head_ids}
    h = aliased(S.Head)
    columns = [
        operation_score(h.id, score_sources(session, name)).label(f"o{n}")
        for n, name in enumerate(operations)
    ]
    columns += [pattern_score(h.id, name).label(f"p{n}") for n, name in enumerate(patterns)]
    names = [*operations, *patterns]
    out: dict[int, dict[str, float | None]] = {}
    for row in session.execute(select(h.id, *columns).where(h.id.in_(head_ids))):
        out[row[0]] = {
            name: (None if v is None else float(v)) for name, v in zip(names, row[1:], strict=True)
        }
    return out
