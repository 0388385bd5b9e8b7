"""The JSON API under ``/api/``: the same data as the pages."""

from __future__ import annotations

import math
from typing import Literal

from fastapi import APIRouter, Header, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from describer.maps.patterns import PATTERNS
from evaluation import semantic
from evaluation.relations import find_heads
from evaluation.web import queries, review_queue
from evaluation.web.auth import guard_of
from evaluation.web.common import WebError, head_spec, store_of
from evaluation.web.patterns import PatternGrid, pattern_grid
from evaluation.web.rating import RatingPost, blind, blind_head, rate, viewer_name
from store import Store
from store.head_search import TokenQuery
from store.labels import CATEGORIES, RATING_LABELS, RATING_MEANINGS
from store.records import DescriptionOut, HeadPairs, HeadView, ModelSummary, RatingOut, RelationHit

router = APIRouter(prefix="/api", tags=["api"])
BEARER = HTTPBearer(auto_error=False, description="A rater's token (headmaps raters add NAME).")
"""Declared so the API docs offer "Authorize"; ``auth.Guard`` reads and checks the header."""


class ModelPage(BaseModel):
    model: ModelSummary
    grid: queries.Grid


class PatternInfo(BaseModel):
    name: str
    label: str
    help: str
    unit: str
    notable: float | None


class Label(BaseModel):
    label: str
    meaning: str
    key: str
    """The review queue's keyboard key."""


class ReviewItem(BaseModel):
    description: DescriptionOut | None
    """The next description to rate, blind: without anyone's ratings or automatic scores, and
    without the describing LLM's name (empty); None when all are rated."""
    evidence: HeadView | None
    """The head's mappings and operation scores (its descriptions left out)."""
    progress: review_queue.Progress


def labels() -> list[Label]:
    return [
        Label(label=name, meaning=RATING_MEANINGS[name], key=str(i + 1))
        for i, name in enumerate(RATING_LABELS)
    ]


def parse_min_scores(values: list[str]) -> dict[str, float]:
    """``["op=0.3", "induction=0.5", ...]`` -> {"op": 0.3, "induction": 0.5} (operations and
    attention patterns alike; ``semantic.split_min_scores`` tells them apart)."""
    out: dict[str, float] = {}
    for value in values:
        name, eq, number = value.partition("=")
        try:
            minimum = float(number)
        except ValueError:
            minimum = math.nan
        if not (eq and name.strip()) or not math.isfinite(minimum):
            raise WebError(
                422,
                "min_score must be OPERATION=NUMBER or PATTERN=NUMBER, e.g. copying=0.3 or "
                f"induction=0.5, not {value!r}",
            )
        out[name.strip()] = minimum
    return out


def review_item(
    store: Store, rater: str, model: str | None, after: int, *, skipped: bool = False
) -> ReviewItem:
    found, progress = review_queue.review_step(store, rater, model, after, skipped=skipped)
    if found is None:
        return ReviewItem(description=None, evidence=None, progress=progress)
    # Blind: nobody's ratings, and not which LLM wrote it (a rater's view of one model would
    # colour the rating); the head page shows both once it is rated.
    description = store.get_description(found).model_copy(
        update={"ratings": [], "history": [], "llm_model": "", "llm_host": "", "params": {}, "scores": []}
    )
    head = store.get_head(description.model, description.layer, description.head)
    return ReviewItem(
        description=description, evidence=head.model_copy(update={"descriptions": []}), progress=progress
    )


@router.get("/models", response_model=list[ModelSummary], summary="Every model with its counts")
def api_models(request: Request) -> list[ModelSummary]:
    return store_of(request).list_models()


@router.get("/labels", response_model=list[Label], summary="The rating scale")
def api_labels() -> list[Label]:
    return labels()


@router.get("/categories", summary="The description categories")
def api_categories() -> list[str]:
    return list(CATEGORIES)


@router.get(
    "/models/{model:path}/heads/{spec}",
    response_model=HeadView,
    summary="A head: mappings, operation scores, descriptions and ratings",
)
def api_head(request: Request, model: str, spec: str) -> HeadView:
    layer, head = head_spec(spec)
    return blind_head(store_of(request).get_head(model, layer, head), viewer_name(request))


@router.get(
    "/patterns", response_model=list[PatternInfo], summary="The attention patterns and what they measure"
)
def api_patterns() -> list[PatternInfo]:
    return [
        PatternInfo(name=p.name, label=p.label, help=p.help, unit=p.unit, notable=p.notable)
        for p in PATTERNS.values()
    ]


@router.get(
    "/models/{model:path}/patterns/{pattern}",
    response_model=PatternGrid,
    summary="An attention pattern's layer×head scores and top heads",
)
def api_pattern(
    request: Request, model: str, pattern: str, top: int = Query(default=10, ge=1, le=10_000)
) -> PatternGrid:
    return pattern_grid(store_of(request), model, pattern, top=top)


@router.get(
    "/models/{model:path}/heads/{spec}/pairs/{operation}",
    response_model=HeadPairs,
    summary="The pairs of an operation a head gets right and wrong",
)
def api_head_pairs(request: Request, model: str, spec: str, operation: str) -> HeadPairs:
    """Each pair's target rank in the head's mapping of its source (exact below k, a lower bound
    at k or above) and whether it is among the top k (``hit``), for the relation and the
    suppression score."""
    layer, head = head_spec(spec)
    return store_of(request).head_pairs(model, layer, head, operation)


@router.get("/models/{model:path}", response_model=ModelPage, summary="A model and its layer×head grid")
def api_model(
    request: Request,
    model: str,
    operation: str | None = None,
    pattern: str | None = None,
    metric: Literal["relation", "suppression"] = "relation",
) -> ModelPage:
    """The grid's ``score`` is ``operation``'s relation (or ``metric=suppression``) score, or
    ``pattern``'s score."""
    store = store_of(request)
    summary = store.get_model(model)
    grid = queries.grid(
        store, model, operation or None, pattern or None, viewer=viewer_name(request), metric=metric
    )
    cells = [[queries.Cell(**c) for c in row] for row in grid.cells]
    return ModelPage(model=summary, grid=grid.model_copy(update={"cells": cells}))


@router.get("/descriptions/{description_id}", response_model=DescriptionOut, summary="One description")
def api_description(request: Request, description_id: int) -> DescriptionOut:
    return blind(store_of(request).get_description(description_id), viewer_name(request))


@router.get("/search", response_model=semantic.SearchResult, summary="Search descriptions")
def api_search(
    request: Request,
    q: str = "",
    model: str | None = None,
    category: str | None = None,
    layer_min: int | None = None,
    layer_max: int | None = None,
    min_score: list[str] = Query(  # noqa: B008
        default=[], description="OPERATION=NUMBER or PATTERN=NUMBER (an attention pattern), repeatable"
    ),
    label: str | None = None,
    unclear: bool | None = None,
    relation: str | None = Query(default=None, description="A relation key, or a prefix ending in ':'"),
    min_fraction: float = Query(default=0.0, ge=0.0, le=1.0),
    source: str | None = Query(
        default=None, description="Heads with this salient (source) token", max_length=200
    ),
    target: str | None = Query(default=None, description="… mapped to this token", max_length=200),
    match: Literal["loose", "exact"] = Query(
        default="loose", description="loose: ignoring a leading space or word-start mark and case"
    ),
    show: list[str] = Query(  # noqa: B008
        default=[],
        description="Operations or attention patterns whose scores each hit shows (the first ranks heads)",
    ),
    mode: Literal["fulltext", "semantic", "hybrid"] = "hybrid",
    limit: int = Query(default=20, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=10_000),
) -> semantic.SearchResult:
    """Descriptions by text under filters; with no ``q``, the heads passing the filters (scores,
    patterns, relations, tokens), ranked by the token match and then the first shown score."""
    operations, patterns = semantic.split_min_scores(parse_min_scores(min_score))
    filters = semantic.Filters(
        model=model or None,
        category=category or None,
        layer_min=layer_min,
        layer_max=layer_max,
        min_scores=operations,
        min_patterns=patterns,
        label=label or None,
        unclear=unclear,
        relation=relation or None,
        min_fraction=min_fraction,
        tokens=TokenQuery(source=source or None, target=target or None, match=match),
        show=[name for name in show if name],
    )
    return semantic.search(store_of(request), q, filters, limit=limit, mode=mode, offset=offset)


@router.get(
    "/relations",
    response_model=list[RelationHit],
    summary="Heads whose salient rows satisfy a relation, strongest first",
)
def api_relations(
    request: Request,
    relation: str = Query(
        description="A relation key (copy, suffix:+ed, operation:NAME, …) or a prefix ending in ':'"
    ),
    model: str | None = None,
    min_fraction: float = Query(default=0.0, ge=0.0, le=1.0),
    limit: int = Query(default=100, ge=1, le=5000),
) -> list[RelationHit]:
    return find_heads(
        store_of(request), relation, model=model or None, min_fraction=min_fraction, limit=limit
    )


class SkipPost(BaseModel):
    description_id: int
    rater: str | None = Field(default=None, max_length=200)


class SkipOut(BaseModel):
    description_id: int
    rater: str
    new: bool
    """False when the rater had skipped it already."""


@router.post("/review/skip", response_model=SkipOut, summary="Skip a description in the review queue")
def api_review_skip(
    request: Request,
    skip: SkipPost,
    x_csrf_token: str | None = Header(default=None, max_length=200),
    _token: HTTPAuthorizationCredentials | None = Security(BEARER),  # noqa: B008
) -> SkipOut:
    """Remember that the rater skipped the description: their queue (``/review/next``) leaves it
    out until they ask for their skipped ones (``skipped=true``) or rate it. The same
    identification as rating."""
    rater = guard_of(request).writer(request, skip.rater, x_csrf_token)
    new = store_of(request).skip_description(skip.description_id, rater)
    return SkipOut(description_id=skip.description_id, rater=rater, new=new)


@router.post("/ratings", response_model=RatingOut, status_code=201, summary="Rate a description")
def api_rate(
    request: Request,
    rating: RatingPost,
    x_csrf_token: str | None = Header(default=None, max_length=200),
    _token: HTTPAuthorizationCredentials | None = Security(BEARER),  # noqa: B008
) -> RatingOut:
    """Store the rater's current rating of the description; an earlier one by the same rater
    is kept as history. Once raters exist, send ``Authorization: Bearer TOKEN`` (or the
    browser's session cookie with its ``X-CSRF-Token``); ``rater`` may then be left out."""
    return rate(request, rating, x_csrf_token)


@router.get("/review/next", response_model=ReviewItem, summary="The next description a rater has not rated")
def api_review_next(
    request: Request,
    rater: str | None = None,
    model: str | None = None,
    after: int = 0,
    skipped: bool = False,
    _token: HTTPAuthorizationCredentials | None = Security(BEARER),  # noqa: B008
) -> ReviewItem:
    """Once raters exist, the signed-in rater's queue (``rater``, if given, must be them);
    on a local server without raters, ``rater`` names the queue. Descriptions the rater
    skipped are left out unless ``skipped`` (their skipped ones again)."""
    guard = guard_of(request)
    viewer = guard.viewer(request)
    claimed = (rater or "").strip() or None
    if guard.raters_exist():
        if viewer.rater_id is None:
            raise WebError(401, "sign in as a rater first: Authorization: Bearer TOKEN")
        if claimed is not None and claimed != viewer.name:
            raise WebError(403, f"signed in as {viewer.name!r}: cannot read the queue of {claimed!r}")
        claimed = viewer.name
    if claimed is None:
        raise WebError(422, "rater: a rater name is required")
    return review_item(store_of(request), claimed, model or None, after, skipped=skipped)
