"""Raters in real Chromium: sign in with a token or a one-time link, rate from the review queue,
and a cross-site page's auto-submitting form refused (nothing stored)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from store import open_store
from store import tables as S
from tests._webstore import CAPITALS, fill, live_server

CHROMIUM = os.environ.get("HEADMAPS_CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync"],
        )
        yield browser
        browser.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, str, dict[str, int], dict[str, object]]]:
    url = f"sqlite:///{tmp_path / 'auth-browser.db'}"
    with open_store(url) as store:
        ids = fill(store)
        raters = {name: store.add_rater(name) for name in ("ann", "bob")}
    with live_server(url) as base:
        yield url, base, ids, raters


@pytest.fixture
def page(browser) -> Iterator[object]:  # noqa: ANN001
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def ratings(url: str) -> list[tuple[str, int, str]]:
    with open_store(url) as store, store.read() as session:
        return sorted(session.execute(select(S.Rating.rater, S.Rating.description_id, S.Rating.label)).all())


def test_login_review_and_rate(page, site) -> None:  # noqa: ANN001
    url, base, ids, raters = site
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


def test_a_cross_site_form_post_is_refused(page, site) -> None:  # noqa: ANN001
    url, base, ids, raters = site
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
