"""Every GET route refuses a query parameter it does not take (422 with one clear line),
instead of ignoring it in silence, and still takes every parameter it declares."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from evaluation.web import create_app
from store import open_store
from tests._webstore import fill

EXAMPLES = {"{model:path}": "tiny", "{spec}": "L1.H2", "{description_id}": "1", "{pattern}": "induction"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path_factory.mktemp('params') / 'p.db'}"
    with open_store(url) as store:
        fill(store)
    with TestClient(create_app(url), base_url="http://127.0.0.1") as client:
        yield client


def _get_routes(app) -> list:  # noqa: ANN001
    routes = [
        r for top in app.routes for r in getattr(getattr(top, "original_router", None), "routes", [top])
    ]
    return [r for r in routes if "GET" in (getattr(r, "methods", None) or ()) and hasattr(r, "dependant")]


def _concrete(path: str) -> str | None:
    for placeholder, value in EXAMPLES.items():
        path = path.replace(placeholder, value)
    return None if "{" in path else path


def test_every_get_route_refuses_an_unknown_parameter(client: TestClient) -> None:
    checked = []
    for route in _get_routes(client.app):
        path = _concrete(route.path)
        if path is None or route.path.startswith(("/docs", "/redoc", "/openapi")):
            continue
        response = client.get(path, params={"colour_by_mistake": "1"})
        assert response.status_code == 422, (route.path, response.status_code)
        text = response.json()["detail"] if path.startswith("/api/") else response.text
        assert "unknown query parameter colour_by_mistake" in text, route.path
        checked.append(route.path)
    assert len(checked) >= 12  # pages and API alike


def test_the_message_lists_what_the_page_takes(client: TestClient) -> None:
    response = client.get("/api/search", params={"q": "capital", "op": "copy"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("unknown query parameter op; this page takes: ")
    assert "min_score" in detail and "q" in re.split(r", |: ", detail)


def test_declared_parameters_still_pass(client: TestClient) -> None:
    assert client.get("/api/models/tiny/heads/L1.H2").status_code == 200
    assert client.get("/search", params={"q": "capital", "mode": "fulltext"}).status_code == 200
    assert client.get("/models/tiny/report", params={"download": "1"}).status_code == 200
    # A form's own fields are not query parameters of its page, but the page takes its filters.
    assert client.get("/review", params={"after": "1"}).status_code in (200, 303)


def test_static_files_and_docs_are_not_checked(client: TestClient) -> None:
    assert client.get("/static/style.css", params={"v": "2"}).status_code == 200  # cache busting
