"""Attention-pattern scores (``describer.maps.patterns``): one ``pattern_analysis`` per model
and pattern settings (the inputs they were measured on), and one ``head_pattern`` row per head
and pattern. Indexed by (pattern, score), so the heads above a score are found without a scan;
deleting a model deletes both. Models stored before this revision have none until the next
``headmaps analyze`` measures them.

Revision ID: 0005_head_patterns
Revises: 0004_head_relations
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_head_patterns"
down_revision = "0004_head_relations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pattern_analysis",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("model.id", ondelete="CASCADE"), nullable=False),
        sa.Column("settings_key", sa.String(64), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("model_id", "settings_key", name="uq_pattern_analysis_model_key"),
    )
    op.create_table(
        "head_pattern",
        sa.Column(
            "pattern_analysis_id",
            sa.Integer(),
            sa.ForeignKey("pattern_analysis.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("head_id", sa.Integer(), sa.ForeignKey("head.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("pattern", sa.String(50), primary_key=True),
        sa.Column("score", sa.Float(), nullable=False),
    )
    op.create_index("ix_head_pattern_pattern_score", "head_pattern", ["pattern", "score"])


def downgrade() -> None:
    op.drop_index("ix_head_pattern_pattern_score", table_name="head_pattern")
    op.drop_table("head_pattern")
    op.drop_table("pattern_analysis")
