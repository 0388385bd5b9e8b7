"""Engines, connection settings and schema versions.

SQLite gets WAL, foreign keys, a 30 s busy timeout and ``BEGIN IMMEDIATE`` for writes (so two
writers queue on the lock instead of failing when a reader upgrades to a writer). The schema is
managed by the Alembic migrations in ``store/migrations``, run programmatically.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from describer.errors import HeadmapsError

if TYPE_CHECKING:
    from store.api import Store

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_S = 30.0
WRITE = {"headmaps_write": True}
"""Execution options of a write connection: on SQLite it begins with ``BEGIN IMMEDIATE``."""


def default_url() -> str:
    """``HEADMAPS_DATABASE_URL``, else ``headmaps.db`` in the user's data directory."""
    env = os.environ.get("HEADMAPS_DATABASE_URL")
    if env:
        return env
    import platformdirs

    directory = Path(platformdirs.user_data_dir("headmaps"))
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'headmaps.db'}"


def normalize_url(url: str) -> str:
    """Accept a bare path as a SQLite file and ``postgresql://`` as psycopg 3."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise HeadmapsError(f"not a database URL: {url!r}") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            parent = Path(parsed.database).expanduser().parent
            if not parent.exists():
                raise HeadmapsError(f"{parsed.database}: directory {parent} does not exist")
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
        _sqlite_events(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True)
    raise HeadmapsError(f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql")


def _retry_locked(statement: Callable[[], object]) -> None:
    """Run ``statement``, retrying while the file is locked. Switching a new file to WAL while
    another process sets it up can fail with "database is locked" at once, without waiting for
    the busy timeout; this waits as long as that timeout would."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record) -> None:  # noqa: ANN001
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        _retry_locked(lambda: cursor.execute("PRAGMA journal_mode=WAL"))
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql(
            "BEGIN IMMEDIATE" if conn.get_execution_options().get("headmaps_write") else "BEGIN"
        )


# --- schema versions ----------------------------------------------------------------------------


def _alembic_config(connection: Connection):  # noqa: ANN202
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def code_head() -> str:
    from alembic.script import ScriptDirectory

    config = _alembic_config(None)  # type: ignore[arg-type]
    return ScriptDirectory.from_config(config).get_current_head()


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(None))  # type: ignore[arg-type]
    return {rev.revision for rev in script.walk_revisions()}


def current_revision(engine: Engine) -> str | None:
    """The database's revision, None for an empty database; refuses a foreign one."""
    from alembic.runtime.migration import MigrationContext

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
    from alembic import command

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
    from store.api import Store

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
