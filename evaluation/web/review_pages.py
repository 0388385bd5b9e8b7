"""The review queue's pages: the next description to rate, blind, and its rating form."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from evaluation.web import queries
from evaluation.web.api import labels, review_item
from evaluation.web.auth import guard_of
from evaluation.web.common import queue_url, render, store_of
from evaluation.web.rating import MAX_COMMENT, RatingPost, rate
from evaluation.web.review_queue import review_order

router = APIRouter(include_in_schema=False)


@router.get("/review", response_class=HTMLResponse)
def review_page(
    request: Request,
    model: str = "",
    after: int = 0,
    change: str = "",
    saved: str = "",
    label: str = "",
    undone: str = "",
    skipped: bool = False,
) -> Response:
    guard = guard_of(request)
    viewer = guard.viewer(request)
    if viewer.name is None or (change and guard.local_mode()):
        if not guard.local_mode():
            next_url = queue_url(model)
            return RedirectResponse(f"/login?{urlencode({'next': next_url})}", status_code=303)
        return render(request, "review_name.html", model=model, labels=labels(), rater=viewer.name or "")
    item = review_item(store_of(request), viewer.name, model or None, after, skipped=skipped)
    return render(
        request,
        "review.html",
        item=item,
        rater=viewer.name,
        model=model,
        labels=labels(),
        saved=saved or None,
        saved_label=label or None,
        undone=undone or None,
        skipped_mode=skipped,
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
    skipped: str = Form("", max_length=10),
    csrf_token: str = Form("", max_length=200),
) -> Response:
    rating = rate(
        request,
        RatingPost(description_id=description_id, rater=rater or None, label=label, comment=comment),
        csrf_token,
    )
    target = queue_url(model, bool(skipped), after=description_id, saved=description_id, label=rating.label)
    return RedirectResponse(target, status_code=303)


@router.post("/review/skip")
def review_skip(
    request: Request,
    description_id: int = Form(...),
    model: str = Form("", max_length=300),
    skipped: str = Form("", max_length=10),
    csrf_token: str = Form("", max_length=200),
) -> Response:
    """Skip the description (the page's Skip, key ``s``): remembered, so it is not offered
    again on a later visit until the rater reviews their skipped ones."""
    rater = guard_of(request).writer(request, None, csrf_token)
    store_of(request).skip_description(description_id, rater)
    return RedirectResponse(queue_url(model, bool(skipped), after=description_id), status_code=303)


@router.post("/review/undo")
def review_undo(
    request: Request,
    description_id: int = Form(...),
    model: str = Form("", max_length=300),
    skipped: str = Form("", max_length=10),
    csrf_token: str = Form("", max_length=200),
) -> Response:
    """Withdraw the rating just made (the page's Undo, key ``u``) and show that description
    again: the queue resumes just before it in the rater's order."""
    rater = guard_of(request).writer(request, None, csrf_token)
    store = store_of(request)
    label = store.undo_rating(description_id, rater)
    order = review_order(store, rater, model or None)
    after: str | int = ""
    if description_id in order:
        after = order[order.index(description_id) - 1] if len(order) > 1 else 0
    target = queue_url(model, bool(skipped), undone=description_id if label else "", after=after)
    return RedirectResponse(target, status_code=303)
