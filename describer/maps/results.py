"""What MAPS computes for a model: each head's salient tokens and their mappings, and every
head's score on an operation. Plain pydantic records, stored and printed as they are."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class MappedToken(BaseModel):
    token: str
    token_id: int
    logit: float


class SalientToken(BaseModel):
    token: str
    token_id: int
    amplification: float
    """‖x W_VO‖ / ‖x‖ for the head's input x of this token."""
    mappings: list[MappedToken]


class HeadSalient(BaseModel):
    layer: int
    head: int
    salient: list[SalientToken]


class OperationScores(BaseModel):
    name: str
    category: str
    k: int
    n_pairs: int
    scores: list[list[float]]
    """``[layer][head]`` relation score: fraction of pairs whose target is in the top k."""
    suppression: list[list[float]]
    """``[layer][head]`` the same for the negated mapping."""

    def top_heads(self, n: int = 10, suppression: bool = False) -> list[dict[str, float | int]]:
        table = self.suppression if suppression else self.scores
        flat = [(s, layer, head) for layer, row in enumerate(table) for head, s in enumerate(row)]
        flat.sort(key=lambda t: (-t[0], t[1], t[2]))
        return [{"layer": layer, "head": head, "score": s} for s, layer, head in flat[:n]]


# --- the analyzer -----------------------------------------------------------------------------


class AnalysisResult(BaseModel):
    """Everything ``headmaps analyze`` computes for one model."""

    model: str
    settings: dict[str, Any]
    heads: list[HeadSalient]
    operations: dict[str, OperationScores]
    skipped_operations: list[str] = []
    """Operations asked for that have no usable pair for this tokenizer (skipped with a warning)."""
