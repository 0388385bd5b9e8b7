"""Attention-pattern scores in the web app and the report: the model heatmap coloured by a
pattern (each on its own scale), the head page's "What it attends to", the search page's and
the API's pattern filters, ``GET /api/models/{model}/patterns/{pattern}``, and the report's
pattern maps, with bad names refused by a message listing the valid ones. On SQLite and, with
``HEADMAPS_TEST_POSTGRES_URL``, PostgreSQL."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from evaluation.web import create_app
from evaluation.web.heatmap_svg import sequential as blues
from store import open_store
from store.records import PatternsIn
from tests._patternstore import LATEST, add_patterns
from tests._storedb import ENGINES, analysis, make_url, model_info
from tests._webstore import fill

HOSTILE = '<b id="injected">x'
"""A pattern name from some other headmaps: shown on the head page, escaped."""


@pytest.fixture(params=ENGINES)
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    urls = make_url(request.param, tmp_path)
    url = next(urls)
    with open_store(url) as store:
        fill(store)
        add_patterns(store)
        bare = model_info("bare", 2, 2)
        store.save_analysis(bare, analysis(bare, ops=("copy",)), settings_key="k")
    with TestClient(create_app(url), base_url="http://127.0.0.1") as c:
        yield c
    urls.close()


def cells(page: str) -> dict[str, tuple[str, str]]:
    """The heatmap's cells: head -> (background, title)."""
    found = re.findall(
        r'data-head="(L\d+\.H\d+)"[^>]*aria-label="([^"]*)"><rect [^>]*fill="(#[0-9a-f]{6})"', page
    )
    return {head: (colour, html.unescape(title)) for head, title, colour in found}


def test_model_heatmap_coloured_by_a_fraction(client: TestClient) -> None:
    page = client.get("/models/tiny", params={"by": "pattern", "pattern": "induction", "scale": "shared"})
    assert page.status_code == 200
    shown = cells(page.text)
    assert len(shown) == 12
    assert shown["L1.H2"] == (blues(0.83), "L1.H2 (0.83): maps nations to their capital cities")
    assert shown["L0.H1"][0] == blues(0.45) and shown["L0.H1"][1].startswith("L0.H1 (0.45): ")
    assert shown["L0.H0"] == (blues(0.0), "L0.H0 (0.00): not described")
    assert shown["L2.H3"][1].startswith("L2.H3 (0.10): ")  # the latest analysis, not the older 0.99
    # The selector offers the stored patterns in PATTERNS order, this one chosen.
    select = page.text[
        page.text.index('<select name="pattern"') : page.text.index(
            "</select>", page.text.index('<select name="pattern"')
        )
    ]
    assert re.findall(r'<option value="(\w+)"', select) == [
        "previous_token",
        "induction",
        "first_token",
        "entropy",
    ]
    assert '<option value="induction" selected>' in select
    assert '<option value="pattern" selected>attention pattern</option>' in page.text
    assert "mean attention to the token after the current token&#39;s earlier occurrence" in page.text
    # A pattern alone picks the colouring; without one, the first stored pattern is shown.
    assert cells(client.get("/models/tiny", params={"pattern": "induction", "scale": "shared"}).text) == shown
    fitted = cells(client.get("/models/tiny", params={"pattern": "induction"}).text)  # the default
    darkest = max(LATEST["induction"][layer][head] for layer in range(3) for head in range(4))
    assert fitted["L1.H2"][0] == blues(0.83 / darkest)
    first = cells(client.get("/models/tiny", params={"by": "pattern"}).text)
    assert first["L0.H1"][1].startswith("L0.H1 (0.90): ")  # previous_token


def test_entropy_is_shaded_on_the_models_own_maximum(client: TestClient) -> None:
    page = client.get("/models/tiny", params={"by": "pattern", "pattern": "entropy"}).text
    shown = cells(page)
    top = LATEST["entropy"][2][3]  # 3.3 nats, the darkest cell
    assert shown["L2.H3"] == (blues(1.0), "L2.H3 (3.30): turns verbs into their past tense")
    assert shown["L0.H0"][0] == blues(1.0 / top)
    assert shown["L1.H2"][0] == blues(2.2 / top)
    assert "3.3 nats" in page  # the legend's top


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        (
            {"by": "pattern", "pattern": "bogus"},
            404,
            "unknown pattern &#39;bogus&#39;; valid patterns: previous_token, induction",
        ),
        (
            {"by": "pattern", "pattern": "distance"},
            404,
            "no scores for pattern &#39;distance&#39; of tiny; stored: previous_token",
        ),
        ({"by": "shape"}, 422, "or by pattern, not &#39;shape&#39;"),
    ],
)
def test_model_page_refuses_bad_patterns(client: TestClient, params: dict, status: int, message: str) -> None:
    response = client.get("/models/tiny", params=params)
    assert response.status_code == status and message in response.text


def test_a_model_without_patterns_has_no_selector(client: TestClient) -> None:
    page = client.get("/models/bare").text
    assert 'name="pattern"' not in page and 'value="pattern"' not in page
    response = client.get("/models/bare", params={"by": "pattern"})
    assert response.status_code == 404 and "no attention-pattern scores stored for bare" in response.text
    head = client.get("/models/bare/heads/0.0").text
    assert "What it attends to" in head and "No attention-pattern scores stored for this head" in head


def section(page: str) -> str:
    start = page.index('<section class="patterns"')
    return page[start : page.index("</section>", start)]


def rows(page: str) -> dict[str, str]:
    """The head page's pattern rows: name -> the row's HTML."""
    found = re.findall(r'<tr class="pattern[^"]*" data-pattern="([^"]*)">(.*?)</tr>', section(page), re.S)
    return dict(found)


def test_head_page_shows_what_it_attends_to(client: TestClient) -> None:
    page = client.get("/models/tiny/heads/1.2").text
    assert "<h2>What it attends to</h2>" in section(page)
    shown = rows(page)
    assert list(shown) == ["previous_token", "induction", "first_token", "entropy"]
    assert '<tr class="pattern notable" data-pattern="induction">' in page  # 0.83 ≥ 0.4
    assert 'class="pattern" data-pattern="first_token"' in page  # 0.5 < 0.8
    assert "0.830" in shown["induction"] and "an induction head" in shown["induction"]
    assert "2.200" in shown["entropy"] and "nats" in shown["entropy"]
    assert "mean entropy of the attention distribution, in nats" in shown["entropy"]
    assert 'href="/models/tiny?by=pattern&amp;pattern=induction"' in shown["induction"]
    sink = client.get("/models/tiny/heads/2.0").text
    assert '<tr class="pattern notable" data-pattern="first_token">' in sink
    assert "an attention-sink head" in rows(sink)["first_token"]


def test_an_unknown_pattern_name_is_escaped(client: TestClient) -> None:
    store = client.app.state.store
    grid = [[0.5] * 4 for _ in range(3)]
    store.save_patterns(
        model_info("tiny", 3, 4), PatternsIn(settings={}, scores={HOSTILE: grid}), settings_key="x"
    )
    page = client.get("/models/tiny/heads/1.2").text
    assert 'id="injected"' not in page and "<b" not in section(page)
    assert HOSTILE in html.unescape(section(page))
    assert 'id="injected"' not in client.get("/models/tiny").text


def search(client: TestClient, q: str, op: str, minimum: str) -> list[str]:
    page = client.get("/search", params={"q": q, "mode": "fulltext", "operation": op, "min_score": minimum})
    assert page.status_code == 200
    return [f"{a}.{b}" for a, b in re.findall(r'href="/models/tiny/heads/L(\d+)\.H(\d+)#d', page.text)]


def test_search_page_filters_by_a_pattern(client: TestClient) -> None:
    form = client.get("/search").text
    assert '<optgroup label="attention patterns">' in form and "<option >induction</option>" in form
    assert search(client, "capital", "induction", "0.8") == ["1.2"]
    assert search(client, "capital", "induction", "0.9") == []
    assert search(client, "verbs", "previous_token", "0.6") == ["2.3"]
    assert search(client, "verbs", "induction", "0.5") == []  # not the older analysis
    assert search(client, "copies", "entropy", "1.1") == ["0.1"]
    assert search(client, "copies", "entropy", "1.2") == []
    chosen = client.get("/search", params={"q": "capital", "operation": "induction", "min_score": "0.8"}).text
    assert "<option selected>induction</option>" in chosen


def api_heads(client: TestClient, q: str, *scores: str) -> list[tuple[int, int]]:
    response = client.get("/api/search", params={"q": q, "mode": "fulltext", "min_score": list(scores)})
    assert response.status_code == 200, response.text
    return [(h["layer"], h["head"]) for h in response.json()["results"]]


def test_api_search_filters_by_patterns(client: TestClient) -> None:
    assert api_heads(client, "copies", "induction=0.4") == [(0, 1)]
    assert api_heads(client, "copies", "induction=0.4", "previous_token=0.91") == []
    assert api_heads(client, "capital", "induction=0.8", "capital=0") == [(1, 2)]
    assert api_heads(client, "capital", "induction=0.8", "capital=1.01") == []
    response = client.get("/api/search", params={"q": "capital", "min_score": "induction=lots"})
    assert response.status_code == 422
    assert "OPERATION=NUMBER or PATTERN=NUMBER" in response.json()["detail"]


def test_api_pattern_grid(client: TestClient) -> None:
    body = client.get("/api/models/tiny/patterns/induction").json()
    assert (body["model"], body["pattern"], body["unit"], body["scale"]) == (
        "tiny",
        "induction",
        "fraction",
        1.0,
    )
    assert body["scores"] == LATEST["induction"]
    assert body["top_heads"][:3] == [
        {"layer": 1, "head": 2, "score": 0.83},
        {"layer": 0, "head": 1, "score": 0.45},
        {"layer": 2, "head": 3, "score": 0.1},
    ]
    assert len(body["top_heads"]) == 10 and body["label"] == "an induction head"
    entropy = client.get("/api/models/tiny/patterns/entropy", params={"top": 2}).json()
    assert entropy["unit"] == "nats" and entropy["scale"] == pytest.approx(3.3)
    assert [(t["layer"], t["head"]) for t in entropy["top_heads"]] == [(2, 3), (2, 2)]
    grid = client.get("/api/models/tiny", params={"pattern": "induction"}).json()["grid"]
    assert grid["patterns"] == ["previous_token", "induction", "first_token", "entropy"]
    assert grid["cells"][1][2]["score"] == 0.83 and grid["pattern"] == "induction"
    names = [p["name"] for p in client.get("/api/patterns").json()]
    assert names[:2] == ["previous_token", "induction"] and "distance" in names


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        (
            "/api/models/tiny/patterns/bogus",
            404,
            "unknown pattern 'bogus'; valid patterns: previous_token, induction",
        ),
        (
            "/api/models/tiny/patterns/distance",
            404,
            "no scores for pattern 'distance' of tiny; stored: previous_token",
        ),
        ("/api/models/bare/patterns/induction", 404, "no attention-pattern scores of bare in the store"),
        ("/api/models/nope/patterns/induction", 404, "unknown model 'nope'"),
        ("/api/models/tiny/patterns/induction?top=0", 422, "top"),
        ("/api/models/tiny?pattern=induction&operation=copy", 422, "not both"),
    ],
)
def test_api_pattern_errors(client: TestClient, path: str, status: int, message: str) -> None:
    response = client.get(path)
    assert response.status_code == status, response.text
    assert message in str(response.json()["detail"])


def test_report_shows_pattern_maps_and_top_heads(client: TestClient) -> None:
    page = client.get("/models/tiny/report").text
    maps = page[page.index('<h2 id="patterns">') : page.index('<h2 id="correlation">')]
    assert re.findall(r'id="pattern-(\w+)"', maps) == [
        "previous_token",
        "induction",
        "first_token",
        "entropy",
    ]
    induction = maps[maps.index('id="pattern-induction"') : maps.index('id="pattern-first_token"')]
    assert 'title="L1.H2: 0.830"' in induction and 'title="L2.H3: 0.100"' in induction
    top = induction[induction.index('class="muted top-heads"') :]
    assert top.index('href="#L1H2">L1.H2</a> 0.83') < top.index('href="#L0H1">L0.H1</a> 0.45')
    head = page[page.index('id="L1H2"') :]
    assert "Attends like an induction head (induction 0.83)" in head[: head.index("</section>")]
    bare = client.get("/models/bare/report").text
    assert "No attention-pattern scores stored" in bare
