"""The review page in real Chromium at 1280×900: a head's whole salient table (15 rows of 5
mappings) and the rating buttons are on screen without scrolling, and the page stays where
the rater left it from one item to the next."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from store import open_store
from tests._browser import needs_chromium
from tests._storedb import analysis, definitions, description, model_info
from tests._webstore import live_server

pytestmark = needs_chromium

OPS = tuple(f"op{i}" for i in range(10))
LONG = "The head reads the current token and writes a related one. " * 30


@pytest.fixture
def wide(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'wide.db'}"
    with open_store(url) as store:
        info = model_info("wide", n_layers=2, n_heads=2)
        store.save_analysis(
            info,
            analysis(info, n_salient=15, n_map=5, ops=OPS),
            settings_key="k",
            operations=definitions(OPS),
        )
        for layer in range(2):
            for head in range(2):
                store.add_description(
                    description(model="wide", layer=layer, head=head, pattern="maps a word to a related word",
                                inputs="common English words", reasoning=LONG)
                )  # fmt: skip
    with live_server(url) as base:
        yield base


def _until(page, expression: str) -> None:  # noqa: ANN001
    """Poll ``expression`` from the test (``page.evaluate`` runs outside the page's policy;
    ``wait_for_function`` would need the ``eval`` it forbids)."""
    for _ in range(100):
        if page.evaluate(expression):
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"never true: {expression}")


def test_the_evidence_is_above_the_fold_and_the_page_stays_put(page, wide) -> None:  # noqa: ANN001
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{wide}/review")
    page.fill("#rater-input", "ann")
    page.press("#rater-input", "Enter")
    page.wait_for_selector("#review-form")
    rows = page.locator("table.mappings tbody tr")
    assert rows.count() == 15
    for i in range(15):
        box = rows.nth(i).bounding_box()
        assert box is not None and box["y"] + box["height"] <= 900, (i, box)
    for button in page.locator("#review-form button").all():
        box = button.bounding_box()
        assert box is not None and box["y"] + box["height"] <= 900
    # The description and its buttons stay beside the evidence while the rater scrolls down to
    # the operation scores; rating keeps that place for the next head.
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height > 900 + 200, height
    page.evaluate("window.scrollTo(0, 200)")
    _until(page, "window.scrollY === 200")
    assert page.locator("#review-form button").first.bounding_box()["y"] >= 0  # sticky: still on screen
    first = page.get_attribute("article.review", "data-description-id")
    page.keyboard.press("1")
    page.wait_for_selector("#saved")
    assert page.get_attribute("article.review", "data-description-id") != first
    assert page.evaluate("window.scrollY") == 200
    # Skipping keeps the place too.
    second = page.get_attribute("article.review", "data-description-id")
    page.keyboard.press("s")
    page.wait_for_selector(f'article.review:not([data-description-id="{second}"])')
    assert page.evaluate("window.scrollY") == 200
