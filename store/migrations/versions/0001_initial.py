"""The first schema: models, heads, analyses with salient mappings, operations and their
scores, runs, descriptions, embeddings and ratings.

Revision ID: 0001_initial
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(300), nullable=False, unique=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("content_hash", sa.String(128), nullable=True),
        sa.Column("family", sa.String(50), nullable=False),
        sa.Column("n_layers", sa.Integer(), nullable=False),
        sa.Column("n_heads", sa.Integer(), nullable=False),
        sa.Column("n_kv_heads", sa.Integer(), nullable=False),
        sa.Column("d_model", sa.Integer(), nullable=False),
        sa.Column("vocab_size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "head",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("model.id", ondelete="CASCADE"), nullable=False),
        sa.Column("layer", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.UniqueConstraint("model_id", "layer", "index", name="uq_head_model_layer_index"),
    )
    op.create_table(
        "analysis",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("model.id", ondelete="CASCADE"), nullable=False),
        sa.Column("settings_key", sa.String(64), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("model_id", "settings_key", name="uq_analysis_model_key"),
    )
    # Natural composite keys: a whole analysis is written by executemany without id round trips.
    op.create_table(
        "salient_token",
        sa.Column(
            "analysis_id", sa.Integer(), sa.ForeignKey("analysis.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("head_id", sa.Integer(), sa.ForeignKey("head.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("rank", sa.Integer(), primary_key=True),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("amplification", sa.Float(), nullable=False),
    )
    op.create_table(
        "mapped_token",
        sa.Column("analysis_id", sa.Integer(), primary_key=True),
        sa.Column("head_id", sa.Integer(), primary_key=True),
        sa.Column("salient_rank", sa.Integer(), primary_key=True),
        sa.Column("rank", sa.Integer(), primary_key=True),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("logit", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["analysis_id", "head_id", "salient_rank"],
            ["salient_token.analysis_id", "salient_token.head_id", "salient_token.rank"],
            ondelete="CASCADE",
            name="fk_mapped_token_salient",
        ),
    )
    op.create_table(
        "operation",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("category", sa.String(50), nullable=False),
        sa.Column("pairs", sa.JSON(), nullable=False),
        sa.Column("origin", sa.String(20), nullable=False),
        sa.Column("source_file", sa.Text(), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("name", "content_hash", name="uq_operation_name_hash"),
    )
    op.create_table(
        "operation_score",
        sa.Column(
            "analysis_id", sa.Integer(), sa.ForeignKey("analysis.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column(
            "operation_id", sa.Integer(), sa.ForeignKey("operation.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("k", sa.Integer(), primary_key=True),
        sa.Column("head_id", sa.Integer(), sa.ForeignKey("head.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("default_k", sa.Boolean(), nullable=False),
        sa.Column("n_pairs", sa.Integer(), nullable=False),
        sa.Column("relation", sa.Float(), nullable=False),
        sa.Column("suppression", sa.Float(), nullable=False),
    )
    op.create_index("ix_operation_score_head_operation", "operation_score", ["head_id", "operation_id"])
    op.create_table(
        "run",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("model.id", ondelete="SET NULL"), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_table(
        "description",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("head_id", sa.Integer(), sa.ForeignKey("head.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "analysis_id", sa.Integer(), sa.ForeignKey("analysis.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("run.id", ondelete="SET NULL"), nullable=True),
        sa.Column("prompt_name", sa.String(200), nullable=False),
        sa.Column("prompt_sha", sa.String(64), nullable=False),
        sa.Column("rendered_prompt", sa.Text(), nullable=False),
        sa.Column("llm_model", sa.String(200), nullable=False),
        sa.Column("llm_host", sa.String(300), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("raw_response", sa.Text(), nullable=False),
        sa.Column("reasoning", sa.Text(), nullable=True),
        sa.Column("inputs", sa.Text(), nullable=True),
        sa.Column("pattern", sa.Text(), nullable=True),
        sa.Column("unclear", sa.Boolean(), nullable=False),
        sa.Column("category", sa.String(50), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("tokens_in", sa.Integer(), nullable=True),
        sa.Column("tokens_out", sa.Integer(), nullable=True),
        sa.Column("latency_s", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_description_head_id", "description", ["head_id"])
    op.create_index("ix_description_prompt_llm", "description", ["prompt_sha", "llm_model"])
    op.create_table(
        "description_embedding",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "description_id",
            sa.Integer(),
            sa.ForeignKey("description.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("encoder", sa.String(200), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.UniqueConstraint("description_id", "encoder", name="uq_description_embedding_encoder"),
    )
    op.create_table(
        "rating",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "description_id",
            sa.Integer(),
            sa.ForeignKey("description.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("rater", sa.String(200), nullable=False),
        sa.Column("label", sa.String(50), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_rating_description_id", "rating", ["description_id"])
    # One current rating per rater and description; replaced ones stay as history.
    op.create_index(
        "uq_rating_current",
        "rating",
        ["description_id", "rater"],
        unique=True,
        sqlite_where=sa.text("is_current"),
        postgresql_where=sa.text("is_current"),
    )


def downgrade() -> None:
    for table in (
        "rating",
        "description_embedding",
        "description",
        "run",
        "operation_score",
        "operation",
        "mapped_token",
        "salient_token",
        "analysis",
        "head",
        "model",
    ):
        op.drop_table(table)
