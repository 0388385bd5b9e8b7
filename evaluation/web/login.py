"""Signing in and out: the login page takes a rater's token or a one-time login link's code
(``headmaps raters add`` prints both) and starts a signed session; the local user without
raters names themselves here once."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from evaluation.web.auth import guard_of
from evaluation.web.common import WebError, queue_url, render, store_of

router = APIRouter(include_in_schema=False)


def safe_next(target: str) -> str:
    """Where to go after signing in: a path on this site only (never ``//host`` or a URL)."""
    target = target.strip()
    if not target.startswith("/") or target.startswith("//") or "\\" in target or len(target) > 2000:
        return "/review"
    return target


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, code: str = "", next: str = "/review") -> HTMLResponse:  # noqa: A002
    # Only a form here: the code is spent by the POST, so a link preview cannot use it up.
    return render(request, "login.html", code=code[:200], next=safe_next(next))


@router.post("/login")
def login(
    request: Request,
    token: str = Form("", max_length=200),
    code: str = Form("", max_length=200),
    next: str = Form("/review", max_length=2000),  # noqa: A002
    csrf_token: str = Form("", max_length=200),
) -> Response:
    guard = guard_of(request)
    guard.check_csrf(request, csrf_token)
    store = store_of(request)
    if code.strip():
        rater = store.redeem_login_code(code.strip())
        if rater is None:
            raise WebError(
                401, "this login link was used already, has expired or was revoked: headmaps raters link NAME"
            )
    else:
        rater = store.rater_by_token(token.strip()) if token.strip() else None
        if rater is None:
            raise WebError(401, "unknown or revoked rater token")
    guard.sign_in(request, rater.id)
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request, csrf_token: str = Form("", max_length=200)) -> Response:
    guard = guard_of(request)
    guard.check_csrf(request, csrf_token)
    guard.sign_out(request)
    return RedirectResponse("/", status_code=303)


@router.post("/review/name")
def local_name(
    request: Request,
    rater: str = Form(..., max_length=200),
    model: str = Form("", max_length=300),
    csrf_token: str = Form("", max_length=200),
) -> Response:
    """The local user's name (no raters, loopback only), kept in the signed session."""
    guard = guard_of(request)
    if not guard.local_mode():
        raise WebError(403, "this site has raters: sign in at /login with your token")
    guard.writer(request, rater, csrf_token)
    return RedirectResponse(queue_url(model), status_code=303)
