"""Automatic scores of descriptions (``evaluation.scoring``): one row per description, scorer
and judging LLM. The unique key leads with ``description_id``, so it also serves lookups of a
description's scores; deleting a description deletes its scores.

Revision ID: 0003_description_score
Revises: 0002_description_search
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_description_score"
down_revision = "0002_description_search"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "description_score",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "description_id",
            sa.Integer(),
            sa.ForeignKey("description.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("scorer", sa.String(50), nullable=False),
        sa.Column("llm_model", sa.String(200), nullable=False),
        # Null when the judge's answer could not be parsed; the raw text is kept in details.
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("description_id", "scorer", "llm_model", name="uq_description_score"),
    )


def downgrade() -> None:
    op.drop_table("description_score")
