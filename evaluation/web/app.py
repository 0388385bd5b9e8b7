"""The review web app: ``create_app(store_url)`` builds a FastAPI app over one store.

Pages are rendered on the server by Jinja2 with autoescaping on every template: descriptions
are LLM output and are treated as untrusted text everywhere. Pages also send a
Content-Security-Policy that allows only the app's own script file, so even a bug in escaping
could not run an injected script. The JSON API under ``/api/`` serves the same data.

The routes are ``api.router``, ``pages.router`` and ``login.router``; what they share (errors,
URLs, the store, templates) is ``common``. Every request passes ``auth.Guard`` first: its Host
is one this server answers to, a write comes from this site, and the signed session cookie says
who is asking (see ``evaluation.web.auth``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import fastapi_offline
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from describer.errors import HeadmapsError
from evaluation.web import compare, head_pages, heatmap, pages, review_pages, search_page
from evaluation.web.api import router as api_router
from evaluation.web.auth import CSRF_FIELD, Guard, guard_of
from evaluation.web.common import HERE, WebError, environment, known_query, status_of
from evaluation.web.login import router as login_router
from store import open_store

DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
"""Swagger UI's and ReDoc's files, from the ``fastapi-offline`` package (no network needed)."""

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def create_app(
    store_url: str | None = None, *, host: str = "127.0.0.1", allowed_hosts: tuple[str, ...] = ()
) -> FastAPI:
    """The app over the store at ``store_url`` (default: ``store.default_url()``), answering
    to ``host`` (the address it is bound to; loopback names too when that is loopback) and to
    ``allowed_hosts``."""
    store = open_store(store_url)
    guard = Guard(store, host, allowed_hosts)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(
        title="headmaps",
        summary="Review, rate and search the descriptions of attention heads.",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # served below from local files: FastAPI's default loads them from a CDN
        redoc_url=None,
    )
    app.state.store = store
    app.state.guard = guard
    app.state.templates = Jinja2Templates(env=environment(), context_processors=[_page_context])
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.mount("/docs-assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def _swagger() -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="headmaps API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def _redoc() -> Response:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="headmaps API",
            redoc_js_url="/docs-assets/redoc.standalone.js",
            redoc_favicon_url="/docs-assets/favicon.png",
            with_google_fonts=False,
        )

    @app.exception_handler(HeadmapsError)
    async def _headmaps_error(request: Request, exc: HeadmapsError) -> Response:
        return _error(request, status_of(exc), str(exc))

    @app.exception_handler(WebError)
    async def _web_error(request: Request, exc: WebError) -> Response:
        return _error(request, exc.status, str(exc))

    @app.exception_handler(ValidationError)
    async def _invalid_model(request: Request, exc: ValidationError) -> Response:
        # A form's fields checked by a pydantic model in the route: too long, wrong type.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        return _error(request, 422, problems)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()
        )
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": problems, "errors": _jsonable(exc.errors())}, status_code=422)
        return _error(request, 422, problems)

    @app.middleware("http")
    async def _headers(request: Request, call_next) -> Response:  # noqa: ANN001
        refusal = guard.refuse(request)
        if refusal is not None:
            return refusal
        response = await call_next(request)
        guard.set_cookie(request, response)
        response.headers["X-Content-Type-Options"] = "nosniff"
        if response.headers.get("content-type", "").startswith(
            "text/html"
        ) and not request.url.path.startswith(("/docs", "/redoc")):
            # A page with a stricter policy of its own (the report) keeps it.
            response.headers.setdefault("Content-Security-Policy", CSP)
        return response

    # Each router refuses query parameters its routes do not take (422). The model page's
    # /models/{model:path} would swallow the head and report URLs: it comes last.
    checked = [Depends(known_query)]
    routers = (api_router, compare.api_router, login_router, pages.router, compare.router, head_pages.router)
    for router in (*routers, review_pages.router):
        app.include_router(router, dependencies=checked)
    app.include_router(search_page.router, dependencies=checked)
    app.include_router(heatmap.router, dependencies=checked)
    return app


def _page_context(request: Request) -> dict:
    """What every page's template gets: the CSRF token of its forms and who is viewing."""
    guard = guard_of(request)
    try:
        viewer = guard.viewer(request)
    except WebError:
        viewer = None
    return {
        "csrf_field": CSRF_FIELD,
        "csrf_token": guard.csrf_token(guard.session_of(request, keep=True)),
        "viewer": viewer,
        "local_mode": guard.local_mode(),
    }


def _jsonable(errors: list) -> list:
    return [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors]


def _error(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": message}, status_code=status)
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status
    )
