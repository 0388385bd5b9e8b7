"""The web app in real Chromium (Debian's ``chromium`` driven by playwright): the review queue
from the keyboard, search, the heatmap, hostile descriptions inert in the live DOM, and raters:
sign-in with a token or a one-time link, rating, and a cross-site page's auto-submitting form
refused (nothing stored)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from evaluation.web.review_queue import review_order
from store import open_store
from store import tables as S
from tests._browser import needs_chromium
from tests._webstore import CAPITALS, XSS, fill, live_server

pytestmark = needs_chromium


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, dict[str, int]]]:
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    with open_store(url) as store:
        ids = fill(store)
    with live_server(url) as base:
        yield base, ids


def test_rate_from_the_keyboard_then_see_it_on_the_head_page(page, site, tmp_path) -> None:  # noqa: ANN001
    base, _ = site
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    page.goto(f"{base}/review")
    page.fill("#rater-input", "ann")
    page.press("#rater-input", "Enter")
    page.wait_for_selector("#review-form")
    assert page.text_content("#progress") == "0 of 4"
    with open_store(url) as store:
        order = review_order(store, "ann")  # ann's seeded order, not id order
    shown = lambda: int(page.get_attribute("article.review", "data-description-id"))  # noqa: E731
    assert shown() == order[0]
    page.keyboard.press("c")  # comment
    page.keyboard.type("fits the mappings 1234")  # digits typed into the comment do not rate
    page.keyboard.press("Escape")
    page.keyboard.press("1")  # plausible
    page.wait_for_selector("#saved")
    assert page.text_content("#progress") == "1 of 4"
    assert shown() == order[1]
    page.keyboard.press("s")  # skip it
    # Selector and locator waits, not wait_for_function: the pages' policy forbids its eval.
    page.wait_for_selector(f'article.review[data-description-id="{order[2]}"]')
    page.keyboard.press("3")  # not plausible
    page.wait_for_selector("#saved")
    assert page.text_content("#progress") == "2 of 4"
    page.keyboard.press("u")  # undo that one: it is shown again, unrated
    page.wait_for_selector("#undone")
    assert page.text_content("#progress") == "1 of 4" and shown() == order[2]
    page.keyboard.press("3")
    page.wait_for_selector("#saved")
    assert page.text_content("#progress") == "2 of 4"
    with open_store(url) as store:
        first = store.get_description(order[0])

    page.goto(f"{base}/models/tiny/heads/L{first.layer}.H{first.head}")
    row = page.locator('tr.rating[data-rater="ann"]')
    assert row.locator("td").all_text_contents()[:3] == ["ann", "plausible", "fits the mappings 1234"]
    # The name is remembered: the rating form is filled in, and the queue no longer asks.
    assert page.input_value("input.rater-name") == "ann"
    page.goto(f"{base}/review")
    page.wait_for_selector("#review-form")
    assert page.text_content("#rater") == "ann"


def test_find_a_head_through_search(page, site) -> None:  # noqa: ANN001
    base, _ = site
    page.goto(f"{base}/search")
    page.fill("#q", "past tense")
    page.select_option("select[name=mode]", "fulltext")
    page.press("#q", "Enter")
    page.wait_for_selector("#results")
    assert "ranked by fulltext" in page.text_content("#mode")
    page.click("#results li a")
    page.wait_for_url(re.compile(r"/models/tiny/heads/L2\.H3"))
    assert "turns verbs into their past tense" in page.text_content("main")


def test_heatmap_hover_and_click_into_a_head(page, site) -> None:  # noqa: ANN001
    base, _ = site
    page.goto(f"{base}/models/tiny")
    assert page.locator("#heatmap a.cell").count() == 12
    page.hover('a.cell[data-head="L1.H2"]')
    from playwright.sync_api import expect

    expect(page.locator("#hover-info")).to_contain_text(CAPITALS)
    page.select_option("#colour-by", "operation")  # the select submits itself
    page.wait_for_url(re.compile(r"by=operation"))
    assert re.match(r"L1\.H2 \(0\.\d\d\): ", page.get_attribute('a.cell[data-head="L1.H2"]', "aria-label"))
    page.click('a.cell[data-head="L1.H2"]')
    page.wait_for_url(re.compile(r"/models/tiny/heads/L1\.H2$"))
    assert page.text_content("h1") == "tiny · L1.H2 (layer 1, head 2)"
    assert CAPITALS in page.text_content("article.description")


def test_hostile_description_is_inert_in_the_dom(page, site) -> None:  # noqa: ANN001
    base, ids = site
    import httpx

    httpx.post(
        f"{base}/api/ratings",
        json={"description_id": ids["xss"], "rater": XSS, "label": "plausible", "comment": XSS},
    )
    for path in (
        "/models/tiny",
        "/models/tiny/heads/2.0",
        f"/review?after={ids['tense']}",
        "/search?q=pwned&mode=fulltext",
    ):
        page.goto(base + path)
        assert page.evaluate("window.__pwned") is None, path
        assert page.locator("#injected").count() == 0, path
        sources = page.evaluate("Array.from(document.scripts, s => new URL(s.src).pathname)")
        assert sources and all(src.startswith("/static/") for src in sources), path  # only our files
        assert page.locator("main img").count() == 0, path
    # The text is shown literally.
    page.goto(f"{base}/models/tiny/heads/2.0")
    assert page.text_content("article.description .pattern") == XSS
    assert XSS in page.text_content("article.description .reasoning")
    page.goto(f"{base}/models/tiny")
    page.hover('a.cell[data-head="L2.H0"]')
    assert page.text_content("#hover-info") == f"L2.H0: {XSS}"
    assert page.locator("#injected").count() == 0 and page.evaluate("window.__pwned") is None


def test_report_from_the_model_page_runs_its_filter_and_stays_inert(page, site) -> None:  # noqa: ANN001
    base, ids = site
    import httpx

    httpx.post(
        f"{base}/api/ratings",
        json={"description_id": ids["xss"], "rater": "ann", "label": "plausible", "comment": XSS},
    )
    page.goto(f"{base}/models/tiny")
    page.click("#report-link")
    page.wait_for_url(re.compile(r"/models/tiny/report$"))
    # The report's own inline script runs under its policy: it counts and filters the heads.
    # (Locator assertions: the policy forbids the eval that wait_for_function would need.)
    from playwright.sync_api import expect

    expect(page.locator("#shown")).to_have_text("12 of 12 heads shown")
    page.fill("#filter", "nations cities")
    expect(page.locator("#shown")).to_have_text(re.compile(r"^1 of 12 heads shown$"))
    assert page.locator("section.head:visible").count() == 1
    assert page.evaluate("window.__pwned") is None and page.locator("#injected").count() == 0


@pytest.mark.parametrize(
    ("path", "rendered"), [("/docs", ".opblock-summary"), ("/redoc", "[data-section-id]")]
)
def test_api_docs_render_without_a_network(page, site, path: str, rendered: str) -> None:  # noqa: ANN001
    base, _ = site
    outside: list[str] = []

    def only_local(route) -> None:  # noqa: ANN001
        if route.request.url.startswith(base):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(base + path)
    page.wait_for_selector(rendered)
    assert "Rate a description" in page.text_content("body")
    # Everything came from the app; ReDoc's bundle only tries its own footer logo on its CDN.
    assert [u for u in outside if u != "https://cdn.redoc.ly/redoc/logo-mini.svg"] == []


# --- raters ------------------------------------------------------------------------------------


@pytest.fixture
def rater_site(tmp_path: Path) -> Iterator[tuple[str, str, dict[str, int], dict[str, object]]]:
    url = f"sqlite:///{tmp_path / 'auth-browser.db'}"
    with open_store(url) as store:
        ids = fill(store)
        raters = {name: store.add_rater(name) for name in ("ann", "bob")}
    with live_server(url) as base:
        yield url, base, ids, raters


def ratings(url: str) -> list[tuple[str, int, str]]:
    with open_store(url) as store, store.read() as session:
        return sorted(session.execute(select(S.Rating.rater, S.Rating.description_id, S.Rating.label)).all())


def test_login_review_and_rate(page, rater_site) -> None:  # noqa: ANN001
    url, base, ids, raters = rater_site
    page.goto(f"{base}/review")
    page.wait_for_url(re.compile(r"/login\?next="))  # the queue asks for a sign-in first
    page.fill("#token-input", "hm_not-a-token")
    page.press("#token-input", "Enter")
    page.wait_for_selector("#error-message")
    assert "unknown or revoked rater token" in page.text_content("#error-message")
    page.goto(f"{base}/login?next=/review")
    page.fill("#token-input", raters["ann"].token)
    page.press("#token-input", "Enter")
    page.wait_for_selector("#review-form")
    assert page.text_content("#rater") == "ann" and page.text_content("#progress") == "0 of 4"
    assert CAPITALS in page.text_content("article.review")
    page.keyboard.press("2")  # partially plausible
    page.wait_for_selector("#saved")
    assert page.text_content("#progress") == "1 of 4"
    assert ratings(url) == [("ann", ids["capital"], "partially_plausible")]
    # The session cookie is not readable by scripts.
    assert "headmaps_session" not in page.evaluate("document.cookie")
    page.click("#logout")
    page.wait_for_selector("#login-link")

    # Bob signs in with his one-time link; it does not work a second time.
    link = f"{base}/login?code={raters['bob'].login_code}"
    page.goto(link)
    page.click("#code-form button")
    page.wait_for_selector("#review-form")
    assert page.text_content("#rater") == "bob"
    page.goto(f"{base}/models/tiny/heads/1.2")
    assert "1 rating hidden until you rate it" in page.text_content("main")  # ann's, blind
    page.click("#logout")
    page.goto(link)
    page.click("#code-form button")
    page.wait_for_selector("#error-message")
    assert "used already" in page.text_content("#error-message")


def test_a_cross_site_form_post_is_refused(page, rater_site) -> None:  # noqa: ANN001
    url, base, ids, raters = rater_site
    page.goto(f"{base}/login")
    page.fill("#token-input", raters["ann"].token)
    page.press("#token-input", "Enter")
    page.wait_for_selector("#review-form")
    # A page on another site, opened in the same browser, posts a rating to the app.
    evil = (
        f'<form id="f" method="post" action="{base}/review">'
        f'<input name="description_id" value="{ids["copy"]}"><input name="label" value="not_plausible">'
        '<input name="rater" value="ann"></form><script>document.getElementById("f").submit()</script>'
    )
    page.route(
        "http://attacker.test/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body=evil),
    )
    with page.expect_response(f"{base}/review") as posted:
        page.goto("http://attacker.test/page.html")
    assert posted.value.status == 403
    page.wait_for_load_state()
    assert "cross-site request refused" in page.text_content("body")
    assert ratings(url) == []
    with open_store(url) as store, store.read() as session:
        assert session.scalar(select(func.count()).select_from(S.Rating)) == 0
