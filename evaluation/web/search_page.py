"""The search page: descriptions by text (full-text, semantic or both) under filters, and
heads by relation."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from describer.errors import HeadmapsError
from evaluation import semantic
from evaluation.relations import find_heads
from evaluation.web import queries
from evaluation.web.api import parse_min_scores
from evaluation.web.common import render, store_of
from evaluation.web.patterns import stored_patterns
from store.labels import CATEGORIES, CATEGORY_MEANINGS, RATING_LABELS

router = APIRouter(include_in_schema=False)


def marked(text: str) -> list[tuple[str, bool]]:
    """A snippet split into (text, is_match) pieces at the store's ``[...]`` marks; the template
    escapes each piece, so marks become ``<mark>`` without trusting the text."""
    pieces: list[tuple[str, bool]] = []
    for n, part in enumerate(re.split(r"\[([^\[\]]*)\]", text)):
        if part:
            pieces.append((part, n % 2 == 1))
    return pieces


SEARCH_FIELDS = (
    "q",
    "model",
    "category",
    "layer_min",
    "layer_max",
    "op",
    "min_score",
    "label",
    "unclear",
    "mode",
    "relation",
    "min_fraction",
)


@router.get("/search", response_class=HTMLResponse, openapi_extra={"x-query": list(SEARCH_FIELDS)})
def search_page(request: Request) -> HTMLResponse:
    params = request.query_params
    q = params.get("q", "")
    store = store_of(request)
    models = [m.name for m in store.list_models()]
    form = {
        key: params.get(key, "")
        for key in (
            "model",
            "category",
            "layer_min",
            "layer_max",
            "op",
            "min_score",
            "label",
            "unclear",
            "mode",
            "relation",
            "min_fraction",
        )
    }
    result, error = None, None
    try:
        layers = [int(form[k]) if form[k].strip() else None for k in ("layer_min", "layer_max")]
    except ValueError:
        layers, error = [None, None], "layers must be whole numbers"
    min_scores: dict[str, float] = {}
    if form["op"] and form["min_score"]:
        min_scores = parse_min_scores([f"{form['op']}={form['min_score']}"])
    min_scores, min_patterns = semantic.split_min_scores(min_scores)
    mode = form["mode"] if form["mode"] in ("fulltext", "semantic", "hybrid") else "hybrid"
    relation = form["relation"].strip() or None
    fraction, related = 0.0, None
    try:
        fraction = float(form["min_fraction"]) if form["min_fraction"].strip() else 0.0
    except ValueError:
        error = f"the minimum fraction must be a number between 0 and 1, not {form['min_fraction']!r}"
    if relation is not None and error is None and not q.strip():
        try:
            related = find_heads(
                store, relation, model=form["model"] or None, min_fraction=fraction, limit=200
            )
        except HeadmapsError as exc:
            error = str(exc)
    if q.strip() and error is None:
        filters = semantic.Filters(
            model=form["model"] or None,
            category=form["category"] or None,
            layer_min=layers[0],
            layer_max=layers[1],
            min_scores=min_scores,
            min_patterns=min_patterns,
            label=form["label"] or None,
            unclear={"yes": True, "no": False}.get(form["unclear"]),
            relation=relation,
            min_fraction=fraction,
        )
        try:
            result = semantic.search(store, q, filters, limit=50, mode=mode)
        except HeadmapsError as exc:
            error = str(exc)
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
        related=related,
        relation_keys=store.relation_keys(),
        error=error,
        marked=marked,
    )
