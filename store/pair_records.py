"""What ``Store.head_pairs`` returns: one head's outcome on each pair of an operation (the
static counterpart of a feature's example activations). Importable from ``store.records`` too."""

from __future__ import annotations

from pydantic import BaseModel


class PairOut(BaseModel):
    """One pair of an operation, as one head maps its source."""

    source: str
    source_id: int
    target: str
    target_id: int
    rank: int
    """Tokens scoring strictly above the target in this head's mapping of the source (0 = top).
    Exact below ``k``; at ``k`` or above a lower bound (counting stops once the target is out)."""
    hit: bool
    """``rank < k``: the target is among the top k."""
    suppressed_rank: int
    """The same for the negated mapping (tokens scoring strictly below the target)."""
    suppressed_hit: bool


class HeadPairs(BaseModel):
    """One head's outcome on every pair of an operation: ``relation == mean(hit)`` and
    ``suppression == mean(suppressed_hit)``."""

    model: str
    layer: int
    head: int
    operation: str
    category: str
    k: int
    n_pairs: int
    relation: float
    suppression: float
    pairs: list[PairOut]
    """In the stored (tokenized) order."""
