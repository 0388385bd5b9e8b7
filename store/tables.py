"""The database schema as SQLAlchemy 2.0 typed ORM classes.

Salient tokens and their mappings are keyed by natural composite keys (analysis, head, rank)
rather than surrogate ids, so a whole analysis is written with plain ``executemany`` inserts
and no id round trips (see ``benchmarks/bench_store.py``). Timestamps are naive UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Model(Base):
    __tablename__ = "model"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300), unique=True)
    source: Mapped[str] = mapped_column(Text)
    """Hub id, directory or GGUF path the model was loaded from."""
    kind: Mapped[str] = mapped_column(String(20))
    """alias, gguf, dir or hub."""
    content_hash: Mapped[str | None] = mapped_column(String(128))
    family: Mapped[str] = mapped_column(String(50))
    n_layers: Mapped[int]
    n_heads: Mapped[int]
    n_kv_heads: Mapped[int]
    d_model: Mapped[int]
    vocab_size: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(DateTime)

    heads: Mapped[list[Head]] = relationship(back_populates="model", order_by="(Head.layer, Head.index)")


class Head(Base):
    __tablename__ = "head"
    __table_args__ = (UniqueConstraint("model_id", "layer", "index", name="uq_head_model_layer_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model.id", ondelete="CASCADE"))
    layer: Mapped[int]
    index: Mapped[int]

    model: Mapped[Model] = relationship(back_populates="heads")


class Analysis(Base):
    """One model analysed under one set of ``AnalysisSettings`` (keyed by ``settings.key()``)."""

    __tablename__ = "analysis"
    __table_args__ = (UniqueConstraint("model_id", "settings_key", name="uq_analysis_model_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model.id", ondelete="CASCADE"))
    settings_key: Mapped[str] = mapped_column(String(64))
    settings: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(DateTime)


class SalientToken(Base):
    __tablename__ = "salient_token"

    analysis_id: Mapped[int] = mapped_column(ForeignKey("analysis.id", ondelete="CASCADE"), primary_key=True)
    head_id: Mapped[int] = mapped_column(ForeignKey("head.id", ondelete="CASCADE"), primary_key=True)
    rank: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(Text)
    token_id: Mapped[int]
    amplification: Mapped[float] = mapped_column(Float)


class MappedToken(Base):
    __tablename__ = "mapped_token"
    __table_args__ = (
        ForeignKeyConstraint(
            ["analysis_id", "head_id", "salient_rank"],
            ["salient_token.analysis_id", "salient_token.head_id", "salient_token.rank"],
            ondelete="CASCADE",
            name="fk_mapped_token_salient",
        ),
    )

    analysis_id: Mapped[int] = mapped_column(primary_key=True)
    head_id: Mapped[int] = mapped_column(primary_key=True)
    salient_rank: Mapped[int] = mapped_column(primary_key=True)
    rank: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(Text)
    token_id: Mapped[int]
    logit: Mapped[float] = mapped_column(Float)


class SuppressedToken(Base):
    """The tokens a salient source is mapped to most negatively (``rank`` 0: the lowest logit),
    beside its ``mapped_token`` rows."""

    __tablename__ = "suppressed_token"
    __table_args__ = (
        ForeignKeyConstraint(
            ["analysis_id", "head_id", "salient_rank"],
            ["salient_token.analysis_id", "salient_token.head_id", "salient_token.rank"],
            ondelete="CASCADE",
            name="fk_suppressed_token_salient",
        ),
    )

    analysis_id: Mapped[int] = mapped_column(primary_key=True)
    head_id: Mapped[int] = mapped_column(primary_key=True)
    salient_rank: Mapped[int] = mapped_column(primary_key=True)
    rank: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(Text)
    token_id: Mapped[int]
    logit: Mapped[float] = mapped_column(Float)


class HeadRelation(Base):
    """A relation that rows of a head's salient table satisfy (``describer.maps.relations``),
    computed from the salient mappings of one analysis; ``rank`` 0 is the strongest."""

    __tablename__ = "head_relation"

    analysis_id: Mapped[int] = mapped_column(ForeignKey("analysis.id", ondelete="CASCADE"), primary_key=True)
    head_id: Mapped[int] = mapped_column(ForeignKey("head.id", ondelete="CASCADE"), primary_key=True)
    relation: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)
    """The relation's key: ``copy``, ``suffix:+ed``, ``operation:country_to_capital``, …"""
    rank: Mapped[int]
    label: Mapped[str] = mapped_column(Text)
    rows: Mapped[int]
    n_rows: Mapped[int]
    fraction: Mapped[float] = mapped_column(Float)
    examples: Mapped[list[Any]]
    """Up to three [source, output] token pairs."""


class PatternAnalysis(Base):
    """One model's attention-pattern scores under one ``PatternSettings`` (keyed by its
    ``key()``): independent of the MAPS analysis settings, so one per model and pattern inputs."""

    __tablename__ = "pattern_analysis"
    __table_args__ = (UniqueConstraint("model_id", "settings_key", name="uq_pattern_analysis_model_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model.id", ondelete="CASCADE"))
    settings_key: Mapped[str] = mapped_column(String(64))
    settings: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(DateTime)


class HeadPattern(Base):
    """One head's score on one attention pattern (``describer.maps.patterns``)."""

    __tablename__ = "head_pattern"
    __table_args__ = (Index("ix_head_pattern_pattern_score", "pattern", "score"),)

    pattern_analysis_id: Mapped[int] = mapped_column(
        ForeignKey("pattern_analysis.id", ondelete="CASCADE"), primary_key=True
    )
    head_id: Mapped[int] = mapped_column(ForeignKey("head.id", ondelete="CASCADE"), primary_key=True)
    pattern: Mapped[str] = mapped_column(String(50), primary_key=True)
    score: Mapped[float] = mapped_column(Float)


class Operation(Base):
    __tablename__ = "operation"
    __table_args__ = (UniqueConstraint("name", "content_hash", name="uq_operation_name_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(50))
    pairs: Mapped[list[Any]]
    origin: Mapped[str] = mapped_column(String(20))
    """builtin or user."""
    source_file: Mapped[str | None] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    """sha256 of the pairs; two user files with one name but different pairs are two operations."""


class OperationScore(Base):
    __tablename__ = "operation_score"
    __table_args__ = (Index("ix_operation_score_head_operation", "head_id", "operation_id"),)

    analysis_id: Mapped[int] = mapped_column(ForeignKey("analysis.id", ondelete="CASCADE"), primary_key=True)
    operation_id: Mapped[int] = mapped_column(
        ForeignKey("operation.id", ondelete="CASCADE"), primary_key=True
    )
    k: Mapped[int] = mapped_column(primary_key=True)
    head_id: Mapped[int] = mapped_column(ForeignKey("head.id", ondelete="CASCADE"), primary_key=True)
    default_k: Mapped[bool] = mapped_column(Boolean)
    """k was the operation's default (no ``--k`` override)."""
    n_pairs: Mapped[int]
    relation: Mapped[float] = mapped_column(Float)
    suppression: Mapped[float] = mapped_column(Float)


class OperationPair(Base):
    """The pairs of an operation an analysis scored (those single tokens for its tokenizer), in
    the order of the ``pair_outcome`` arrays."""

    __tablename__ = "operation_pair"

    analysis_id: Mapped[int] = mapped_column(ForeignKey("analysis.id", ondelete="CASCADE"), primary_key=True)
    operation_id: Mapped[int] = mapped_column(
        ForeignKey("operation.id", ondelete="CASCADE"), primary_key=True
    )
    idx: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    """The source token's text (with its leading space)."""
    source_id: Mapped[int]
    target: Mapped[str] = mapped_column(Text)
    target_id: Mapped[int]


class PairOutcome(Base):
    """Where each pair's target ranks in one head's mapping of its source: one row per analysis,
    operation and head, the pairs as ``operation_pair`` orders them. ``mean(ranks < k)`` is the
    head's ``operation_score.relation`` at this ``k``, ``mean(suppressed_ranks < k)`` its
    suppression."""

    __tablename__ = "pair_outcome"
    __table_args__ = (Index("ix_pair_outcome_head_operation", "head_id", "operation_id"),)

    analysis_id: Mapped[int] = mapped_column(ForeignKey("analysis.id", ondelete="CASCADE"), primary_key=True)
    operation_id: Mapped[int] = mapped_column(
        ForeignKey("operation.id", ondelete="CASCADE"), primary_key=True
    )
    head_id: Mapped[int] = mapped_column(ForeignKey("head.id", ondelete="CASCADE"), primary_key=True)
    k: Mapped[int]
    """The k the ranks were counted for: exact below it, a lower bound at or above it."""
    default_k: Mapped[bool] = mapped_column(Boolean)
    ranks: Mapped[bytes] = mapped_column(LargeBinary)
    """Per pair, the tokens scoring strictly above the target (0: top); little-endian int32."""
    suppressed_ranks: Mapped[bytes] = mapped_column(LargeBinary)
    """The same for the negated mapping (tokens strictly below the target)."""


class Run(Base):
    __tablename__ = "run"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    model_id: Mapped[int | None] = mapped_column(ForeignKey("model.id", ondelete="SET NULL"))
    settings: Mapped[dict[str, Any]]
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    counts: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)


class Description(Base):
    __tablename__ = "description"
    __table_args__ = (Index("ix_description_prompt_llm", "prompt_sha", "llm_model"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    head_id: Mapped[int] = mapped_column(ForeignKey("head.id", ondelete="CASCADE"), index=True)
    analysis_id: Mapped[int | None] = mapped_column(ForeignKey("analysis.id", ondelete="SET NULL"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("run.id", ondelete="SET NULL"))
    prompt_name: Mapped[str] = mapped_column(String(200))
    prompt_sha: Mapped[str] = mapped_column(String(64))
    rendered_prompt: Mapped[str] = mapped_column(Text)
    llm_model: Mapped[str] = mapped_column(String(200))
    llm_host: Mapped[str] = mapped_column(String(300))
    params: Mapped[dict[str, Any]]
    raw_response: Mapped[str] = mapped_column(Text)
    reasoning: Mapped[str | None] = mapped_column(Text)
    inputs: Mapped[str | None] = mapped_column(Text)
    pattern: Mapped[str | None] = mapped_column(Text)
    unclear: Mapped[bool] = mapped_column(Boolean)
    category: Mapped[str | None] = mapped_column(String(50))
    tags: Mapped[list[Any]]
    status: Mapped[str] = mapped_column(String(20))
    tokens_in: Mapped[int | None]
    tokens_out: Mapped[int | None]
    latency_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class DescriptionEmbedding(Base):
    __tablename__ = "description_embedding"
    __table_args__ = (UniqueConstraint("description_id", "encoder", name="uq_description_embedding_encoder"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    description_id: Mapped[int] = mapped_column(ForeignKey("description.id", ondelete="CASCADE"))
    encoder: Mapped[str] = mapped_column(String(200))
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    """``dim`` little-endian float32 values."""


class Rating(Base):
    __tablename__ = "rating"
    __table_args__ = (
        # At most one current rating per rater and description; older ones stay as history.
        Index(
            "uq_rating_current",
            "description_id",
            "rater",
            unique=True,
            sqlite_where=text("is_current"),
            postgresql_where=text("is_current"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    description_id: Mapped[int] = mapped_column(ForeignKey("description.id", ondelete="CASCADE"), index=True)
    rater: Mapped[str] = mapped_column(String(200))
    label: Mapped[str] = mapped_column(String(50))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    is_current: Mapped[bool] = mapped_column(Boolean)


class ReviewSkip(Base):
    """A description a rater skipped in the review queue: it is not offered to them again until
    they ask for their skipped ones (the queue's "review skipped"), or rate it."""

    __tablename__ = "review_skip"
    __table_args__ = (UniqueConstraint("description_id", "rater", name="uq_review_skip"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    description_id: Mapped[int] = mapped_column(ForeignKey("description.id", ondelete="CASCADE"), index=True)
    rater: Mapped[str] = mapped_column(String(200), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Rater(Base):
    """Someone allowed to rate in the web app (``headmaps raters add``). Only hashes of the
    secrets are stored: the token a rater signs in with, and the one-time login code printed
    with it. A revoked rater keeps the row (and the name: ratings stay attributable)."""

    __tablename__ = "rater"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    login_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    login_expires: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class SiteSecret(Base):
    """Random keys the web app signs with (its session cookies), shared by every process
    serving the same store and kept across restarts."""

    __tablename__ = "site_secret"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class DescriptionScore(Base):
    """An automatic score of one description (``evaluation.scoring``), one per scorer and
    judging LLM; re-scoring replaces it. ``score`` is null when the judge's answer could not be
    used (its raw text is in ``details``)."""

    __tablename__ = "description_score"
    __table_args__ = (UniqueConstraint("description_id", "scorer", "llm_model", name="uq_description_score"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    description_id: Mapped[int] = mapped_column(ForeignKey("description.id", ondelete="CASCADE"))
    scorer: Mapped[str] = mapped_column(String(50))
    """simulation or operation_agreement."""
    llm_model: Mapped[str] = mapped_column(String(200))
    """The LLM that simulated or judged (not the one that wrote the description)."""
    score: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(DateTime)
