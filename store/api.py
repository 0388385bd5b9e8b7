"""``Store``: the public API over one database. Pydantic models in and out; every write is
validated first and runs in one transaction.

The class is assembled from one part per concept, each in its own module: models, heads and
analyses (``store.analyses``), the heads' per-pair operation outcomes (``store.pairs``), relation
evidence (``store.relations``) and
attention-pattern scores (``store.patterns``), descriptions,
their scores, embeddings and search (``store.descriptions``), ratings (``store.ratings``), raters and the site's keys (``store.raters``) and runs
(``store.runs``), all on the sessions of ``store.base``."""

from __future__ import annotations

from store.analyses import Analyses
from store.descriptions import Descriptions
from store.pairs import Pairs
from store.patterns import Patterns
from store.raters import Raters
from store.ratings import Ratings
from store.relations import Relations
from store.runs import Runs


class Store(Analyses, Descriptions, Pairs, Patterns, Raters, Ratings, Relations, Runs):
    """One headmaps database. Create with ``store.open_store(url)``."""

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
