"""Relation evidence in the web app: the head page's Relations section, the model and search
pages' relation filter, and the JSON API (``/api/relations``, ``/api/search?relation=``), with
hostile tokens escaped and bad keys or fractions refused with a clear message. On SQLite and,
with ``HEADMAPS_TEST_POSTGRES_URL``, PostgreSQL."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from describer.tokens import visible
from evaluation.web import create_app
from store import open_store
from tests._storedb import ENGINES, make_url
from tests._webstore import XSS, fill


@pytest.fixture(params=ENGINES)
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    urls = make_url(request.param, tmp_path)
    url = next(urls)
    with open_store(url) as store:
        fill(store)
    with TestClient(create_app(url), base_url="http://127.0.0.1") as c:
        yield c
    urls.close()


def test_head_page_lists_its_relations_with_examples(client: TestClient) -> None:
    page = client.get("/models/tiny/heads/1.2").text
    section = page[page.index("<h2>Relations</h2>") : page.index("<h2>Operation scores</h2>")]
    assert "2 of 3" in section and "country → capital" in section and "3 of 3" in section
    assert section.index("operation:capital") < section.index("script:inputs:latin")  # strongest first
    france = '<bdi class="tok" title="&#34; France&#34;">␣France</bdi>'
    assert f'{france} → <bdi class="tok" title="&#34; Paris&#34;">␣Paris</bdi>' in section
    assert 'href="/models/tiny?relation=operation%3Acapital"' in section
    empty = client.get("/models/tiny/heads/0.0").text
    assert "No relation holds for enough of this head" in empty


def test_hostile_relation_text_is_escaped(client: TestClient) -> None:
    page = client.get("/models/tiny/heads/2.0").text
    section = page[page.index("<h2>Relations</h2>") : page.index("<h2>Operation scores</h2>")]
    assert "<script>" not in section and "<img" not in section
    shown = html.unescape(section)
    assert shown.count(XSS) == 1 and shown.count(visible(XSS)) == 2  # the label; both tokens shown


def listed(page: str) -> list[str]:
    """The heads the model page lists by relation, in order."""
    if 'id="relation-heads"' not in page:
        return []
    table = page[
        page.index('id="relation-heads"') : page.index("</table>", page.index('id="relation-heads"'))
    ]
    return [part.split('"', 1)[0] for part in table.split('data-head="')[1:]]


def test_model_page_lists_heads_by_relation(client: TestClient) -> None:
    page = client.get("/models/tiny", params={"relation": "copy"}).text
    assert listed(page) == ["L0.H1", "L2.H0"]  # 3 of 3 before 1 of 3
    assert 'href="/models/tiny/heads/L0.H1"' in page and "3 of 3" in page
    assert '<option value="operation:capital">' in page  # the stored keys are offered
    assert listed(client.get("/models/tiny", params={"relation": "copy", "min_fraction": "0.5"}).text) == [
        "L0.H1"
    ]
    assert listed(client.get("/models/tiny", params={"relation": "operation:"}).text) == ["L1.H2"]
    none = client.get("/models/tiny", params={"relation": "successor"}).text
    assert 'id="relation-none"' in none and listed(none) == []
    assert listed(client.get("/models/tiny").text) == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"relation": "nonsense"}, "unknown relation &#39;nonsense&#39;"),
        ({"relation": "copy", "min_fraction": "1.5"}, "between 0 and 1, not 1.5"),
        ({"relation": "copy", "min_fraction": "half"}, "between 0 and 1, not &#39;half&#39;"),
    ],
)
def test_model_page_refuses_bad_relation_filters(client: TestClient, params: dict, message: str) -> None:
    response = client.get("/models/tiny", params=params)
    assert response.status_code == 422 and message in response.text


def test_search_page_filters_by_relation(client: TestClient) -> None:
    listed = client.get("/search", params={"relation": "copy"}).text
    assert "2 heads with <code>copy</code>" in listed
    assert listed.index('href="/models/tiny/heads/L0.H1"') < listed.index('href="/models/tiny/heads/L2.H0"')
    assert "3 of 3 rows: maps to itself" in listed
    # With a query, the descriptions found are those of heads with the relation.
    both = client.get("/search", params={"q": "copies", "mode": "fulltext", "relation": "copy"}).text
    assert "1 result " in both and 'href="/models/tiny/heads/L0.H1#d' in both
    other = client.get("/search", params={"q": "copies", "mode": "fulltext", "relation": "operation:"}).text
    assert "0 results" in other
    bad = client.get("/search", params={"relation": "nope"}).text
    assert "unknown relation" in bad


def test_relations_api(client: TestClient) -> None:
    hits = client.get("/api/relations", params={"relation": "copy"}).json()
    assert [(h["layer"], h["head"], h["rows"], h["n_rows"]) for h in hits] == [(0, 1, 3, 3), (2, 0, 1, 3)]
    assert hits[0]["summary"] == "3 of 3 rows: maps to itself (or a case/space variant)"
    assert hits[0]["examples"] == [[" w010", " w010"]] and hits[0]["model"] == "tiny"
    assert hits[1]["label"] == XSS  # JSON carries the text verbatim
    assert len(client.get("/api/relations", params={"relation": "copy", "min_fraction": 0.5}).json()) == 1
    assert client.get("/api/relations", params={"relation": "copy", "limit": 1}).json()[0]["head"] == 1
    prefix = client.get("/api/relations", params={"relation": "operation:", "model": "tiny"}).json()
    assert [h["relation"] for h in prefix] == ["operation:capital"]
    head = client.get("/api/models/tiny/heads/1.2").json()
    assert [r["relation"] for r in head["relations"]] == ["operation:capital", "script:inputs:latin"]
    assert head["relations"][0]["summary"] == "2 of 3 rows: country → capital"
    found = client.get("/api/search", params={"q": "capital", "mode": "fulltext", "relation": "copy"}).json()
    assert found["results"] == []
    found = client.get("/api/search", params={"q": "capital", "mode": "fulltext", "relation": "operation:"})
    assert [(h["layer"], h["head"]) for h in found.json()["results"]] == [(1, 2)]


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"relation": "nope"}, 422, "unknown relation 'nope'"),
        ({"relation": "copy", "min_fraction": 2}, 422, "min_fraction"),
        ({"relation": "copy", "model": "nope"}, 404, "unknown model 'nope'"),
        ({}, 422, "relation"),
    ],
)
def test_relations_api_errors(client: TestClient, params: dict, status: int, message: str) -> None:
    response = client.get("/api/relations", params=params)
    assert response.status_code == status, response.text
    assert message in str(response.json()["detail"])
