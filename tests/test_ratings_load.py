"""20 signed-in raters rating at once through the HTTP API (uvicorn in a thread): every rating
stored exactly once, each rater's last rating of a description current and the rest history,
and a rater revoked mid-run refused from their next request on. SQLite and, with
``HEADMAPS_TEST_POSTGRES_URL``, PostgreSQL. Latencies are ``benchmarks/bench_ratings_load.py``'s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from benchmarks.rating_load import expected_rows, run_load, serving
from store import open_store
from store import tables as S
from tests._storedb import ENGINES, make_url
from tests._webstore import fill

RATERS, EACH, REVOKE_AFTER = 20, 50, 20
"""The benchmark runs the full 20 × 100; the test checks the same properties on half of it."""


@pytest.fixture(params=ENGINES)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, list[int]]]:
    urls = make_url(request.param, tmp_path)
    url = next(urls)
    with open_store(url) as store:
        ids = sorted(fill(store).values())
    yield url, ids
    urls.close()


def test_twenty_raters_rating_concurrently(db: tuple[str, list[int]]) -> None:
    url, ids = db
    names = [f"rater{n:02d}" for n in range(RATERS)]
    with open_store(url) as store:
        tokens = {name: store.add_rater(name).token for name in names}
    revoked = names[-1]

    def revoke(name: str, i: int) -> None:
        if name == revoked and i == REVOKE_AFTER - 1:
            with open_store(url) as store:
                store.revoke_rater(name)

    with serving(url) as base:
        result = run_load(base, tokens, ids, EACH, on_post=revoke)
    for name in names[:-1]:
        assert result.statuses[name] == [201] * EACH, name
    assert result.statuses[revoked] == [201] * REVOKE_AFTER + [401] * (EACH - REVOKE_AFTER)

    counts = {name: EACH for name in names} | {revoked: REVOKE_AFTER}
    rows, current = expected_rows(names, ids, counts)
    with open_store(url) as store, store.read() as session:
        stored = session.execute(
            select(
                S.Rating.rater, S.Rating.description_id, S.Rating.label, S.Rating.comment, S.Rating.is_current
            )
        ).all()
    assert sorted(r[:4] for r in stored) == rows  # each exactly once, nothing else
    assert {r[:4] for r in stored if r[4]} == current  # one current per rater and description
    assert len(rows) == (RATERS - 1) * EACH + REVOKE_AFTER
