"""The per-model HTML report: complete, self-contained, and inert for hostile LLM text."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from describer.errors import HeadmapsError
from evaluation.web.report import CORRELATION, build_report, write_report
from store import open_store
from store.records import RatingIn
from tests._storedb import analysis, definitions, description, model_info

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quotes"'


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


@pytest.fixture()
def store(tmp_path: Path):  # noqa: ANN201
    with open_store(f"sqlite:///{tmp_path / 'r.db'}") as s:
        info = model_info()
        s.save_analysis(info, analysis(info), settings_key="k", operations=definitions())
        yield s


def test_report_has_every_head_heatmaps_and_ratings(store) -> None:  # noqa: ANN001
    d = store.add_description(description(layer=1, head=2, pattern="maps countries to their capitals"))
    store.add_rating(RatingIn(description_id=d, rater="ann", label="plausible", comment="clear"))
    store.add_rating(RatingIn(description_id=d, rater="bo", label="partially_plausible"))
    html = build_report(store, "tiny", resamples=50)
    parser = _Tags()
    parser.feed(html)
    sections = [a["id"] for t, a in parser.tags if t == "section"]
    assert sections == [f"L{layer}H{head}" for layer in range(3) for head in range(4)]
    # One heatmap per stored operation, 3 layers x 4 heads of cells each.
    assert html.count("<caption>") == 2 and "copy" in html and "capital" in html
    cells = [a for t, a in parser.tags if t == "td" and (a.get("title") or "").startswith("L")]
    assert len(cells) == 2 * 12
    assert "maps countries to their capitals" in html
    assert "ann: <b>plausible</b> — clear" in html
    assert "cohen_kappa" in html
    # Self-contained: no external scripts, styles or images.
    assert not [
        a for t, a in parser.tags if t in ("script", "img", "link") and (a.get("src") or a.get("href"))
    ]
    assert "Not measured yet" in html


def test_hostile_description_renders_inert(store) -> None:  # noqa: ANN001
    store.add_description(
        description(layer=0, head=1, pattern=HOSTILE, reasoning=HOSTILE, inputs=HOSTILE, tags=[HOSTILE])
    )
    store.add_description(description(layer=0, head=3, status="failed", raw_response=HOSTILE, pattern=None))
    html = build_report(store, "tiny", resamples=10)
    parser = _Tags()
    parser.feed(html)
    # The page's own filter script is the only script, and no image was injected.
    assert len([t for t, _ in parser.tags if t == "script"]) == 1
    assert not [t for t, _ in parser.tags if t == "img"]
    assert "alert" not in "".join(parser.scripts)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert not re.search(r"<img[^>]*onerror", html)


def test_correlation_run_is_shown(store) -> None:  # noqa: ANN001
    run = store.start_run("evaluate", "tiny", {"experiment": CORRELATION})
    row = {
        "operation": "copy",
        "category": "algorithmic",
        "n_pairs": 40,
        "max_static": 0.5,
        "r_without_context": 0.91234,
        "r_with_context": None,
        "suppression_r_without_context": 0.5,
        "suppression_r_with_context": 0.25,
    }
    store.finish_run(
        run, counts={"rows": [row], "median_r_without_context": 0.91234, "median_r_with_context": None}
    )
    html = build_report(store, "tiny", resamples=10)
    assert "0.912" in html and "Not measured yet" not in html


def test_errors_and_atomic_write(store, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(HeadmapsError):
        build_report(store, "nope")
    out = write_report(store, "tiny", tmp_path / "report.html", resamples=10)
    assert out.read_text().startswith("<!doctype html>")
    assert not list(tmp_path.glob(".*.tmp"))


def test_model_without_analysis_is_refused(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'e.db'}") as s:
        s.register_model(model_info("bare"))
        with pytest.raises(HeadmapsError, match="no analysis"):
            build_report(s, "bare")
