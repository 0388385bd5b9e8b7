"""The JSON API: data, errors, ratings (concurrent, replaced with history), the review queue.
Runs on SQLite and, with ``HEADMAPS_TEST_POSTGRES_URL``, on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from evaluation.web import create_app
from evaluation.web.review_queue import review_order
from store import open_store
from store import tables as S
from tests._storedb import ENGINES, make_url
from tests._webauth import local_name
from tests._webstore import CAPITALS, XSS, fill, live_server


@pytest.fixture(params=ENGINES)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, int]]]:
    urls = make_url(request.param, tmp_path)
    url = next(urls)
    with open_store(url) as store:
        ids = fill(store)
    yield url, ids
    urls.close()


@pytest.fixture
def client(db: tuple[str, dict[str, int]]) -> Iterator[TestClient]:
    with TestClient(create_app(db[0]), base_url="http://127.0.0.1") as c:
        yield c


def test_models_and_grid(client: TestClient, db: tuple[str, dict[str, int]]) -> None:
    ids = db[1]
    client.post("/api/ratings", json={"description_id": ids["copy"], "rater": "ann", "label": "plausible"})
    (tiny,) = client.get("/api/models").json()
    assert (tiny["name"], tiny["heads"], tiny["described"], tiny["rated"], tiny["unclear"]) == (
        "tiny",
        12,
        4,
        1,
        1,
    )
    page = client.get("/api/models/tiny", params={"operation": "capital"}).json()
    grid = page["grid"]
    assert grid["operations"] == ["capital", "copy"]
    assert len(grid["cells"]) == 3 and all(len(row) == 4 for row in grid["cells"])
    cell = grid["cells"][1][2]
    assert (cell["line"], cell["category"], cell["description_id"]) == (
        CAPITALS,
        "knowledge_recalling",
        ids["capital"],
    )
    assert 0 <= cell["score"] <= 1
    # Blind: a viewer who has not rated the head's description sees that it is rated, not how.
    assert grid["cells"][0][1]["ratings"] == 1 and grid["cells"][0][1]["rating"] is None
    assert grid["cells"][0][0]["line"] is None
    local_name(client, "ann")
    grid = client.get("/api/models/tiny", params={"operation": "capital"}).json()["grid"]
    assert grid["cells"][0][1]["rating"] == "plausible"
    head = client.get("/api/models/tiny/heads/1.2").json()
    assert head["descriptions"][0]["pattern"] == CAPITALS
    assert len(head["salient"]) == 3 and head["operations"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("get", "/api/models/nope", None, 404, "unknown model 'nope'"),
        ("get", "/api/models/nope/heads/0.0", None, 404, "unknown model 'nope'"),
        ("get", "/api/models/tiny/heads/3.0", None, 404, "layer 3 out of range: tiny has layers 0..2"),
        ("get", "/api/models/tiny/heads/0.4", None, 404, "head 4 out of range"),
        ("get", "/api/models/tiny/heads/zero", None, 404, "not a head: 'zero'"),
        ("get", "/api/models/tiny?operation=nothing", None, 404, "no scores for operation 'nothing'"),
        ("get", "/api/descriptions/999", None, 404, "no description with id 999"),
        ("get", "/api/search?q=x&model=nope", None, 404, "unknown model 'nope'"),
        ("get", "/api/search?q=x&label=great", None, 422, "unknown rating label 'great'"),
        ("get", "/api/search?q=x&category=misc", None, 422, "unknown category 'misc'"),
        ("get", "/api/search?q=x&min_score=copy", None, 422, "min_score must be OPERATION=NUMBER"),
        ("get", "/api/review/next?rater=%20", None, 422, "a rater name is required"),
        ("get", "/api/review/next?rater=a&model=nope", None, 404, "unknown model 'nope'"),
        ("post", "/api/ratings", {"description_id": 1, "rater": "a", "label": "great"}, 422, "unknown rating label 'great'; use one of plausible"),
        ("post", "/api/ratings", {"description_id": 999, "rater": "a", "label": "plausible"}, 404, "no description with id 999"),
        ("post", "/api/ratings", {"description_id": 1, "rater": "", "label": "plausible"}, 422, "enter your name as rater before rating"),
        ("post", "/api/ratings", {"description_id": "one", "rater": "a", "label": "plausible"}, 422, "description_id: Input should be a valid integer"),
        ("post", "/api/ratings", {"rater": "a", "label": "plausible"}, 422, "description_id: Field required"),
    ],
)  # fmt: skip
def test_errors_are_4xx_with_clear_messages(
    client: TestClient, method: str, path: str, body: dict | None, status: int, message: str
) -> None:
    response = client.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_rerating_replaces_and_keeps_history(client: TestClient, db: tuple[str, dict[str, int]]) -> None:
    did = db[1]["capital"]
    first = client.post(
        "/api/ratings", json={"description_id": did, "rater": "ann", "label": "not_plausible"}
    )
    assert first.status_code == 201 and first.json()["is_current"]
    second = client.post(
        "/api/ratings",
        json={"description_id": did, "rater": "ann", "label": "plausible", "comment": "on reflection"},
    )
    assert second.status_code == 201
    (blind,) = client.get("/api/models/tiny/heads/1.2").json()["descriptions"]
    assert (blind["ratings"], blind["history"], blind["hidden_ratings"]) == ([], [], 1)
    local_name(client, "ann")
    (description,) = client.get("/api/models/tiny/heads/1.2").json()["descriptions"]
    assert [(r["rater"], r["label"], r["comment"]) for r in description["ratings"]] == [
        ("ann", "plausible", "on reflection")
    ]
    assert [(r["label"], r["is_current"]) for r in description["history"]] == [
        ("not_plausible", False),
        ("plausible", True),
    ]


def test_twenty_concurrent_ratings_are_stored_exactly_once(db: tuple[str, dict[str, int]]) -> None:
    url, ids = db
    did = ids["capital"]
    with live_server(url) as base:

        def post(n: int) -> int:
            body = {"description_id": did, "rater": f"rater{n}", "label": "plausible", "comment": f"#{n}"}
            return httpx.post(f"{base}/api/ratings", json=body, timeout=60).status_code

        with ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(post, range(20)))
    assert statuses == [201] * 20
    with open_store(url) as store, store.read() as session:
        rows = session.execute(select(S.Rating.rater, S.Rating.comment, S.Rating.is_current)).all()
        assert sorted(rows) == sorted((f"rater{n}", f"#{n}", True) for n in range(20))
        assert session.scalar(select(func.count()).select_from(S.Rating)) == 20


def test_review_queue_is_blind_and_advances(client: TestClient, db: tuple[str, dict[str, int]]) -> None:
    ids = db[1]
    client.post(
        "/api/ratings", json={"description_id": ids["capital"], "rater": "ann", "label": "not_plausible"}
    )
    order = review_order(client.app.state.store, "bob")  # bob's own seeded order of the 4
    assert sorted(order) == sorted(ids[n] for n in ("capital", "copy", "tense", "xss"))
    assert order != review_order(client.app.state.store, "ann")  # another rater, another order
    item = client.get("/api/review/next", params={"rater": "bob"}).json()
    assert item["description"]["id"] == order[0]
    first = order[0]
    assert item["description"]["ratings"] == [] and item["description"]["history"] == []  # blind
    assert item["evidence"]["descriptions"] == [] and len(item["evidence"]["salient"]) == 3
    assert item["progress"] == {"done": 0, "total": 4, "skipped": 0}
    client.post("/api/ratings", json={"description_id": first, "rater": "bob", "label": "plausible"})
    item = client.get("/api/review/next", params={"rater": "bob", "after": first}).json()
    assert item["description"]["id"] == order[1] and item["progress"] == {"done": 1, "total": 4, "skipped": 0}
    # Skipping past the end wraps around to what is still unrated.
    item = client.get("/api/review/next", params={"rater": "bob", "after": order[-1]}).json()
    assert item["description"]["id"] == order[1]
    for did in order[1:]:
        client.post("/api/ratings", json={"description_id": did, "rater": "bob", "label": "cannot_tell"})
    item = client.get("/api/review/next", params={"rater": "bob"}).json()
    assert item["description"] is None and item["progress"] == {"done": 4, "total": 4, "skipped": 0}


def test_search_api_fulltext_shape_and_filters(client: TestClient) -> None:
    body = client.get("/api/search", params={"q": "capital", "mode": "fulltext"}).json()
    assert body["mode"] == "fulltext"
    (hit,) = body["results"]
    assert {"description_id", "model", "layer", "head", "text", "score"} <= set(hit)
    assert (hit["model"], hit["layer"], hit["head"]) == ("tiny", 1, 2) and "[capital]" in hit["text"]
    none = client.get(
        "/api/search", params={"q": "capital", "mode": "fulltext", "category": "unclear"}
    ).json()
    assert none["results"] == []
    ranged = client.get(
        "/api/search", params={"q": "capital", "mode": "fulltext", "layer_min": 2, "layer_max": 2}
    ).json()
    assert ranged["results"] == []


def test_json_api_returns_hostile_text_verbatim_as_json(client: TestClient) -> None:
    response = client.get("/api/models/tiny/heads/2.0")
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    (description,) = response.json()["descriptions"]
    assert description["pattern"] == XSS and description["reasoning"] == XSS
    grid = client.get("/api/models/tiny").json()["grid"]
    assert grid["cells"][2][0]["line"] == XSS


def test_openapi_documents_the_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/models",
        "/api/models/{model}",
        "/api/models/{model}/heads/{spec}",
        "/api/search",
        "/api/ratings",
    ):
        assert path in paths
    assert client.get("/docs").status_code == 200


def test_openapi_declares_the_bearer_token(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert spec["paths"]["/api/ratings"]["post"]["security"] == [{"HTTPBearer": []}]
