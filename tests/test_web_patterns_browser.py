"""The model heatmap's pattern selector in real Chromium (as ``tests/test_web_browser.py``):
choosing a pattern recolours the heatmap by it, and a head's "What it attends to" links back."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from store import open_store
from tests._patternstore import add_patterns
from tests._webstore import fill, live_server

CHROMIUM = os.environ.get("HEADMAPS_CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, str]]:
    from playwright.sync_api import sync_playwright

    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'patterns.db'}"
    with open_store(url) as store:
        fill(store)
        add_patterns(store)
    with live_server(url) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page, base
        browser.close()
        assert errors == []


def test_choosing_a_pattern_recolours_the_heatmap(page) -> None:  # noqa: ANN001
    page, base = page
    page.goto(f"{base}/models/tiny")
    page.select_option("#pattern", "induction")  # the select submits itself, colouring by pattern
    page.wait_for_url(re.compile(r"by=pattern.*pattern=induction"))
    assert page.get_attribute('a.cell[data-head="L1.H2"]', "aria-label").startswith("L1.H2 (0.83): ")
    assert page.input_value("#colour-by") == "pattern"
    page.click('a.cell[data-head="L0.H1"]')
    page.wait_for_url(re.compile(r"/models/tiny/heads/L0\.H1$"))
    assert page.locator("#patterns tr.notable").count() == 2  # previous_token 0.9, induction 0.45
    page.click('#patterns tr[data-pattern="entropy"] a')
    page.wait_for_url(re.compile(r"by=pattern&pattern=entropy"))
    assert page.get_attribute('a.cell[data-head="L2.H3"]', "aria-label").startswith("L2.H3 (3.30): ")
