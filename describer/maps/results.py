"""What MAPS computes for a model: each head's salient tokens and their mappings, and every
head's score on an operation. Plain pydantic records, stored and printed as they are."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

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
    """The tokens the head's mapping of this source scores highest, highest logit first."""
    suppressed: list[MappedToken] = []
    """The tokens it scores lowest (same vocabulary restrictions), most negative logit first."""


class HeadSalient(BaseModel):
    layer: int
    head: int
    salient: list[SalientToken]


class OperationScores(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    category: str
    k: int
    n_pairs: int
    scores: list[list[float]]
    """``[layer][head]`` relation score: fraction of pairs whose target is in the top k."""
    suppression: list[list[float]]
    """``[layer][head]`` the same for the negated mapping."""
    pairs: list[tuple[str, int, str, int]] = Field(default=[], exclude=True, repr=False)
    """Each scored pair as (source token text, id, target token text, id), in the tokenized order
    (empty when the producer does not keep per-pair outcomes). Not in the JSON output."""
    ranks: Tensor | None = Field(default=None, exclude=True, repr=False)
    """``[layers, heads, pairs]`` int32: tokens whose logit is strictly above the pair's target in
    the head's mapping of the source (0 = top), so ``scores == mean(ranks < k)``. Exact below
    ``k``; a rank of ``k`` or more is a lower bound (the scan stops counting once the target is
    settled out of the top k on both sides). None when not kept. Not in the JSON output."""
    suppressed_ranks: Tensor | None = Field(default=None, exclude=True, repr=False)
    """The same for the negated mapping (tokens strictly below the target):
    ``suppression == mean(suppressed_ranks < k)``."""

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
