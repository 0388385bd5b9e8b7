"""Finding heads by their relation evidence (``describer.maps.relations``): the checks of a
relation key and a least fraction, and the heads satisfying them, strongest first. The command
line (``headmaps search --relation``), the pages and the JSON API share them."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from describer.errors import InvalidValue
from describer.maps.relations import is_relation_key
from store.records import RelationHit
from store.relations import EPSILON

if TYPE_CHECKING:
    from store import Store

KEYS_HELP = (
    "copy, stem, opposite, successor, predecessor, constant, suffix:+ed (or +s, +es, +d, +ing, +er, +est, +ly, "
    "+ness, +ment, +ion; -ed for the reverse), inflection:past (or participle, ing, plural, third_person, "
    "comparative, superlative, lemma), case:upper (or lower, title), gender:female (or male), operation:NAME, reverse:NAME, "
    "script:inputs:CLASS, script:outputs:CLASS, or a prefix ending in ':' such as operation:"
)


def check_fraction(min_fraction: float) -> None:
    if math.isnan(min_fraction) or not -EPSILON <= min_fraction <= 1 + EPSILON:
        raise InvalidValue(f"the minimum fraction must be between 0 and 1, not {min_fraction:g}")


def check_relation(store: Store, relation: str, min_fraction: float = 0.0) -> None:
    """Refuse a fraction outside [0, 1] and a key that is neither one ``relation_facts``
    reports nor one stored (a user's operation), with the keys there are."""
    check_fraction(min_fraction)
    if not is_relation_key(relation, store.relation_keys()):
        raise InvalidValue(f"unknown relation {relation!r}; relations are {KEYS_HELP}")


def find_heads(
    store: Store,
    relation: str,
    *,
    model: str | None = None,
    min_fraction: float = 0.0,
    limit: int | None = 100,
) -> list[RelationHit]:
    """Heads with ``relation`` in at least ``min_fraction`` of their salient rows, strongest
    first (``Store.heads_with_relation``), after checking both."""
    check_relation(store, relation, min_fraction)
    return store.heads_with_relation(relation, model=model, min_fraction=min_fraction, limit=limit)
