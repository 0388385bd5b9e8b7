"""The explorer in real Chromium: sorting the top-heads table, the colour bar's fitted maximum,
and comparisons made from the table's checkboxes and from shift-clicked heatmap cells."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests._browser import needs_chromium
from tests._webstore import live_server
from tests.test_web_explore import _store

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('explore-browser') / 'e.db'}"
    truth = _store(url)
    with live_server(url) as base:
        yield base, truth


def _column(page, index: int) -> list[str]:  # noqa: ANN001
    return page.eval_on_selector_all(
        "#top-table tbody tr", f"rows => rows.map(r => r.cells[{index}].textContent.trim())"
    )


def test_sort_the_top_heads_table_and_compare_two_heads(page, served) -> None:  # noqa: ANN001
    base, truth = served
    page.goto(f"{base}/models/tiny?by=operation&operation=capital&top=50")
    top = truth["relation"].max()
    assert page.text_content("#scale-high") == f"{top:.3g}"  # the colour bar's fitted maximum
    scores = [float(s) for s in _column(page, 3)]
    assert scores == sorted(scores, reverse=True) and len(scores) == 12
    page.click("#top-table th:nth-child(4)")  # Score: a numeric column sorts high to low first
    page.click("#top-table th:nth-child(4)")  # ... then low to high
    assert page.get_attribute("#top-table th:nth-child(4)", "aria-sort") == "ascending"
    assert [float(s) for s in _column(page, 3)] == sorted(scores)
    page.click("#top-table th:nth-child(3)")  # Head: in model order (by its data-value), last first
    assert _column(page, 2) == [f"L{layer}.H{head}" for layer in (2, 1, 0) for head in (3, 2, 1, 0)]
    page.check('#top-table input.pick[data-head="L1.H2"]')
    page.check('#top-table input.pick[data-head="L0.H1"]')
    page.click("#top-heads button.compare-selected")
    page.wait_for_url(re.compile(r"/compare\?model=tiny&heads=L1\.H2%2CL0\.H1$"))
    shown = page.eval_on_selector_all("section.compare-head", "s => s.map(e => e.dataset.head)")
    assert shown == ["L1.H2", "L0.H1"]
    assert "maps countries to capitals" in page.text_content('section.compare-head[data-head="L1.H2"]')


def test_head_page_walks_across_layers_and_opens_its_pairs(page, served) -> None:  # noqa: ANN001
    base, _ = served
    page.goto(f"{base}/models/tiny/heads/L0.H3")
    page.click("#next-head")
    page.wait_for_url(re.compile(r"/heads/L1\.H0$"))
    page.click("#previous-head")
    page.wait_for_url(re.compile(r"/heads/L0\.H3$"))
    page.goto(f"{base}/models/tiny/heads/L1.H2")
    page.click('tr[data-operation="capital"] a.pairs-link')
    page.wait_for_url(re.compile(r"/heads/L1\.H2/pairs/capital$"))
    assert page.locator("#right-pairs tbody tr").count() + page.locator("#wrong-pairs tbody tr").count() == 10


def test_shift_click_heatmap_cells_to_compare_them(page, served) -> None:  # noqa: ANN001
    base, _ = served
    page.goto(f"{base}/models/tiny?by=operation&operation=capital")
    page.click('#heatmap a.cell[data-head="L2.H3"]', modifiers=["Shift"])  # selects, stays here
    page.click('#heatmap a.cell[data-head="L0.H0"]', modifiers=["Shift"])
    page.click('#heatmap a.cell[data-head="L1.H1"]', modifiers=["Shift"])
    page.click('#heatmap a.cell[data-head="L1.H1"]', modifiers=["Shift"])  # twice: deselected
    assert page.url.endswith("operation=capital") and page.text_content("#picked-count") == "2 selected"
    picked = page.eval_on_selector_all("#heatmap a.cell.picked", "cs => cs.map(c => c.dataset.head)")
    assert sorted(picked) == ["L0.H0", "L2.H3"]
    assert page.is_checked('#top-table input.pick[data-head="L2.H3"]')  # the table agrees
    page.click("#compare-from-heatmap")
    page.wait_for_url(re.compile(r"/compare\?model=tiny&heads=L2\.H3%2CL0\.H0$"))
    page.goto(f"{base}/models/tiny/heads/L2.H3")  # a plain click still opens a head
    page.goto(f"{base}/models/tiny?by=operation&operation=capital")
    page.click('#heatmap a.cell[data-head="L0.H2"]')
    page.wait_for_url(re.compile(r"/heads/L0\.H2$"))
