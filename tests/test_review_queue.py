"""The review queue: each head's current description per (prompt, LLM), in a fair order that is
each rater's own and the same on every visit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from evaluation.web.review_queue import review_next, review_order, review_progress
from store import Store, open_store
from store.records import RatingIn
from tests._storedb import description
from tests._webstore import fill


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Store, dict[str, int]]]:
    with open_store(f"sqlite:///{tmp_path / 'q.db'}") as s:
        yield s, fill(s)


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
