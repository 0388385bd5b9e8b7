"""Relation evidence of each head (``describer.maps.relations``): one row per analysis, head
and relation key that enough rows of the head's salient table satisfy ("13 of 15 rows:
country → capital"). Indexed by relation, so the heads satisfying one are found without a
scan; deleting an analysis or a head deletes its rows. Analyses stored before this revision
have none until ``describer.analyze.backfill_relations`` computes them from their salient
mappings.

Revision ID: 0004_head_relations
Revises: 0003_description_score
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_head_relations"
down_revision = "0003_description_score"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "head_relation",
        sa.Column(
            "analysis_id",
            sa.Integer(),
            sa.ForeignKey("analysis.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("head_id", sa.Integer(), sa.ForeignKey("head.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("relation", sa.String(200), primary_key=True),
        # The fact's place in the head's list (0: the strongest), which orders facts of equal fraction.
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("fraction", sa.Float(), nullable=False),
        sa.Column("examples", sa.JSON(), nullable=False),
    )
    op.create_index("ix_head_relation_relation", "head_relation", ["relation"])


def downgrade() -> None:
    op.drop_index("ix_head_relation_relation", table_name="head_relation")
    op.drop_table("head_relation")
