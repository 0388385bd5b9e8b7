"""A head's page (its evidence, attention patterns, descriptions and their ratings), its
rating form's target, and a description's permalink."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from evaluation.web import queries
from evaluation.web.api import labels
from evaluation.web.common import head_spec, head_url, render, store_of
from evaluation.web.patterns import head_rows
from evaluation.web.rating import MAX_COMMENT, RatingPost, blind_head, rate, viewer_name

router = APIRouter(include_in_schema=False)


@router.get("/models/{model:path}/heads/{spec}", response_class=HTMLResponse)
def head_page(request: Request, model: str, spec: str, saved: str = "") -> HTMLResponse:
    layer, head = head_spec(spec)
    store = store_of(request)
    viewer = viewer_name(request)
    view = blind_head(store.get_head(model, layer, head), viewer)
    return render(
        request,
        "head.html",
        view=view,
        patterns=head_rows(view.patterns),
        n_heads=queries.head_count(store, model),
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
