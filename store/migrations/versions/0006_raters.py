"""Raters and the site's signing keys: ``rater`` holds who may rate in the web app (hashes of
their token and one-time login code only), ``site_secret`` the random keys its session cookies
are signed with. Existing ratings are untouched: their rater names stay as they are.

Revision ID: 0006_raters
Revises: 0005_head_patterns
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_raters"
down_revision = "0005_head_patterns"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rater",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("login_hash", sa.String(64), nullable=True, unique=True),
        sa.Column("login_expires", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "site_secret",
        sa.Column("name", sa.String(50), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("site_secret")
    op.drop_table("rater")
