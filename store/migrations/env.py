"""Alembic environment: always run programmatically with a connection from ``store.db``."""

from __future__ import annotations

from alembic import context

from store.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover
    raise RuntimeError("run migrations through store.db (headmaps db upgrade), not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
context.run_migrations()
