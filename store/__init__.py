"""The store: every mapping, score, description and rating in one database (SQLite by default,
PostgreSQL for teams). Never imports torch."""

from store.api import Store, operation_hash
from store.db import default_url, open_store
from store.labels import CATEGORIES, RATING_LABELS

__all__ = ["CATEGORIES", "RATING_LABELS", "Store", "default_url", "open_store", "operation_hash"]
