"""The review web app: ``create_app(store_url)`` builds a FastAPI app over one store.

Pages are rendered on the server by Jinja2 with autoescaping on every template: descriptions
are LLM output and are treated as untrusted text everywhere. Pages also send a
Content-Security-Policy that allows only the app's own script file, so even a bug in escaping
could not run an injected script. The JSON API under ``/api/`` serves the same data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape

from describer.errors import HeadmapsError
from store import open_store

HERE = Path(__file__).parent
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class WebError(Exception):
    """A request the app refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def status_of(error: HeadmapsError) -> int:
    """404 for what does not exist, 422 for values outside a vocabulary, else 400."""
    message = str(error)
    if message.startswith(("unknown model", "no description", "no scores", "no analysis")) or (
        "out of range" in message
    ):
        return 404
    if message.startswith(("unknown rating label", "unknown category")):
        return 422
    return 400


def head_spec(spec: str) -> tuple[int, int]:
    """``"3.7"`` -> (3, 7)."""
    layer, dot, head = spec.partition(".")
    if not (dot and layer.isdigit() and head.isdigit()):
        raise WebError(404, f"not a head: {spec!r}; heads are LAYER.HEAD, e.g. 3.7")
    return int(layer), int(head)


def model_url(model: str) -> str:
    return "/models/" + quote(model, safe="/")


def head_url(model: str, layer: int, head: int) -> str:
    return f"{model_url(model)}/heads/{layer}.{head}"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(model_url=model_url, head_url=head_url, quote=quote)
    return env


def create_app(store_url: str | None = None) -> FastAPI:
    """The app over the store at ``store_url`` (default: ``store.default_url()``)."""
    from evaluation.web import api, pages

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
    app.state.templates = Jinja2Templates(env=_environment())
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

    app.include_router(api.router)
    app.include_router(pages.router)
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


def render(request: Request, name: str, status: int = 200, **context: object) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, name, context, status_code=status)
