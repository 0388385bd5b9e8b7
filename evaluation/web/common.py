"""What the app, the JSON API and the pages share: the refusal with an HTTP status
(``WebError``) and the status of a store error, head specs and URLs, the store of the app
serving a request, and the Jinja2 environment and ``render`` for the pages' templates."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape

from describer.errors import HeadmapsError, InvalidValue, NotFound
from store import Store

HERE = Path(__file__).parent


class WebError(Exception):
    """A request the app refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def status_of(error: HeadmapsError) -> int:
    """404 for what does not exist, 422 for values outside a vocabulary, else 400: by the
    error's type, so rewording a message cannot change the status."""
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, InvalidValue):
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


def store_of(request: Request) -> Store:
    return request.app.state.store


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(model_url=model_url, head_url=head_url, quote=quote)
    return env


def render(request: Request, name: str, status: int = 200, **context: object) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, name, context, status_code=status)
