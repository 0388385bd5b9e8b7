"""More evidence per head: ``suppressed_token`` holds the tokens each salient source is mapped
to most negatively (beside ``mapped_token``); ``operation_pair`` the pairs an analysis scored for
an operation, and ``pair_outcome`` per head where each pair's target ranked (little-endian
int32 arrays in the pairs' order), so a head's operation score can be shown pair by pair.
Analyses stored before this revision have neither until they are computed again.

Revision ID: 0007_evidence
Revises: 0006_raters
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_evidence"
down_revision = "0006_raters"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "suppressed_token",
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
            name="fk_suppressed_token_salient",
        ),
    )
    op.create_table(
        "operation_pair",
        sa.Column(
            "analysis_id", sa.Integer(), sa.ForeignKey("analysis.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column(
            "operation_id", sa.Integer(), sa.ForeignKey("operation.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("idx", sa.Integer(), primary_key=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
    )
    op.create_table(
        "pair_outcome",
        sa.Column(
            "analysis_id", sa.Integer(), sa.ForeignKey("analysis.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column(
            "operation_id", sa.Integer(), sa.ForeignKey("operation.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("head_id", sa.Integer(), sa.ForeignKey("head.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("default_k", sa.Boolean(), nullable=False),
        sa.Column("ranks", sa.LargeBinary(), nullable=False),
        sa.Column("suppressed_ranks", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_pair_outcome_head_operation", "pair_outcome", ["head_id", "operation_id"])


def downgrade() -> None:
    op.drop_index("ix_pair_outcome_head_operation", table_name="pair_outcome")
    op.drop_table("pair_outcome")
    op.drop_table("operation_pair")
    op.drop_table("suppressed_token")
