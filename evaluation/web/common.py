"""What the app, the JSON API and the pages share: the refusal with an HTTP status
(``WebError``) and the status of a store error, head specs and URLs, the store of the app
serving a request, and the Jinja2 environment and ``render`` for the pages' templates."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from describer.errors import HeadmapsError, InvalidValue, NotFound
from describer.heads import head_name, parse_head
from describer.tokens import escaped, visible
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
    """``"L3.H7"`` -> (3, 7) (``describer.heads``; the short ``"3.7"`` of older links too)."""
    try:
        return parse_head(spec)
    except InvalidValue as exc:
        raise WebError(404, f"not a head: {exc}") from None


def model_url(model: str) -> str:
    return "/models/" + quote(model, safe="/")


def head_url(model: str, layer: int, head: int) -> str:
    return f"{model_url(model)}/heads/{head_name(layer, head)}"


def queue_url(model: str, skipped: bool = False, **params: str | int) -> str:
    """The review queue's address for this model (and the skipped ones), with ``params``; empty
    values are left out."""
    query = {k: v for k, v in params.items() if v != ""}
    if model:
        query["model"] = model
    if skipped:
        query["skipped"] = "1"
    return "/review" + (f"?{urlencode(query)}" if query else "")


def store_of(request: Request) -> Store:
    return request.app.state.store


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(model_url=model_url, head_url=head_url, head_name=head_name, quote=quote)
    env.filters["token"] = token_html
    return env


def token_html(token: str, token_id: int | None = None) -> Markup:
    """A token as HTML: ``<bdi class="tok">`` (isolated from the text around it, whatever its
    direction) holding ``tokens.visible(token)``, with the exact form and the id on hover."""
    hover = escaped(token) + (f" · id {token_id}" if token_id is not None else "")
    ident = f' data-token-id="{int(token_id)}"' if token_id is not None else ""
    return Markup(f'<bdi class="tok" title="{escape(hover)}"{ident}>{escape(visible(token))}</bdi>')


def render(request: Request, name: str, status: int = 200, **context: object) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, name, context, status_code=status)


def known_query(request: Request) -> None:
    """Refuse a query parameter the route does not take (a dependency of every router): a
    misspelt or other page's name (``operation`` for ``op``) would otherwise be ignored in
    silence and show the wrong data. A route reading parameters by hand lists them in its
    ``openapi_extra={"x-query": [...]}``."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    allowed = _allowed_query(route)
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed)) or "none"
        raise WebError(422, f"unknown query parameter {', '.join(unknown)}; this page takes: {takes}")


_ALLOWED: dict[int, frozenset[str]] = {}


def _allowed_query(route: object) -> frozenset[str]:
    key = id(route)
    if key not in _ALLOWED:
        names: set[str] = set()
        todo = [route.dependant]  # type: ignore[attr-defined]
        while todo:  # the route's own parameters and those of its dependencies
            dependant = todo.pop()
            names.update(p.alias for p in dependant.query_params)
            todo.extend(dependant.dependencies)
        names.update((getattr(route, "openapi_extra", None) or {}).get("x-query", []))
        _ALLOWED[key] = frozenset(names)
    return _ALLOWED[key]
