"""The review queue: each head's current description per (prompt, LLM), in a fair order that is
each rater's own and the same on every visit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from evaluation.web import create_app
from evaluation.web.review_queue import review_next, review_order, review_progress
from store import Store, open_store
from store.records import RatingIn
from tests._storedb import description
from tests._webauth import local_name, post_form
from tests._webstore import fill


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Store, dict[str, int]]]:
    with open_store(f"sqlite:///{tmp_path / 'q.db'}") as s:
        yield s, fill(s)


@pytest.fixture
def ann_site(tmp_path: Path) -> Iterator[tuple[TestClient, Store, list[int]]]:
    """The web app over a filled store, ann named as the local rater; her queue's order."""
    url = f"sqlite:///{tmp_path / 'site.db'}"
    with open_store(url) as s:
        fill(s)
    with TestClient(create_app(url), base_url="http://127.0.0.1") as client:
        local_name(client, "ann")
        store = client.app.state.store
        yield client, store, review_order(store, "ann")


def test_a_newer_description_replaces_the_older_in_the_queue(store) -> None:  # noqa: ANN001
    s, ids = store
    assert sorted(review_order(s, "ann")) == sorted(ids.values())
    newer = s.add_description(description(layer=1, head=2, pattern="maps countries to capitals, again"))
    other_llm = s.add_description(description(layer=1, head=2, llm_model="another-llm"))
    failed = s.add_description(description(layer=0, head=1, status="failed", pattern=""))
    queue = review_order(s, "ann")
    assert newer in queue and other_llm in queue and ids["capital"] not in queue  # history
    assert failed not in queue and ids["copy"] in queue  # a failed retry leaves the good answer
    assert review_progress(s, "ann").total == len(ids) + 1
    # The model has 12 heads; the queue counts descriptions to judge, one per head and writer.
    assert review_progress(s, "ann", "tiny").total == 5


def test_every_rater_has_a_stable_order_of_their_own(store) -> None:  # noqa: ANN001
    s, ids = store
    for n in range(8):  # enough descriptions that two random orders differ
        s.add_description(description(layer=2, head=n % 4, llm_model=f"llm-{n}"))
    ann, bob = review_order(s, "ann"), review_order(s, "bob")
    assert sorted(ann) == sorted(bob) and ann != bob
    assert ann == review_order(s, "ann")  # the same on the next visit
    assert ann != sorted(ann)  # not id order (layer 0 first)
    # review_next walks ann's order, skipping what she rated, wrapping at the end.
    assert review_next(s, "ann") == ann[0]
    assert review_next(s, "ann", after=ann[0]) == ann[1]
    assert review_next(s, "ann", after=ann[-1]) == ann[0]
    s.add_rating(RatingIn(description_id=ann[0], rater="ann", label="plausible"))
    assert review_next(s, "ann") == ann[1] and review_next(s, "ann", after=ann[-1]) == ann[1]
    assert review_next(s, "bob") == bob[0]  # ann's ratings are not bob's


def test_undo_withdraws_the_last_rating_and_shows_it_again(ann_site) -> None:  # noqa: ANN001
    client, store, order = ann_site
    post_form(client, "/review", {"description_id": order[0], "label": "cannot_tell"})
    rated = post_form(
        client, "/review", {"description_id": order[0], "label": "plausible"}
    )  # changed her mind
    assert f'data-description-id="{order[1]}"' in rated.text and 'id="undo"' in rated.text
    first = post_form(client, "/review/undo", {"description_id": order[0]})
    assert first.status_code == 200 and "Undone: your rating of description" in first.text
    # Her earlier rating is current again (so the queue goes on); nobody else's is touched.
    assert [(r.rater, r.label) for r in store.ratings_for(order[0])] == [("ann", "cannot_tell")]
    assert f'data-description-id="{order[1]}"' in first.text
    again = post_form(client, "/review/undo", {"description_id": order[0]})
    assert f'data-description-id="{order[0]}"' in again.text and "here it is again" in again.text
    assert store.ratings_for(order[0]) == [] and review_progress(store, "ann").done == 0
    nothing = post_form(client, "/review/undo", {"description_id": order[0]})
    assert nothing.status_code == 200 and "Undone" not in nothing.text
    # A write needs the page's CSRF token, like every other.
    assert client.post("/review/undo", data={"description_id": order[1]}).status_code == 403


def test_skips_are_remembered_and_come_back_on_request(ann_site) -> None:  # noqa: ANN001
    client, store, order = ann_site
    page = post_form(client, "/review/skip", {"description_id": order[0]})
    assert f'data-description-id="{order[1]}"' in page.text and 'id="skipped-count">1 skipped' in page.text
    # A later visit (a fresh page, from the start of her order) does not offer it again…
    assert f'data-description-id="{order[1]}"' in client.get("/review").text
    assert store.skipped_by("ann") == {order[0]} and store.skipped_by("bob") == set()
    assert review_next(store, "bob") == review_order(store, "bob")[0]  # …nor hide it from bob
    assert store.skip_description(order[0], "ann") is False  # a second skip changes nothing
    for did in order[1:]:
        post_form(client, "/review", {"description_id": did, "label": "plausible"})
    done = client.get("/review").text
    assert "Nothing new to rate" in done and 'id="review-skipped"' in done
    assert review_progress(store, "ann").model_dump() == {
        "done": len(order) - 1,
        "total": len(order),
        "skipped": 1,
    }
    # Asked for, the skipped one is offered; rated, it counts as done and not as skipped.
    again = client.get("/review?skipped=1").text
    assert f'data-description-id="{order[0]}"' in again and 'id="skipped-mode"' in again
    assert 'name="skipped" value="1"' in again
    finished = post_form(
        client, "/review", {"description_id": order[0], "label": "cannot_tell", "skipped": "1"}
    )
    assert "Nothing left to rate" in finished.text
    assert review_progress(store, "ann").model_dump() == {
        "done": len(order),
        "total": len(order),
        "skipped": 0,
    }
    # Undone from the skipped ones, it is offered again there (it is still a skip, so the
    # ordinary queue would pass over it).
    assert finished.text.count('name="skipped" value="1"') >= 1  # the undo form keeps the mode
    back = post_form(client, "/review/undo", {"description_id": order[0], "skipped": "1"})
    assert f'data-description-id="{order[0]}"' in back.text and "here it is again" in back.text
    assert 'id="skipped-mode"' in back.text


def test_api_skip_needs_the_rater_and_hides_it_from_their_queue(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with open_store(url) as s:
        fill(s)
    with TestClient(create_app(url), base_url="http://127.0.0.1") as client:
        first = client.get("/api/review/next", params={"rater": "ann"}).json()["description"]["id"]
        assert client.post("/api/review/skip", json={"description_id": first}).status_code == 422
        body = {"description_id": first, "rater": "ann"}
        skip = client.post("/api/review/skip", json=body)
        assert skip.status_code == 200 and skip.json() == {
            "description_id": first,
            "rater": "ann",
            "new": True,
        }
        nxt = client.get("/api/review/next", params={"rater": "ann"}).json()
        assert nxt["description"]["id"] != first and nxt["progress"]["skipped"] == 1
        back = client.get("/api/review/next", params={"rater": "ann", "skipped": "true"}).json()
        assert back["description"]["id"] == first
        missing = client.post("/api/review/skip", json={"description_id": 10**6, "rater": "ann"})
        assert missing.status_code == 404 and "no description" in missing.json()["detail"]
