"""Search by analysis: heads passing filters with no words (scores, tokens they map, the
current description), ranked by the token match then the shown score, paged; the same in the
store on every engine, the page (table, token hint, downloads), the API and the terminal."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from describer.cli import app
from evaluation.search_models import Filters
from evaluation.semantic import search
from evaluation.web import create_app
from store import Store, open_store
from store.head_search import TokenQuery
from store.records import MappingIn
from tests._storedb import ENGINES, analysis, definitions, description, make_url, model_info

ROWS = {
    (1, 2): (0, " France", [" Paris", " London"]),
    (2, 0): (2, "▁France", [" Berlin", "Paris"]),
    (0, 3): (1, " Paris", [" France", " Rome"]),
}
"""Salient rows planted in the latest analysis: head -> (rank, source, its mapped tokens)."""


def _fill(store: Store) -> list[list[float]]:
    """Two analyses of a 3×4 model (the older maps France to Paris in L0.H0, the latest does
    not) and one description; returns the latest analysis' capital scores."""
    info = model_info("tiny", n_layers=3, n_heads=4)
    old = analysis(info, seed=1)
    old.heads[0].salient[0].token = " France"
    old.heads[0].salient[0].mappings[0].token = " Paris"
    store.save_analysis(info, old, settings_key="old", operations=definitions())
    data = analysis(info, seed=2)
    for h in data.heads:
        if (h.layer, h.head) in ROWS:
            rank, source, targets = ROWS[(h.layer, h.head)]
            h.salient[rank].token = source
            h.salient[rank].mappings = [
                MappingIn(token=t, token_id=500 + n, logit=2.0 - n) for n, t in enumerate(targets)
            ]
    store.save_analysis(info, data, settings_key="new", operations=definitions())
    store.add_description(
        description(layer=1, head=2, pattern="maps countries to capitals", category="knowledge_recalling")
    )
    return data.operations["capital"].scores


@pytest.fixture(params=ENGINES)
def filled(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, list[list[float]]]]:
    for url in make_url(request.param, tmp_path):
        with open_store(url) as store:
            yield store, _fill(store)


def heads(result) -> list[str]:  # noqa: ANN001
    return [f"L{h.layer}.H{h.head}" for h in result.results]


def test_filters_without_words_list_every_passing_head_with_its_score(filled) -> None:  # noqa: ANN001
    store, scores = filled
    truth = {f"L{layer}.H{head}": scores[layer][head] for layer in range(3) for head in range(4)}
    passing = sorted((h for h, v in truth.items() if v >= 0.5), key=lambda h: -truth[h])
    assert 0 < len(passing) < 12
    result = search(store, "", Filters(min_scores={"capital": 0.5}), limit=50)
    assert result.mode == "heads" and result.total == len(passing) and not result.more
    assert heads(result) == passing  # the filtered score ranks them, undescribed heads too
    for hit in result.results:
        assert hit.scores["capital"] == pytest.approx(truth[f"L{hit.layer}.H{hit.head}"])
    described = {h.description_id for h in result.results if h.description_id is not None}
    assert len(described) <= 1
    # A shown score without a minimum ranks every head; pages cut that ranking.
    ranked = sorted(truth, key=lambda h: -truth[h])
    pages = [search(store, "", Filters(show=["capital"]), limit=5, offset=o) for o in (0, 5, 10)]
    assert [heads(p) for p in pages] == [ranked[:5], ranked[5:10], ranked[10:]]
    assert [p.more for p in pages] == [True, True, False] and {p.total for p in pages} == {12}
    only = search(store, "", Filters(category="knowledge_recalling", show=["capital"]))
    assert heads(only) == ["L1.H2"] and only.results[0].text == "maps countries to capitals"


def test_which_heads_map_a_token_to_another(filled) -> None:  # noqa: ANN001
    store, _ = filled

    def find(**tokens: str) -> list[tuple[str, int | None]]:
        result = search(store, "", Filters(tokens=TokenQuery(**tokens)))
        return [(f"L{h.layer}.H{h.head}", h.best_rank) for h in result.results]

    # Loose: no leading space or ▁, any case; ranked by the source's salient rank.
    assert find(source="france") == [("L1.H2", 0), ("L2.H0", 2)]  # not the older analysis' L0.H0
    assert find(source=" France", match="exact") == [("L1.H2", 0)]
    assert find(source="France", match="exact") == []
    # Source and target on one row, ranked by the target's rank among the source's mappings.
    assert find(source="France", target="paris") == [("L1.H2", 0), ("L2.H0", 1)]
    assert find(source="France", target="Rome") == []  # Rome is L0.H3's, from Paris
    assert find(target="france") == [("L0.H3", 0)]
    hit = search(store, "", Filters(tokens=TokenQuery(source="france", target="berlin"))).results[0]
    row = hit.matches[0]
    assert (row.rank, row.source, row.target, row.target_rank, row.logit) == (2, "▁France", " Berlin", 0, 2.0)


def test_a_text_search_shows_the_filtered_score_and_pages(filled) -> None:  # noqa: ANN001
    store, scores = filled
    for n in range(6):
        store.add_description(
            description(layer=2, head=n % 4, pattern=f"capital cities {n}", llm_model=f"l{n}")
        )
    hits = search(store, "capitals", Filters(show=["capital"]), mode="fulltext").results
    assert {(h.layer, h.head) for h in hits} == {(1, 2), (2, 0), (2, 1), (2, 2), (2, 3)}
    for h in hits:
        assert h.scores == {"capital": pytest.approx(scores[h.layer][h.head])}
    first = search(store, "capital", Filters(), mode="fulltext", limit=4)
    second = search(store, "capital", Filters(), mode="fulltext", limit=4, offset=4)
    assert first.more and not second.more and second.offset == 4
    ids = [h.description_id for h in first.results + second.results]
    assert len(ids) == len(set(ids)) == 7
    assert (
        search(store, "capital", Filters(tokens=TokenQuery(target="france")), mode="fulltext").results == []
    )


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, list[list[float]]]]:
    url = f"sqlite:///{tmp_path / 's.db'}"
    with open_store(url) as store:
        scores = _fill(store)
    with TestClient(create_app(url), base_url="http://127.0.0.1") as c:
        yield c, scores


def test_the_page_lists_heads_by_analysis_with_scores_and_downloads(client) -> None:  # noqa: ANN001
    c, scores = client
    page = c.get("/search", params={"q": "", "operation": "capital", "min_score": "0.5"}).text
    rows = re.findall(
        r'<tr data-head="(L\d\.H\d)">\s*<td[^>]*><a[^>]*>[^<]*</a></td>\s*<td class="num"[^>]*>([\d.]+)</td>',
        page,
    )
    passing = sorted(((layer, head) for layer in range(3) for head in range(4) if scores[layer][head] >= 0.5),
                     key=lambda lh: -scores[lh[0]][lh[1]])  # fmt: skip
    assert rows == [(f"L{la}.H{he}", f"{scores[la][he]:.3f}") for la, he in passing]
    assert f"{len(passing)} heads" in page and "ranked by capital (highest first)" in page
    tokens = c.get("/search", params={"source": "france", "target": "paris"}).text
    assert re.findall(r'<tr data-head="(L\d\.H\d)">', tokens) == ["L1.H2", "L2.H0"]
    assert "#2 " in tokens and "▁France" in tokens and "Berlin" not in tokens
    hint = c.get("/search", params={"q": "France", "mode": "fulltext"}).text
    assert re.search(r'id="token-hint">.*2 heads read it.*1 head map to it', hint)
    csv_body = c.get("/search", params={"operation": "capital", "min_score": "0.5", "format": "csv"})
    table = list(csv.DictReader(io.StringIO(csv_body.text)))
    assert [r["head"] for r in table] == [f"L{la}.H{he}" for la, he in passing]
    assert float(table[0]["capital"]) == pytest.approx(scores[passing[0][0]][passing[0][1]])
    paged = c.get("/search", params={"operation": "capital"}).text  # 12 heads fit in one page
    assert 'id="next-page"' not in paged and "12 heads" in paged
    for params, message in (
        ({"operation": "nope", "min_score": "0.1"}, "unknown operation &#39;nope&#39;"),
        ({"operation": "capital", "offset": "x"}, "offset must be a whole number"),
        ({"source": "a", "match": "fuzzy"}, "match is loose or exact"),
    ):
        response = c.get("/search", params=params)
        assert response.status_code == 200 and message in response.text, params
    bad = c.get("/search", params={"operation": "nope", "min_score": "0.1", "format": "csv"})
    assert bad.status_code == 422 and bad.text.startswith("error: unknown operation")


def test_api_and_terminal_search_by_tokens(client, tmp_path: Path) -> None:  # noqa: ANN001
    c, _ = client
    body = c.get("/api/search", params={"source": "france", "target": "paris", "show": "capital"}).json()
    assert body["mode"] == "heads" and body["total"] == 2
    assert [(h["layer"], h["head"], h["best_rank"]) for h in body["results"]] == [(1, 2, 0), (2, 0, 1)]
    assert set(body["results"][0]["scores"]) == {"capital"}
    result = CliRunner().invoke(
        app,
        [
            "search",
            "--source",
            "france",
            "--target",
            "paris",
            "--json",
            "--db",
            f"sqlite:///{tmp_path / 's.db'}",
        ],
    )
    assert result.exit_code == 0, result.output
    cli = json.loads(result.stdout)
    assert [(h["layer"], h["head"]) for h in cli["results"]] == [(1, 2), (2, 0)] and cli["total"] == 2
    table = CliRunner().invoke(
        app, ["search", "--show", "capital", "--limit", "3", "--db", f"sqlite:///{tmp_path / 's.db'}"]
    )
    assert table.exit_code == 0 and "12 heads (1-3 shown); next page: --offset 3" in table.stdout
    bad = CliRunner().invoke(app, ["search", "--show", "nope", "--db", f"sqlite:///{tmp_path / 's.db'}"])
    assert bad.exit_code == 2 and "unknown operation 'nope'" in bad.stderr
