"""What MAPS computes for a model: each head's salient tokens and their mappings, and every
head's score on an operation. Plain pydantic records, stored and printed as they are."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from describer.maps.patterns import PatternScores, top_of


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
        return top_of(self.suppression if suppression else self.scores, n)


# --- the analyzer -----------------------------------------------------------------------------


class AnalysisResult(BaseModel):
    """Everything ``headmaps analyze`` computes for one model."""

    model: str
    settings: dict[str, Any]
    heads: list[HeadSalient]
    operations: dict[str, OperationScores]
    skipped_operations: list[str] = []
    """Operations asked for that have no usable pair for this tokenizer (skipped with a warning)."""
    patterns: PatternScores | None = None
    """Every head's attention-pattern scores (None: not measured in this run)."""
