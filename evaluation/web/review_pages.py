"""The review queue's pages: the next description to rate, blind, and its rating form."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from evaluation.web import queries
from evaluation.web.api import labels, review_item
from evaluation.web.auth import guard_of
from evaluation.web.common import render, store_of
from evaluation.web.rating import MAX_COMMENT, RatingPost, rate

router = APIRouter(include_in_schema=False)


@router.get("/review", response_class=HTMLResponse)
def review_page(
    request: Request, model: str = "", after: int = 0, change: str = "", saved: str = "", label: str = ""
) -> Response:
    guard = guard_of(request)
    viewer = guard.viewer(request)
    if viewer.name is None or (change and guard.local_mode()):
        if not guard.local_mode():
            target = "/review" + (f"?{urlencode({'model': model})}" if model else "")
            return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
        return render(request, "review_name.html", model=model, labels=labels(), rater=viewer.name or "")
    item = review_item(store_of(request), viewer.name, model or None, after)
    return render(
        request,
        "review.html",
        item=item,
        rater=viewer.name,
        model=model,
        labels=labels(),
        saved=saved or None,
        saved_label=label or None,
        one_line=queries.one_line,
    )


@router.post("/review")
def review_rate(
    request: Request,
    description_id: int = Form(...),
    rater: str = Form("", max_length=200),
    label: str = Form("", max_length=50),
    comment: str = Form("", max_length=MAX_COMMENT),
    model: str = Form("", max_length=300),
    csrf_token: str = Form("", max_length=200),
) -> Response:
    rating = rate(
        request,
        RatingPost(description_id=description_id, rater=rater or None, label=label, comment=comment),
        csrf_token,
    )
    query = {"after": description_id, "saved": description_id, "label": rating.label}
    if model:
        query["model"] = model
    return RedirectResponse(f"/review?{urlencode(query)}", status_code=303)
