"""A head's page (its evidence, attention patterns, descriptions and their ratings), the pairs
of an operation it gets right and wrong, its rating form's target, and a description's
permalink."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from evaluation.web import queries
from evaluation.web.api import labels
from evaluation.web.common import head_name, head_spec, head_url, render, store_of
from evaluation.web.exports import table_response
from evaluation.web.patterns import head_rows
from evaluation.web.rating import MAX_COMMENT, RatingPost, blind_head, rate, viewer_name

router = APIRouter(include_in_schema=False)


def shape(request: Request, model: str) -> tuple[int, int]:
    """Layers and heads per layer of ``model`` (404 when unknown)."""
    with store_of(request).read() as session:
        m = queries.model_row(session, model)
        return m.n_layers, m.n_heads


def neighbours(layer: int, head: int, n_layers: int, n_heads: int) -> dict[str, tuple[int, int] | None]:
    """The heads around one, in reading order across layers (L3.H3 -> L4.H0) and a layer
    up and down at the same head; None past the model's first or last."""
    index = layer * n_heads + head
    at = lambda i: divmod(i, n_heads) if 0 <= i < n_layers * n_heads else None  # noqa: E731
    return {
        "previous": at(index - 1),
        "next": at(index + 1),
        "up": (layer - 1, head) if layer > 0 else None,
        "down": (layer + 1, head) if layer + 1 < n_layers else None,
    }


@router.get("/models/{model:path}/heads/{spec}/pairs/{operation}", response_class=HTMLResponse)
def pairs_page(request: Request, model: str, spec: str, operation: str, format: str = "") -> Response:  # noqa: A002
    """The pairs of ``operation`` this head gets right (target in its top k) and wrong."""
    layer, head = head_spec(spec)
    pairs = store_of(request).head_pairs(model, layer, head, operation)
    if format:
        rows = [{"head": head_name(layer, head), **p.model_dump()} for p in pairs.pairs]
        columns = ["head", "source", "source_id", "target", "target_id", "rank", "hit",
                   "suppressed_rank", "suppressed_hit"]  # fmt: skip
        return table_response(rows, columns, format, f"{model}-{head_name(layer, head)}-{operation}-pairs")
    right = [p for p in pairs.pairs if p.hit]
    wrong = sorted((p for p in pairs.pairs if not p.hit), key=lambda p: p.rank)
    suppressed = [p for p in pairs.pairs if p.suppressed_hit]
    return render(request, "pairs.html", pairs=pairs, right=right, wrong=wrong, suppressed=suppressed)


@router.get("/models/{model:path}/heads/{spec}", response_class=HTMLResponse)
def head_page(request: Request, model: str, spec: str, saved: str = "") -> HTMLResponse:
    layer, head = head_spec(spec)
    store = store_of(request)
    viewer = viewer_name(request)
    view = blind_head(store.get_head(model, layer, head), viewer)
    n_layers, n_heads = shape(request, model)
    return render(
        request,
        "head.html",
        view=view,
        patterns=head_rows(view.patterns),
        around=neighbours(layer, head, n_layers, n_heads),
        has_suppressed=any(s.suppressed for s in view.salient),
        labels=labels(),
        rater=viewer or "",
        saved=saved or None,
        one_line=queries.one_line,
    )


@router.get("/descriptions/{description_id}")
def description_page(request: Request, description_id: int) -> Response:
    """A description's place on its head's page."""
    d = queries.description_location(store_of(request), description_id)
    return RedirectResponse(
        f"{head_url(d['model'], d['layer'], d['head'])}#d{description_id}", status_code=303
    )


@router.post("/models/{model:path}/heads/{spec}/ratings")
def head_rate(
    request: Request,
    model: str,
    spec: str,
    description_id: int = Form(...),
    rater: str = Form("", max_length=200),
    label: str = Form("", max_length=50),
    comment: str = Form("", max_length=MAX_COMMENT),
    csrf_token: str = Form("", max_length=200),
) -> Response:
    layer, head = head_spec(spec)
    rating = rate(
        request,
        RatingPost(description_id=description_id, rater=rater or None, label=label, comment=comment),
        csrf_token,
        head=(model, layer, head),
    )
    url = f"{head_url(model, layer, head)}?saved={rating.description_id}#d{rating.description_id}"
    return RedirectResponse(url, status_code=303)
