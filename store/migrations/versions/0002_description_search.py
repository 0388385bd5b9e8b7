"""Full-text search over description text (reasoning, inputs, pattern).

SQLite: an external-content FTS5 table kept in sync by triggers, filled from the rows already
there. PostgreSQL: a GIN index on the same tsvector expression that ``Store.search`` queries.

Revision ID: 0002_description_search
Revises: 0001_initial
"""

from __future__ import annotations

from alembic import op

revision = "0002_description_search"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

PG_VECTOR = (
    "to_tsvector('english', coalesce(reasoning, '') || ' ' || coalesce(inputs, '') || ' ' || "
    "coalesce(pattern, ''))"
)
"""Must match ``store.fulltext.PG_VECTOR`` for the index to be used."""

SQLITE_TRIGGERS = """
CREATE TRIGGER description_fts_insert AFTER INSERT ON description BEGIN
  INSERT INTO description_fts(rowid, reasoning, inputs, pattern)
  VALUES (new.id, new.reasoning, new.inputs, new.pattern);
END;
CREATE TRIGGER description_fts_delete AFTER DELETE ON description BEGIN
  INSERT INTO description_fts(description_fts, rowid, reasoning, inputs, pattern)
  VALUES ('delete', old.id, old.reasoning, old.inputs, old.pattern);
END;
CREATE TRIGGER description_fts_update AFTER UPDATE OF reasoning, inputs, pattern ON description BEGIN
  INSERT INTO description_fts(description_fts, rowid, reasoning, inputs, pattern)
  VALUES ('delete', old.id, old.reasoning, old.inputs, old.pattern);
  INSERT INTO description_fts(rowid, reasoning, inputs, pattern)
  VALUES (new.id, new.reasoning, new.inputs, new.pattern);
END;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE description_fts USING fts5(reasoning, inputs, pattern, "
            "content='description', content_rowid='id', tokenize='porter unicode61')"
        )
        for statement in SQLITE_TRIGGERS.split("END;")[:-1]:
            op.execute(statement + "END;")
        op.execute("INSERT INTO description_fts(description_fts) VALUES ('rebuild')")
    else:
        op.execute(f"CREATE INDEX ix_description_fts ON description USING GIN ({PG_VECTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER description_fts_{name}")
        op.execute("DROP TABLE description_fts")
    else:
        op.execute("DROP INDEX ix_description_fts")
