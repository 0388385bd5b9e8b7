"""The store: every mapping, score, description and rating in one database (SQLite by default,
PostgreSQL for teams). Never imports torch."""

from store.api import Store
from store.base import operation_hash, utcnow
from store.db import open_store
from store.engine import default_url
from store.export import export_store
from store.importer import import_file
from store.labels import CATEGORIES, RATING_LABELS

__all__ = [
    "CATEGORIES",
    "RATING_LABELS",
    "Store",
    "default_url",
    "export_store",
    "import_file",
    "open_store",
    "operation_hash",
    "utcnow",
]
