"""Schema versions, and opening a store.

The schema is managed by the Alembic migrations in ``store/migrations``, run programmatically.
Engines and their connection settings are ``store.engine``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from describer.errors import HeadmapsError
from store.api import Store
from store.engine import WRITE, default_url, make_engine

__all__ = ["check_revision", "code_head", "current_revision", "open_store", "upgrade_schema"]

MIGRATIONS = Path(__file__).parent / "migrations"


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def code_head() -> str:
    config = _alembic_config(None)  # type: ignore[arg-type]
    return ScriptDirectory.from_config(config).get_current_head()


def _known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(_alembic_config(None))  # type: ignore[arg-type]
    return {rev.revision for rev in script.walk_revisions()}


def current_revision(engine: Engine) -> str | None:
    """The database's revision, None for an empty database; refuses a foreign one."""
    with engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
        if revision is None:
            tables = set(inspect(conn).get_table_names()) - {"alembic_version"}
            if tables:
                raise HeadmapsError(
                    f"{_shown(engine)} is not a headmaps database (it has tables {', '.join(sorted(tables)[:5])} "
                    "but no headmaps schema version)"
                )
    return revision


def upgrade_schema(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Migrate the database up to ``revision``; returns (before, after).

    Runs in one write transaction (on PostgreSQL under an advisory lock), so two processes
    opening a new database at once create it once."""
    before = check_revision(engine, allow_old=True)
    with engine.execution_options(**WRITE).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7460917)")
        command.upgrade(_alembic_config(conn), revision)
    return before, current_revision(engine) or ""


def check_revision(engine: Engine, *, allow_old: bool) -> str | None:
    """The database's revision after checking the code can read it."""
    try:
        revision = current_revision(engine)
    except OperationalError as exc:
        raise HeadmapsError(f"cannot open {_shown(engine)}: {exc.orig}") from exc
    head = code_head()
    if revision is None or revision == head:
        return revision
    if revision not in _known_revisions():
        raise HeadmapsError(
            f"{_shown(engine)} has schema version {revision}, newer than this headmaps (which knows up to "
            f"{head}); upgrade headmaps"
        )
    if not allow_old:
        raise HeadmapsError(
            f"{_shown(engine)} has an older schema version ({revision}); run `headmaps db upgrade` first"
        )
    return revision


def _shown(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def open_store(url: str | None = None, *, upgrade: bool = True) -> Store:
    """Open (and create or upgrade) the store at ``url`` (default: ``default_url()``).

    An empty database is created at the current schema. One at an older schema is upgraded
    when ``upgrade`` is true and refused otherwise; one newer than this code, or one that is
    not a headmaps database, is refused with a ``HeadmapsError``.
    """
    engine = make_engine(url or default_url())
    try:
        revision = check_revision(engine, allow_old=upgrade)
        if revision != code_head():
            upgrade_schema(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise HeadmapsError(f"cannot open {_shown(engine)}: {exc}") from exc
    except HeadmapsError:
        engine.dispose()
        raise
    return Store(engine)
