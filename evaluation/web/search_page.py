"""The search page: descriptions by text (full-text, semantic or both) under filters; without
words, the heads passing the filters (scores, patterns, relations, tokens they map), as a
sortable table with the filtered scores, paged and downloadable."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from describer.errors import HeadmapsError
from describer.heads import head_name
from evaluation import semantic
from evaluation.relations import find_heads
from evaluation.web import queries
from evaluation.web.api import parse_min_scores
from evaluation.web.common import render, store_of
from evaluation.web.exports import check_format, table_response
from evaluation.web.patterns import stored_patterns
from store.head_search import TokenQuery, token_counts
from store.labels import CATEGORIES, CATEGORY_MEANINGS, RATING_LABELS

router = APIRouter(include_in_schema=False)

PAGE = 50
"""Hits per page."""


def marked(text: str) -> list[tuple[str, bool]]:
    """A snippet split into (text, is_match) pieces at the store's ``[...]`` marks; the template
    escapes each piece, so marks become ``<mark>`` without trusting the text."""
    pieces: list[tuple[str, bool]] = []
    for n, part in enumerate(re.split(r"\[([^\[\]]*)\]", text)):
        if part:
            pieces.append((part, n % 2 == 1))
    return pieces


FORM_FIELDS = (
    "model",
    "category",
    "layer_min",
    "layer_max",
    "operation",
    "min_score",
    "label",
    "unclear",
    "mode",
    "relation",
    "min_fraction",
    "source",
    "target",
    "match",
)
SEARCH_FIELDS = ("q", *FORM_FIELDS, "offset", "format")


def _filters(form: dict[str, str]) -> tuple[semantic.Filters, str]:
    """The form's filters, and the search mode; raises HeadmapsError naming a bad field."""
    try:
        layers = [int(form[k]) if form[k].strip() else None for k in ("layer_min", "layer_max")]
    except ValueError:
        raise HeadmapsError("layers must be whole numbers") from None
    try:
        fraction = float(form["min_fraction"]) if form["min_fraction"].strip() else 0.0
    except ValueError:
        raise HeadmapsError(
            f"the minimum fraction must be a number between 0 and 1, not {form['min_fraction']!r}"
        ) from None
    operation = form["operation"].strip()
    min_scores: dict[str, float] = {}
    if operation and form["min_score"].strip():
        min_scores = parse_min_scores([f"{operation}={form['min_score'].strip()}"])
    operations, patterns = semantic.split_min_scores(min_scores)
    match = form["match"] or "loose"
    if match not in ("loose", "exact"):
        raise HeadmapsError(f"match is loose or exact, not {match!r}")
    filters = semantic.Filters(
        model=form["model"] or None,
        category=form["category"] or None,
        layer_min=layers[0],
        layer_max=layers[1],
        min_scores=operations,
        min_patterns=patterns,
        label=form["label"] or None,
        unclear={"yes": True, "no": False}.get(form["unclear"]),
        relation=form["relation"].strip() or None,
        min_fraction=fraction,
        tokens=TokenQuery(source=form["source"] or None, target=form["target"] or None, match=match),
        show=[operation] if operation else [],
    )
    mode = form["mode"] if form["mode"] in ("fulltext", "semantic", "hybrid") else "hybrid"
    return filters, mode


def _relation_only(filters: semantic.Filters) -> bool:
    """Only a relation is asked for: the relation listing (strongest first, with examples)."""
    return filters.relation is not None and filters.model_copy(update={"relation": None, "model": None}) == (
        semantic.Filters(min_fraction=filters.min_fraction)
    )


def _token_hint(store, q: str) -> dict[str, int] | None:  # noqa: ANN001
    """A one-word query that is also a token some heads map: how many have it as a salient
    (source) token and as a mapped (target) one, to offer a search by tokens."""
    word = q.strip()
    if not word or len(word.split()) != 1 or len(word) > 100:
        return None
    with store.read() as session:
        sources, targets = token_counts(session, word)
    return {"source": sources, "target": targets} if sources or targets else None


def _rows(result: semantic.SearchResult, names: list[str]) -> list[dict]:
    rows = []
    for h in result.results:
        row = {
            "model": h.model,
            "head": head_name(h.layer, h.head),
            "layer": h.layer,
            "head_index": h.head,
            "description_id": h.description_id,
            "text": h.text,
            "score": h.score,
            "best_rank": h.best_rank,
            "matches": " | ".join(
                f"{m.source} → {m.target}" if m.target is not None else m.source for m in h.matches
            ),
        }
        rows.append(row | {name: h.scores.get(name) for name in names})
    return rows


@router.get("/search", response_class=HTMLResponse, openapi_extra={"x-query": list(SEARCH_FIELDS)})
def search_page(request: Request) -> Response:
    params = request.query_params
    q = params.get("q", "")
    fmt = params.get("format", "")
    store = store_of(request)
    models = [m.name for m in store.list_models()]
    form = {key: params.get(key, "") for key in FORM_FIELDS}
    result, related, hint, error = None, None, None, None
    try:
        if fmt:
            check_format(fmt)
        offset = int(params.get("offset", "0") or 0)
        if not 0 <= offset <= semantic.MAX_RESULTS:
            raise ValueError
    except ValueError:
        offset, error = 0, f"offset must be a whole number from 0 to {semantic.MAX_RESULTS}"
    filters, mode = semantic.Filters(), "hybrid"
    if error is None:
        try:
            filters, mode = _filters(form)
            if not q.strip() and _relation_only(filters):
                related = find_heads(
                    store, filters.relation, model=filters.model, min_fraction=filters.min_fraction, limit=200
                )
            elif q.strip() or filters.active or filters.show:
                # A download is the whole result (up to MAX_RESULTS), not the page shown.
                limit, offset = (semantic.MAX_RESULTS, 0) if fmt else (PAGE, offset)
                result = semantic.search(store, q, filters, limit=limit, mode=mode, offset=offset)
                if not filters.tokens.active and not fmt:  # a download shows no hint
                    hint = _token_hint(store, q)
        except HeadmapsError as exc:
            error = str(exc)
    names = filters.shown
    if fmt and result is not None:
        columns = ["model", "head", "layer", "head_index", "description_id", "text", "score", *names]
        if filters.tokens.active:
            columns += ["best_rank", "matches"]
        return table_response(_rows(result, names), columns, fmt, f"search-{q or 'heads'}")
    if fmt and error is not None:
        return Response(f"error: {error}\n", status_code=422, media_type="text/plain")
    here = {k: v for k, v in params.items() if k not in ("offset", "format") and v}
    pages = {}
    if result is not None:
        if result.offset > 0:
            pages["previous"] = "/search?" + urlencode({**here, "offset": max(0, result.offset - PAGE)})
        if result.more:
            pages["next"] = "/search?" + urlencode({**here, "offset": result.offset + len(result.results)})
    operations = sorted({name for m in models for name in queries.operations_of(store, m)})
    return render(
        request,
        "search.html",
        q=q,
        form=form,
        mode=mode,
        models=models,
        operations=operations,
        patterns=stored_patterns(store),
        categories=CATEGORIES,
        category_meanings=CATEGORY_MEANINGS,
        rating_labels=RATING_LABELS,
        result=result,
        names=names,
        tokens=filters.tokens,
        related=related,
        hint=hint,
        pages=pages,
        downloads={f: "/search?" + urlencode({**here, "format": f}) for f in ("csv", "json")},
        relation_keys=store.relation_keys(),
        error=error,
        marked=marked,
    )
