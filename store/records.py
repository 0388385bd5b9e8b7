"""Pydantic schemas at the store's boundary: what goes in and what comes out.

The analysis inputs mirror ``describer.maps.results`` field for field, so
``AnalysisIn.model_validate(result, from_attributes=True)`` converts an ``AnalysisResult``
without the store importing torch (``result.model_dump()`` leaves out the per-pair outcomes,
which are arrays: ``OperationScoresIn.ranks`` takes them as ``numpy.asarray`` does).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator, model_validator

from store.pair_records import HeadPairs as HeadPairs  # re-exported: every record is in store.records
from store.pair_records import PairOut as PairOut


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True)


# --- inputs -----------------------------------------------------------------------------------


class ModelInfo(_In):
    """What identifies a model and its shape."""

    name: str = Field(min_length=1)
    """The name the store and outputs know the model by."""
    source: str
    """Hub id, directory, or GGUF path."""
    kind: str = "dir"
    """alias, gguf, dir or hub."""
    content_hash: str | None = None
    """sha256 of the GGUF, the hub revision, or a fingerprint of a local directory."""
    family: str
    """``config.model_type``."""
    n_layers: int = Field(ge=1)
    n_heads: int = Field(ge=1)
    n_kv_heads: int = Field(ge=1)
    d_model: int = Field(ge=1)
    vocab_size: int = Field(ge=1)


class MappingIn(_In):
    token: str
    token_id: int
    logit: float


class SalientIn(_In):
    token: str
    token_id: int
    amplification: float
    mappings: list[MappingIn]
    suppressed: list[MappingIn] = []
    """The tokens the source is mapped to most negatively, lowest logit first."""


class RelationIn(_In):
    """A relation that rows of a head's salient table satisfy (``describer.maps.relations``'s
    ``RelationFact``)."""

    relation: str = Field(min_length=1, max_length=200)
    """Stable key: ``copy``, ``suffix:+ed``, ``operation:country_to_capital``, ``script:outputs:cjk``, …"""
    label: str
    """The relation in plain English: "country → capital"."""
    rows: int = Field(ge=0)
    """Rows of the table satisfying it."""
    n_rows: int = Field(ge=1)
    examples: list[tuple[str, str]] = []
    """Up to three (source, matching output) token pairs."""

    @model_validator(mode="after")
    def _rows_in_range(self) -> RelationIn:
        if self.rows > self.n_rows:
            raise ValueError(f"relation {self.relation}: {self.rows} rows of {self.n_rows}")
        return self


class HeadSalientIn(_In):
    layer: int
    head: int
    salient: list[SalientIn]
    relations: list[RelationIn] = []
    """The relations the salient table's rows satisfy, strongest first (empty: not computed)."""


class OperationScoresIn(_In):
    name: str
    category: str
    k: int
    n_pairs: int
    scores: list[list[float]]
    """``[layer][head]`` relation score."""
    suppression: list[list[float]]
    """``[layer][head]`` suppression score."""
    pairs: list[tuple[str, int, str, int]] = []
    """The scored pairs as (source text, source id, target text, target id), in the order of the
    ranks' last axis; empty when per-pair outcomes were not kept."""
    ranks: np.ndarray | None = None
    """``[layers, heads, pairs]`` integers: tokens scoring strictly above each pair's target
    (exact below ``k``), so ``scores == mean(ranks < k)``; anything ``numpy.asarray`` takes (a
    CPU tensor too). None: not kept."""
    suppressed_ranks: np.ndarray | None = None
    """The same for the negated mapping: ``suppression == mean(suppressed_ranks < k)``."""

    @field_validator("ranks", "suppressed_ranks", mode="before")
    @classmethod
    def _int32(cls, value: object) -> np.ndarray | None:
        return None if value is None else np.asarray(value).astype("<i4", copy=False)


class OperationIn(_In):
    """An operation's definition: stored once per (name, pairs)."""

    name: str
    category: str
    pairs: list[tuple[str, str]]
    origin: Literal["builtin", "user"] = "builtin"
    source_file: str | None = None
    """The user's pairs file, for ``origin == "user"``."""


class AnalysisIn(_In):
    """One model's analysis: an ``AnalysisResult`` by another name."""

    model: str
    settings: dict[str, Any]
    heads: list[HeadSalientIn] = []
    operations: dict[str, OperationScoresIn] = {}
    skipped_operations: dict[str, str] = {}
    """Operations with no usable pair for this model's tokenizer: name -> pairs hash. Recorded
    (in the analysis' settings) so that a re-run counts them as done instead of failing on them."""


class PatternsIn(_In):
    """Every head's attention-pattern scores (``describer.maps.patterns.PatternScores``)."""

    settings: dict[str, Any]
    scores: dict[str, list[list[float]]]
    """pattern name → ``[layer][head]``."""

    @field_validator("scores")
    @classmethod
    def _names(cls, scores: dict[str, list[list[float]]]) -> dict[str, list[list[float]]]:
        for name in scores:
            if not 1 <= len(name) <= 50:
                raise ValueError(f"pattern name {name!r} must be 1 to 50 characters")
        return scores


class DescriptionIn(_In):
    """An LLM's description of one head, with everything needed to reproduce and audit it."""

    model: str
    layer: int
    head: int
    prompt_name: str
    prompt_sha: str
    rendered_prompt: str
    llm_model: str
    llm_host: str
    params: dict[str, Any] = {}
    """Generation parameters (temperature, max_tokens, seed, ...)."""
    raw_response: str
    reasoning: str | None = None
    inputs: str | None = None
    pattern: str | None = None
    unclear: bool = False
    category: str | None = None
    """One of ``store.labels.CATEGORIES`` or None (a failed parse)."""
    tags: list[str] = []
    status: Literal["ok", "unclear", "failed"]
    tokens_in: int | None = None
    tokens_out: int | None = None
    latency_s: float | None = None
    run_id: int | None = None
    analysis_id: int | None = None
    created_at: datetime | None = None
    """Naive UTC; now when omitted."""


class DescriptionScoreIn(_In):
    """An automatic score of one description (``evaluation.scoring``)."""

    description_id: int
    scorer: str = Field(min_length=1, max_length=50)
    """``simulation`` or ``operation_agreement`` (any name a scorer registers)."""
    llm_model: str = Field(min_length=1, max_length=200)
    """The LLM that simulated or judged."""
    score: float | None
    """None: the judge's answer could not be used (``details`` holds the raw text)."""
    details: dict[str, Any] = {}
    created_at: datetime | None = None


class RatingIn(_In):
    description_id: int
    rater: str = Field(min_length=1)
    label: str
    """One of ``store.labels.RATING_LABELS``."""
    comment: str | None = None
    created_at: datetime | None = None


# --- outputs ----------------------------------------------------------------------------------


class ModelSummary(BaseModel):
    name: str
    source: str
    kind: str
    content_hash: str | None
    family: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    vocab_size: int
    heads: int
    """Heads with stored salient mappings (in any analysis)."""
    analyses: int
    described: int
    """Heads with at least one description."""
    rated: int
    """Descriptions with at least one current rating."""
    unclear: int
    """Heads whose latest description is unclear."""


class MappingOut(BaseModel):
    token: str
    token_id: int
    logit: float


class SalientOut(BaseModel):
    rank: int
    token: str
    token_id: int
    amplification: float
    mappings: list[MappingOut]
    suppressed: list[MappingOut] = []
    """The tokens it is mapped to most negatively, lowest logit first (empty for an analysis
    stored before they were kept)."""


class RelationOut(BaseModel):
    """A relation that ``rows`` of the head's ``n_rows`` salient rows satisfy."""

    relation: str
    label: str
    rows: int
    n_rows: int
    fraction: float
    examples: list[tuple[str, str]]

    def text(self) -> str:
        """``13 of 15 rows: country → capital``."""
        return f"{self.rows} of {self.n_rows} rows: {self.label}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def summary(self) -> str:
        """``text()``, in the JSON too."""
        return self.text()


class RelationHit(RelationOut):
    """A head satisfying a relation (``Store.heads_with_relation``)."""

    model: str
    layer: int
    head: int


class OperationScoreOut(BaseModel):
    name: str
    category: str
    k: int
    n_pairs: int
    relation: float
    suppression: float
    has_pairs: bool = False
    """Its pair-by-pair outcomes at this k are stored (``Store.head_pairs``)."""


class RatingOut(BaseModel):
    id: int
    description_id: int
    rater: str
    label: str
    comment: str | None
    created_at: datetime
    is_current: bool


class DescriptionScoreOut(BaseModel):
    id: int
    description_id: int
    model: str
    layer: int
    head: int
    scorer: str
    llm_model: str
    score: float | None
    details: dict[str, Any]
    created_at: datetime


class DescriptionOut(BaseModel):
    id: int
    model: str
    layer: int
    head: int
    prompt_name: str
    prompt_sha: str
    rendered_prompt: str
    llm_model: str
    llm_host: str
    params: dict[str, Any]
    raw_response: str
    reasoning: str | None
    inputs: str | None
    pattern: str | None
    unclear: bool
    category: str | None
    tags: list[str]
    status: str
    tokens_in: int | None
    tokens_out: int | None
    latency_s: float | None
    created_at: datetime
    run_id: int | None
    analysis_id: int | None
    ratings: list[RatingOut] = []
    """Current ratings, one per rater."""
    history: list[RatingOut] = []
    """Every rating, current and replaced, oldest first."""
    hidden_ratings: int = 0
    """Current ratings by others withheld from this viewer until they rate it (blind review)."""
    scores: list[DescriptionScoreOut] = []
    """Automatic scores, by scorer and judging LLM."""


class HeadView(BaseModel):
    model: str
    layer: int
    head: int
    analysis_id: int | None
    settings_key: str | None
    settings: dict[str, Any] | None
    salient: list[SalientOut]
    operations: list[OperationScoreOut]
    """Sorted by relation score, highest first."""
    relations: list[RelationOut] = []
    """The relations its salient rows satisfy, strongest first (``describer.maps.relations``)."""
    patterns: dict[str, float] = {}
    """Its attention-pattern scores (``describer.maps.patterns``), latest pattern analysis."""
    descriptions: list[DescriptionOut]
    """Oldest first."""


class SearchHit(BaseModel):
    description_id: int
    head_id: int = Field(exclude=True)
    """The head's row id (for the page's scores; not part of the answer)."""
    model: str
    layer: int
    head: int
    category: str | None
    status: str
    text: str
    """A snippet of the matching description with matches marked ``[...]``."""
    score: float
    """Higher is better (bm25 negated on SQLite, ts_rank on PostgreSQL)."""


class RunOut(BaseModel):
    id: int
    kind: str
    model: str | None
    settings: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None
    counts: dict[str, Any]
    status: str
    error: str | None
