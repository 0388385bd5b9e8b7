"""The web app's status for a store error comes from the error's type, never from its wording;
the raise sites the app can reach raise the type that gives their status."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from describer.errors import HeadmapsError, InvalidValue, NotFound
from describer.maps.patterns import check_pattern
from evaluation.relations import check_fraction, check_relation
from evaluation.semantic import Filters
from evaluation.web.common import status_of
from store import Store, open_store
from tests._webstore import fill


def test_the_status_is_the_type_not_the_message() -> None:
    assert status_of(NotFound("anything at all")) == 404
    assert status_of(InvalidValue("anything at all")) == 422
    # The words the app once matched on give nothing without the type.
    for message in (
        "unknown model 'x'",
        "no description with id 3",
        "layer 9 out of range",
        "unknown category 'y'",
    ):
        assert status_of(HeadmapsError(message)) == 400
    # Both are user errors: the CLI, which catches HeadmapsError, prints them as one line.
    assert issubclass(NotFound, HeadmapsError) and issubclass(InvalidValue, HeadmapsError)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path / 'status.db'}") as s:
        fill(s)
        yield s


@pytest.mark.parametrize(
    ("call", "kind", "message"),
    [
        (lambda s: s.get_model("nope"), NotFound, "unknown model 'nope'"),
        (lambda s: s.get_head("tiny", 3, 0), NotFound, "layer 3 out of range"),
        (lambda s: s.get_head("tiny", 0, 4), NotFound, "head 4 out of range"),
        (lambda s: s.get_description(999), NotFound, "no description with id 999"),
        (lambda s: s.operation_grid("tiny", "nothing"), NotFound, "no scores for operation 'nothing'"),
        (lambda s: s.pattern_grid("tiny", "induction"), NotFound, "no attention-pattern scores of tiny"),
        (lambda s: check_pattern("sideways"), NotFound, "unknown pattern 'sideways'"),
        (lambda s: Filters(category="misc").check(), InvalidValue, "unknown category 'misc'"),
        (lambda s: Filters(label="great").check(), InvalidValue, "unknown rating label 'great'"),
        (lambda s: check_relation(s, "sideways"), InvalidValue, "unknown relation 'sideways'"),
        (lambda s: check_fraction(1.5), InvalidValue, "the minimum fraction must be between 0 and 1"),
    ],
)  # fmt: skip
def test_raise_sites_raise_the_type_of_their_status(store: Store, call, kind, message: str) -> None:  # noqa: ANN001
    with pytest.raises(kind, match=re.escape(message)):
        call(store)
