"""What a search asks and answers: its filters, hits and result (shared by the search by text,
``evaluation.semantic``, and by analysis, ``evaluation.head_search``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from describer.errors import InvalidValue
from describer.maps.patterns import PATTERNS
from store.head_search import HeadFilters, TokenMatch
from store.labels import CATEGORIES, RATING_LABELS

MAX_RESULTS = 10_000
"""The most hits one search ranks (pages of results are cut from them)."""

Mode = Literal["fulltext", "semantic", "hybrid"]


class Filters(HeadFilters):
    """What ``search`` keeps, besides matching the query, and which scores hits show."""

    show: list[str] = []
    """Operations or attention patterns whose scores each hit shows (besides ``min_scores``'
    and ``min_patterns``'); a search without words ranks heads by the first one."""

    @property
    def shown(self) -> list[str]:
        """The operations and attention patterns whose scores hits show, in their columns'
        order: ``show`` first (its first name ranks a search without words), then the
        minimum-score filters', each once."""
        return list(dict.fromkeys([*self.show, *self.min_scores, *self.min_patterns]))

    @property
    def score_names(self) -> tuple[list[str], list[str]]:
        """``shown`` as (operations, attention patterns)."""
        names = self.shown
        return [n for n in names if n not in PATTERNS], [n for n in names if n in PATTERNS]

    def head_filters(self) -> HeadFilters:
        """The filters alone (without ``show``), as the store takes them."""
        return HeadFilters.model_validate(self.model_dump(exclude={"show"}))

    def check(self) -> None:
        if self.category is not None and self.category not in CATEGORIES:
            raise InvalidValue(f"unknown category {self.category!r}; use one of {', '.join(CATEGORIES)}")
        if self.label is not None and self.label not in RATING_LABELS:
            raise InvalidValue(f"unknown rating label {self.label!r}; use one of {', '.join(RATING_LABELS)}")

    @property
    def active(self) -> bool:
        return (
            bool(self.min_scores)
            or bool(self.min_patterns)
            or self.tokens.active
            or any(
                v is not None
                for v in (
                    self.model,
                    self.category,
                    self.layer_min,
                    self.layer_max,
                    self.label,
                    self.unclear,
                    self.relation,
                )
            )
        )


def split_min_scores(scores: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """``--min-score`` values as (operations, attention patterns): a name in ``PATTERNS``
    (``induction``, ``previous_token``, …) is a pattern, any other name an operation."""
    operations = {name: v for name, v in scores.items() if name not in PATTERNS}
    patterns = {name: v for name, v in scores.items() if name in PATTERNS}
    return operations, patterns


class Hit(BaseModel):
    """A description found by its text, or (a search without words) a head passing the filters
    with its latest description, if any."""

    description_id: int | None
    head_id: int | None = Field(default=None, exclude=True)
    """The head's row id (internal: for the page's scores; not part of the answer)."""
    model: str
    layer: int
    head: int
    text: str
    """The matching sentence: the full-text snippet (matches marked ``[...]``) or, for a hit
    by meaning, the description's pattern and inputs; without words, the latest description
    in one line ("" for an undescribed head)."""
    score: float | None
    """The text-match score; None when the search had no words."""
    category: str | None = None
    status: str | None = "ok"
    scores: dict[str, float | None] = {}
    """The head's score on each ``min_score`` filter's operation or attention pattern."""
    matches: list[TokenMatch] = []
    """With a token search: the head's matching salient rows, best first (a few)."""
    best_rank: int | None = None
    """With a token search: the least rank of a matching row (the source's salient rank, or
    with a target its rank among the source's mapped tokens)."""


class SearchResult(BaseModel):
    results: list[Hit]
    mode: Mode | Literal["heads"]
    """How the hits are ranked: by text (``fulltext``, ``semantic``, ``hybrid``), or, for a search
    without words, ``heads`` (by the token match, then the first shown score)."""
    offset: int = 0
    more: bool = False
    """Whether a next page (``offset + len(results)``) has hits."""
    total: int | None = None
    """A search without words: how many heads pass the filters."""
    note: str | None = None
    """Why the mode is not the one asked for (the embedding model is not installed), or how
    many descriptions have no vector yet, so that meaning cannot find them."""
