"""The review web app: ``create_app(store_url)`` builds a FastAPI app over one store.

Pages are rendered on the server by Jinja2 with autoescaping on every template: descriptions
are LLM output and are treated as untrusted text everywhere. Pages also send a
Content-Security-Policy that allows only the app's own script file, so even a bug in escaping
could not run an injected script. The JSON API under ``/api/`` serves the same data.

The routes are ``api.router`` and ``pages.router``; what they share (errors, URLs, the store,
templates) is ``common``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from describer.errors import HeadmapsError
from evaluation.web.api import router as api_router
from evaluation.web.common import HERE, WebError, environment, status_of
from evaluation.web.pages import router as pages_router
from store import open_store

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def create_app(store_url: str | None = None) -> FastAPI:
    """The app over the store at ``store_url`` (default: ``store.default_url()``)."""
    store = open_store(store_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(
        title="headmaps",
        summary="Review, rate and search the descriptions of attention heads.",
        version="1",
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.templates = Jinja2Templates(env=environment())
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(HeadmapsError)
    async def _headmaps_error(request: Request, exc: HeadmapsError) -> Response:
        return _error(request, status_of(exc), str(exc))

    @app.exception_handler(WebError)
    async def _web_error(request: Request, exc: WebError) -> Response:
        return _error(request, exc.status, str(exc))

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
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        if response.headers.get("content-type", "").startswith(
            "text/html"
        ) and not request.url.path.startswith(("/docs", "/redoc")):
            # A page with a stricter policy of its own (the report) keeps it.
            response.headers.setdefault("Content-Security-Policy", CSP)
        return response

    app.include_router(api_router)
    app.include_router(pages_router)
    return app


def _jsonable(errors: list) -> list:
    return [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors]


def _error(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": message}, status_code=status)
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status
    )
