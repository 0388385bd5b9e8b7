"""The server-rendered pages: content, forms without JavaScript, errors, and hostile text
escaped on every page."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from evaluation import web
from evaluation.web import create_app
from evaluation.web.review_queue import review_order
from store import open_store
from tests._webauth import local_name, post_form
from tests._webstore import CAPITALS, XSS, fill


class Elements(HTMLParser):
    """Every start tag with its attributes, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def elements(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Elements()
    parser.feed(page)
    return parser.tags


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, int]]]:
    url = f"sqlite:///{tmp_path / 'web.db'}"
    with open_store(url) as store:
        ids = fill(store)
    with TestClient(create_app(url), base_url="http://127.0.0.1") as client:
        yield client, ids


PAGES = [
    "/",
    "/models",
    "/models/tiny",
    "/models/tiny?by=rating",
    "/models/tiny?by=operation&operation=capital",
    "/models/tiny/heads/2.0",
    "/review?after={tense}",
    "/search?q=script&mode=fulltext",
    "/search?q=window+pwned&mode=fulltext",
    "/models/tiny?relation=copy",
    "/search?relation=copy",
]


@pytest.mark.parametrize("path", PAGES)
def test_hostile_description_renders_inert(site: tuple[TestClient, dict[str, int]], path: str) -> None:
    client, ids = site
    client.post(
        "/api/ratings",
        json={"description_id": ids["xss"], "rater": XSS, "label": "plausible", "comment": XSS},
    )
    local_name(client, XSS)  # the hostile rater views: every rating of theirs is shown
    response = client.get(path.format(**ids))
    assert response.status_code == 200
    page = response.text
    tags = elements(page)
    scripts = [attrs.get("src") for tag, attrs in tags if tag == "script"]
    own = {f"/static/{f.name}" for f in (Path(web.__file__).parent / "static").glob("*.js")}
    assert "/static/app.js" in scripts and set(scripts) <= own  # no injected script element
    assert not any(tag == "img" or attrs.get("id") == "injected" for tag, attrs in tags)
    assert not any(name.startswith("on") for _, attrs in tags for name in attrs)
    assert "<script>window.__pwned" not in page
    if "/models/" in path or "?" in path:  # pages that show descriptions show this one literally
        assert XSS in html.unescape(re.sub(r"</?mark>", "", page))
    assert "default-src 'self'; script-src 'self'" in response.headers["content-security-policy"]


def test_models_page_counts(site: tuple[TestClient, dict[str, int]]) -> None:
    client, _ = site
    page = client.get("/models").text
    row = re.search(r'<a href="/models/tiny">tiny</a>.*?</tr>', page, re.S).group(0)
    assert re.findall(r'<td class="num">([^<]+)</td>', row) == ["3 × 4", "12", "4", "0", "1"]


def test_model_heatmap_cells_link_to_heads(site: tuple[TestClient, dict[str, int]]) -> None:
    client, _ = site
    cells = [
        a
        for tag, a in elements(client.get("/models/tiny").text)
        if tag == "a" and a.get("class", "").split()[:1] == ["cell"]
    ]
    assert len(cells) == 12
    capital = next(a for a in cells if a["data-head"] == "L1.H2")
    assert capital["href"] == "/models/tiny/heads/L1.H2" and capital["aria-label"] == f"L1.H2: {CAPITALS}"
    scored = client.get("/models/tiny?by=operation&operation=copy").text
    assert re.search(r'aria-label="L1\.H2 \(0\.\d\d\): maps nations', scored)


def test_head_page_form_rates_and_shows_ratings(site: tuple[TestClient, dict[str, int]]) -> None:
    client, ids = site
    page = client.get("/models/tiny/heads/1.2").text
    assert (
        CAPITALS in page and "France goes to Paris" in page and "describe_v1" in page and "fake-llm" in page
    )
    assert "Not rated yet." in page
    response = post_form(
        client,
        "/models/tiny/heads/1.2/ratings",
        {
            "description_id": ids["capital"],
            "rater": "ann",
            "label": "partially_plausible",
            "comment": "close",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    page = client.get(response.headers["location"]).text
    assert re.search(
        r'data-rater="ann"><td>ann</td><td class="label-partially_plausible">partially_plausible</td><td>close</td>',
        page,
    )
    bad = post_form(
        client,
        "/models/tiny/heads/1.2/ratings",
        {"description_id": ids["capital"], "rater": "ann", "label": "meh"},
    )
    assert bad.status_code == 422 and "unknown rating label &#39;meh&#39;" in bad.text
    # A description of another head, posted to this head's URL, is refused (and not stored).
    other = post_form(
        client, "/models/tiny/heads/1.2/ratings", {"description_id": ids["copy"], "label": "plausible"}
    )
    assert other.status_code == 422 and "describes tiny L0.H1, not tiny L1.H2" in other.text
    assert client.get("/api/descriptions/{}".format(ids["copy"])).json()["hidden_ratings"] == 0
    # Over-long fields are a 422 page, never a 500.
    for field, size in (("comment", 10_001), ("rater", 201)):
        long = post_form(
            client,
            "/models/tiny/heads/1.2/ratings",
            {"description_id": ids["capital"], "label": "plausible", field: "x" * size},
        )
        assert long.status_code == 422 and field in long.text


def test_review_page_is_blind_keyed_and_remembers_the_rater(site: tuple[TestClient, dict[str, int]]) -> None:
    client, ids = site
    client.post(
        "/api/ratings",
        json={
            "description_id": ids["capital"],
            "rater": "zed",
            "label": "not_plausible",
            "comment": "ZED SAYS",
        },
    )
    assert 'id="rater-form"' in client.get("/review").text  # asks the name first
    # A name in the query is not an identity any more: the queue still asks.
    assert client.get("/review", params={"rater": "ann"}).status_code == 422  # not a parameter
    local_name(client, "ann")
    order = review_order(client.app.state.store, "ann")  # ann's own seeded order
    pattern = {i: client.get(f"/api/descriptions/{i}").json()["pattern"] for i in order}
    text = client.get("/review").text
    assert pattern[order[0]] in text and f'data-description-id="{order[0]}"' in text
    ann_first = post_form(client, "/review", {"description_id": ids["capital"], "label": "plausible"})
    assert "ZED SAYS" not in ann_first.text and "zed" not in ann_first.text  # blind
    assert "fake-llm" not in text  # nor which LLM wrote it
    assert '<span id="progress">1 of 4</span>' in ann_first.text
    for n, label in enumerate(("plausible", "partially_plausible", "not_plausible", "cannot_tell"), 1):
        assert f'value="{label}" data-key="{n}"' in text
    assert (
        'form="skip-form"' in text
        and 'id="skip-form"' in text
        and "the description fits the head&#39;s mappings" in text
    )
    # The cookie remembers the rater; the form posts without JavaScript.
    after = order.index(ids["capital"])
    following = [i for i in order[after + 1 :] + order[:after] if i != ids["capital"]][0]
    assert f'data-description-id="{following}"' in ann_first.text  # the next in ann's order
    assert f"Saved: description #{ids['capital']} rated plausible." in ann_first.text
    done = post_form(client, "/review", {"description_id": following, "label": "cannot_tell"})
    assert done.status_code == 200 and '<span id="progress">2 of 4</span>' in done.text


def test_search_page_links_results_to_heads(site: tuple[TestClient, dict[str, int]]) -> None:
    client, ids = site
    page = client.get("/search", params={"q": "past tense", "mode": "fulltext", "model": "tiny"}).text
    assert f'href="/models/tiny/heads/L2.H3#d{ids["tense"]}"' in page
    assert "<mark>past</mark> <mark>tense</mark>" in page and "ranked by fulltext" in page
    filtered = client.get("/search", params={"q": "past tense", "mode": "fulltext", "layer_max": "1"}).text
    assert "0 results" in filtered
    bad = client.get("/search", params={"q": "past", "layer_min": "two"}).text
    assert "layers must be whole numbers" in bad


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/models/nope", 404, "unknown model &#39;nope&#39;"),
        ("/models/tiny/heads/7.0", 404, "layer 7 out of range"),
        ("/models/tiny/heads/1", 404, "not a head"),
        ("/models/tiny?by=size", 422, "colour by category, rating or operation"),
        ("/review?model=nope", 404, "unknown model"),
    ],
)
def test_page_errors(site: tuple[TestClient, dict[str, int]], path: str, status: int, message: str) -> None:
    client, _ = site
    local_name(client, "ann")
    response = client.get(path)
    assert response.status_code == status and message in response.text
    assert response.headers["content-type"].startswith("text/html")


def test_model_page_links_to_its_report_which_renders_inert(site: tuple[TestClient, dict[str, int]]) -> None:
    client, ids = site
    client.post(
        "/api/ratings",
        json={"description_id": ids["xss"], "rater": XSS, "label": "plausible", "comment": XSS},
    )
    links = [a["href"] for tag, a in elements(client.get("/models/tiny").text) if tag == "a"]
    assert "/models/tiny/report" in links and "/models/tiny/report?download=1" in links
    response = client.get("/models/tiny/report")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert policy.startswith("default-src 'none'") and "connect-src" not in policy  # loads nothing
    page = response.text
    tags = elements(page)
    assert [attrs.get("src") for tag, attrs in tags if tag == "script"] == [None]  # its own inline one
    assert not any(tag == "img" or attrs.get("id") == "injected" for tag, attrs in tags)
    assert not any(name.startswith("on") for _, attrs in tags for name in attrs)
    assert "<script>window.__pwned" not in page and XSS in html.unescape(page)
    download = client.get("/models/tiny/report?download=1")
    assert download.headers["content-disposition"] == 'attachment; filename="tiny-report.html"'
    missing = client.get("/models/nope/report")
    assert missing.status_code == 404 and "nope" in missing.text


def test_api_docs_are_served_from_local_files(site: tuple[TestClient, dict[str, int]]) -> None:
    client, _ = site
    for path in ("/docs", "/redoc"):
        page = client.get(path)
        assert page.status_code == 200
        urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert urls and all(u.startswith("/docs-assets/") for u in urls), urls  # no CDN
        for url in urls:
            asset = client.get(url)
            assert asset.status_code == 200 and len(asset.content) > 1000, url
