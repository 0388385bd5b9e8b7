"""Tokens shown faithfully (``describer.tokens``) in the pages and the self-contained report, and
the report's head filter: a head's name matches that head only, never a logit in its tables."""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections.abc import Iterator

import pytest

from describer.tokens import escaped, is_rtl, json_literal, visible
from evaluation.web.common import token_html
from evaluation.web.report import build_report
from prompts import render as render_prompt
from store import open_store
from tests._browser import needs_chromium
from tests._storedb import analysis, definitions, model_info
from tests._webstore import live_server


@pytest.mark.parametrize(
    ("token", "shown"),
    [
        (" Paris", "␣Paris"),
        ("Paris", "Paris"),
        ("  ", "␣␣"),
        ("\n", "\\n"),
        ("\t\r", "\\t\\r"),
        ("", "∅"),
        ("a\u200bb", "a\\u200bb"),  # zero-width space
        ("\u200d", "\\u200d"),  # zero-width joiner alone
        ("\u202eevil", "\\u202eevil"),  # right-to-left override: escaped, cannot flip the page
        ("\u00a0x", "\\u00a0x"),  # no-break space
        ("\x00\x1b", "\\u0000\\u001b"),
        ("\u0301e", "\\u0301e"),  # a combining mark with nothing to combine with
        ("e\u0301", "e\u0301"),  # ... and one that combines (é) stays as it is
        ("back\\slash", "back\\\\slash"),  # so "\\u200b" the text differs from the escape
        ("\U000e0041", "\\U000e0041"),  # a tag character (format, outside the BMP)
        ("ورٹی", "ورٹی"),
        ("日本", "日本"),
    ],
)
def test_visible_makes_every_character_readable(token: str, shown: str) -> None:
    assert visible(token) == shown


def test_distinct_tokens_stay_distinct() -> None:
    tokens = [" a", "a", "\u200ba", "a\u200b", "\\u200ba", "\n", "\\n", "", " ", "\u00a0"]
    assert len({visible(t) for t in tokens}) == len(tokens)


def test_escaped_and_direction() -> None:
    assert escaped(" Paris") == '" Paris"' and escaped("\u200b") == '"\\u200b"'
    assert is_rtl("ورٹی") and is_rtl("שלום") and not is_rtl("Paris") and not is_rtl("12")


def test_token_html_isolates_escapes_and_tells_the_id() -> None:
    out = str(token_html(' <b>"x', 42))
    assert out.startswith('<bdi class="tok" ') and out.endswith("</bdi>")
    assert 'data-token-id="42"' in out and "<b>" not in out
    title = html.unescape(re.search(r'title="([^"]*)"', out)[1])
    assert title == '" <b>\\"x" · id 42'
    assert html.unescape(re.search(r">(.*)</bdi>", out)[1]) == '␣<b>"x'


TOKENS = [" Paris", "ورٹی", "\u200b", "\n"]


@pytest.fixture(scope="module")
def report_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'r.db'}"
    info = model_info("tiny", n_layers=12, n_heads=3)
    result = analysis(info, ops=("copy",))
    for n, head in enumerate(result.heads):
        for row in head.salient:
            for m, mapping in enumerate(row.mappings):
                mapping.token = TOKENS[(n + m) % len(TOKENS)]
                mapping.logit = 1.0 + head.layer / 10 + head.head / 100  # e.g. 1.10 in L1.H0's table
    with open_store(url) as store:
        store.save_analysis(info, result, settings_key="k1", operations=definitions())
    yield url


def test_report_shows_tokens_faithfully(report_store: str) -> None:
    with open_store(report_store) as store:
        page = build_report(store, "tiny", resamples=10)
    assert '<bdi class="tok"' in page and "unicode-bidi: isolate" in page
    assert ">␣Paris</bdi>" in page and ">\\u200b</bdi>" in page and ">\\n</bdi>" in page
    # A right-to-left token and its logit are one isolated unit: they cannot swap places.
    assert re.search(
        r'<span class="map"><bdi class="tok"[^>]*>ورٹی</bdi> <span class="muted">[\d.]+</span></span>', page
    )


@needs_chromium
@pytest.mark.parametrize(
    ("words", "shown"),
    [("L1.H0", 1), ("l1.h0", 1), ("1.0", 1), ("L10.H2", 1), ("L1", 3), ("L1 copy", 3), ("L99.H0", 0)],
)
def test_report_filter_reads_head_names_not_logits(page, report_store: str, words: str, shown: int) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    with live_server(report_store) as base:
        page.goto(f"{base}/models/tiny/report")
        expect(page.locator("#shown")).to_have_text("36 of 36 heads shown")
        page.fill("#filter", words)
        expect(page.locator("#shown")).to_have_text(f"{shown} of 36 heads shown")
        if shown == 1:
            name = words.lower().replace("l", "").replace("h", "").split(".")
            assert (
                page.locator("section.head:visible").get_attribute("id") == f"L{int(name[0])}H{int(name[1])}"
            )


@pytest.mark.parametrize(
    "token", [" Paris", "a\u200bb", "\u202eevil", "\n\t", "é", "\U000e0041", "ورٹی", '"q"', ""]
)
def test_prompts_show_tokens_as_readable_json_literals(token: str) -> None:
    literal = json_literal(token)
    assert json.loads(literal) == token  # exact: the LLM (and a reader) can recover the token
    assert not any(unicodedata.category(ch) in ("Cf", "Cc", "Cs", "Co", "Cn", "Zl", "Zp") for ch in literal)
    assert ("é" in literal) == ("é" in token) and ("ورٹی" in literal) == ("ورٹی" in token)  # text stays text
    rendered = render_prompt(
        "salient", salient=[{"token": token, "mappings": [{"token": token}]}], categories={}
    )
    assert f"{literal} -> {literal}" in rendered.text
