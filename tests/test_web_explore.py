"""Exploring a model like a researcher: the heatmap's fitted colour scale and colour bar, the
suppression metric, the top-heads table, the overview (best head per layer), downloads, the
head page's neighbours, suppressed mappings and right/wrong pairs, and comparing heads."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from evaluation.web import create_app
from evaluation.web.heatmap_svg import sequential
from store import open_store
from store.records import MappingIn, OperationScoresIn
from tests._storedb import analysis, definitions, description, model_info

N_LAYERS, N_HEADS, N_PAIRS = 3, 4, 10
RANKS = (np.arange(N_LAYERS * N_HEADS * N_PAIRS).reshape(N_LAYERS, N_HEADS, N_PAIRS) * 7) % 5
"""Each pair's target rank per head: k = 1 makes a head right on the pairs ranked 0."""
SUPPRESSED = (RANKS + 2) % 5


def _store(url: str) -> dict:
    info = model_info("tiny", n_layers=N_LAYERS, n_heads=N_HEADS)
    data = analysis(info, ops=("copy", "capital"))
    for h in data.heads:
        for row in h.salient:
            row.suppressed = [
                MappingIn(token=" ورٹی", token_id=7, logit=-4.5),
                MappingIn(token="\u200b", token_id=8, logit=-3.0),
            ]
    relation = (RANKS < 1).mean(-1)
    data.operations["capital"] = OperationScoresIn(
        **{**data.operations["capital"].model_dump(exclude={"ranks", "suppressed_ranks"}),
           "k": 1, "n_pairs": N_PAIRS, "scores": relation.tolist(), "suppression": (SUPPRESSED < 1).mean(-1).tolist(),
           "pairs": [(f" country{i}", i, f" capital{i}", 100 + i) for i in range(N_PAIRS)]},
        ranks=RANKS, suppressed_ranks=SUPPRESSED,
    )  # fmt: skip
    with open_store(url) as store:
        store.save_analysis(info, data, settings_key="k1", operations=definitions())
        store.add_description(
            description(layer=1, head=2, pattern="old text", inputs="x", category="unclear")
        )
        store.add_description(description(layer=1, head=2, pattern="maps countries to capitals", inputs="countries",
                                          category="knowledge_recalling"))  # fmt: skip
    return {"relation": relation, "suppression": (SUPPRESSED < 1).mean(-1), "copy": data.operations["copy"]}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('explore') / 'e.db'}"
    truth = _store(url)
    with TestClient(create_app(url), base_url="http://127.0.0.1") as client:
        yield client, truth


def cells(page: str) -> dict[str, str]:
    return dict(re.findall(r'data-head="(L\d+\.H\d+)"[^>]*><rect [^>]*fill="([^"]+)"', page))


def test_the_scale_is_fitted_to_the_view_and_the_colour_bar_says_so(site) -> None:  # noqa: ANN001
    client, truth = site
    page = client.get("/models/tiny", params={"by": "operation", "operation": "capital"}).text
    top = truth["relation"].max()
    assert 0 < top < 1  # a fitted scale differs from the shared one
    assert re.search(r'<span id="scale-high">([\d.]+)</span>', page)[1] == f"{top:.3g}"
    assert "operation relation score of capital · k = 1 · 10 pairs" in page
    shown = cells(page)
    assert len(shown) == N_LAYERS * N_HEADS
    for layer in range(N_LAYERS):
        for head in range(N_HEADS):
            assert shown[f"L{layer}.H{head}"] == sequential(truth["relation"][layer, head] / top)
    shared = cells(client.get("/models/tiny", params={"operation": "capital", "scale": "shared"}).text)
    assert shared["L0.H0"] == sequential(truth["relation"][0, 0])
    assert (
        'id="scale-high">1</span>'
        in client.get("/models/tiny", params={"operation": "capital", "scale": "shared"}).text
    )


def test_suppression_scores_can_be_shown(site) -> None:  # noqa: ANN001
    client, truth = site
    page = client.get(
        "/models/tiny", params={"operation": "capital", "metric": "suppression", "values": "1"}
    ).text
    assert "operation suppression score of capital" in page
    scores = dict(re.findall(r'data-head="(L\d+\.H\d+)" data-score="([^"]+)"', page))
    assert {h: float(v) for h, v in scores.items()} == pytest.approx(
        {f"L{la}.H{h}": truth["suppression"][la, h] for la in range(N_LAYERS) for h in range(N_HEADS)},
        abs=1e-3,
    )
    assert page.count('<text class="value"') == N_LAYERS * N_HEADS  # values in the cells


def test_undescribed_cells_are_hatched_not_palette_coloured(site) -> None:  # noqa: ANN001
    client, _ = site
    page = client.get("/models/tiny", params={"by": "category"}).text
    shown = cells(page)
    assert shown["L1.H2"].startswith("#") and shown["L0.H0"] == "url(#no-score)"
    assert sequential(0.0) not in shown.values()


def test_top_heads_table_ranks_by_the_shown_score(site) -> None:  # noqa: ANN001
    client, truth = site
    page = client.get("/models/tiny", params={"operation": "capital", "top": 5}).text
    table = page[page.index('id="top-table"') :]
    heads = re.findall(r'<tr data-head="(L\d+\.H\d+)">', table)
    order = sorted((-truth["relation"][la, h], la, h) for la in range(N_LAYERS) for h in range(N_HEADS))
    assert heads == [f"L{la}.H{h}" for _, la, h in order[:5]]
    assert 'class="pick" data-model="tiny" data-head="' + heads[0] in table


def test_downloads_hold_what_the_page_shows(site) -> None:  # noqa: ANN001
    client, truth = site
    response = client.get("/models/tiny", params={"operation": "capital", "format": "csv"})
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == N_LAYERS * N_HEADS and rows[0].keys() >= {"name", "score", "description"}
    by = {r["name"]: r for r in rows}
    assert float(by["L2.H1"]["score"]) == pytest.approx(truth["relation"][2, 1])
    assert by["L1.H2"]["description"] == "maps countries to capitals"
    top = client.get(
        "/models/tiny", params={"operation": "capital", "table": "top", "top": 3, "format": "json"}
    ).json()
    assert [r["rank"] for r in top["rows"]] == [1, 2, 3] and top["columns"][0] == "rank"
    assert client.get("/models/tiny", params={"format": "xml"}).status_code == 422


def test_overview_shows_each_layers_best_head(site) -> None:  # noqa: ANN001
    client, truth = site
    page = client.get("/models/tiny/overview").text
    row = page[page.index('data-row="capital"') :]
    row = row[: row.index("</tr>")]
    best = re.findall(r'href="/models/tiny/heads/(L\d+\.H\d+)"', row)
    expected = [f"L{la}.H{int(np.argmax(truth['relation'][la]))}" for la in range(N_LAYERS)]
    assert best == expected
    assert 'href="/models/tiny?by=operation&amp;operation=capital"' in page
    data = client.get("/models/tiny/overview", params={"format": "json"}).json()["rows"]
    assert {(r["name"], r["layer"]): r["head"] for r in data}[("capital", 2)] == expected[2]
    assert client.get("/models/tiny/overview", params={"metric": "bogus"}).status_code == 422


def test_head_page_neighbours_cross_layers(site) -> None:  # noqa: ANN001
    client, _ = site

    def nav(spec: str) -> dict[str, str]:
        page = client.get(f"/models/tiny/heads/{spec}").text
        return dict(re.findall(r'id="(\w+)-head" rel="\w+" href="/models/tiny/heads/(L\d+\.H\d+)"', page))

    assert nav("L0.H3") == {"previous": "L0.H2", "next": "L1.H0", "down": "L1.H3"}
    assert nav("L1.H0") == {"previous": "L0.H3", "next": "L1.H1", "up": "L0.H0", "down": "L2.H0"}
    assert nav("L0.H0") == {"next": "L0.H1", "down": "L1.H0"}
    assert nav("L2.H3") == {"previous": "L2.H2", "up": "L1.H3"}


def test_head_page_shows_suppressed_tokens_and_marks_the_current_description(site) -> None:  # noqa: ANN001
    client, _ = site
    page = client.get("/models/tiny/heads/L1.H2").text
    assert "Suppressed (logit)" in page
    assert re.search(
        r'<td class="maps suppressed"><span class="map"><bdi class="tok"[^>]*>␣ورٹی</bdi> <span class="logit">-4.50</span></span>',
        page,
    )
    assert ">\\u200b</bdi>" in page
    current = page.index('<span class="badge current-badge">current</span>')
    assert page.index("maps countries to capitals") > current > page.index("<h2>Descriptions (2)</h2>")
    history = page.index('<details class="history"')
    assert history < page.index("old text")
    assert 'class="pairs-link" href="/models/tiny/heads/L1.H2/pairs/capital"' in page


def test_pairs_page_splits_right_and_wrong_like_the_score(site) -> None:  # noqa: ANN001
    client, truth = site
    page = client.get("/models/tiny/heads/L1.H2/pairs/capital").text
    right = (RANKS[1, 2] < 1).sum()
    assert f"<h2>Right ({right})</h2>" in page and f"<h2>Wrong ({N_PAIRS - right})</h2>" in page
    assert page.count('<tr class="pair hit">') == right
    assert f"relation score {truth['relation'][1, 2]:.3f}" in page
    wrong = re.findall(r'<tr class="pair miss">.*?data-value="(\d+)"', page)
    assert [int(w) for w in wrong] == sorted(int(r) for r in RANKS[1, 2] if r >= 1)
    data = client.get("/api/models/tiny/heads/L1.H2/pairs/capital").json()
    assert [p["rank"] for p in data["pairs"]] == RANKS[1, 2].tolist()
    csv_rows = list(
        csv.DictReader(
            io.StringIO(client.get("/models/tiny/heads/L1.H2/pairs/capital", params={"format": "csv"}).text)
        )
    )
    assert [int(r["rank"]) for r in csv_rows] == RANKS[1, 2].tolist()
    missing = client.get("/models/tiny/heads/L1.H2/pairs/copy")
    assert missing.status_code == 404 and "re-run headmaps analyze" in missing.text


def test_compare_heads_side_by_side(site) -> None:  # noqa: ANN001
    client, truth = site
    page = client.get("/compare", params={"model": "tiny", "heads": "L1.H2,L0.H1,2.3,L1.H2"})
    assert page.status_code == 200
    heads = re.findall(r'<section class="compare-head" data-head="(L\d+\.H\d+)">', page.text)
    assert heads == ["L1.H2", "L0.H1", "L2.H3"]  # in the asked order, the repeat dropped
    row = page.text[page.text.index('<tr data-row="capital">') :]
    row = row[: row.index("</tr>")]
    values = [float(v) for v in re.findall(r'data-value="([\d.]+)"', row)]
    assert values == pytest.approx(
        [truth["relation"][1, 2], truth["relation"][0, 1], truth["relation"][2, 3]]
    )
    best = int(np.argmax(values))
    assert re.findall(r'<td class="num( best)?"', row)[best] == " best"
    api = client.get("/api/compare", params={"model": "tiny", "heads": "L1.H2,L0.H1"}).json()
    assert [(h["layer"], h["head"]) for h in api["heads"]] == [(1, 2), (0, 1)]
    export = json.loads(
        client.get("/compare", params={"model": "tiny", "heads": "L1.H2,L0.H1", "format": "json"}).text
    )
    assert export["columns"] == ["kind", "name", "L1.H2", "L0.H1"]
    assert client.get("/compare", params={"model": "tiny", "heads": "L1.H2"}).status_code == 422
    assert client.get("/compare", params={"model": "tiny", "heads": "L1.H2,L9.H0"}).status_code == 404
    bad = client.get("/compare", params={"model": "tiny", "heads": "L1.H2,x"})
    assert bad.status_code == 422 and "is not a head" in bad.text


def test_the_api_grid_takes_the_same_metric(site) -> None:  # noqa: ANN001
    client, truth = site
    grid = client.get("/api/models/tiny", params={"operation": "capital", "metric": "suppression"}).json()[
        "grid"
    ]
    assert grid["metric"] == "suppression" and grid["k"] == 1
    assert grid["cells"][2][1]["score"] == pytest.approx(truth["suppression"][2, 1])
    assert client.get("/api/models/tiny", params={"operation": "capital", "metric": "x"}).status_code == 422
