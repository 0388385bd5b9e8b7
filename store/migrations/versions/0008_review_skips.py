"""Skips remembered: ``review_skip`` holds the descriptions each rater skipped in the review
queue, so a skipped description is not offered again on the next visit (until the rater asks
for their skipped ones). Nothing existing changes.

Revision ID: 0008_review_skips
Revises: 0007_evidence
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_review_skips"
down_revision = "0007_evidence"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_skip",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "description_id",
            sa.Integer(),
            sa.ForeignKey("description.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("rater", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("description_id", "rater", name="uq_review_skip"),
    )
    op.create_index("ix_review_skip_description_id", "review_skip", ["description_id"])
    op.create_index("ix_review_skip_rater", "review_skip", ["rater"])


def downgrade() -> None:
    op.drop_index("ix_review_skip_rater", table_name="review_skip")
    op.drop_index("ix_review_skip_description_id", table_name="review_skip")
    op.drop_table("review_skip")
