"""Engines and connection settings.

SQLite gets WAL, foreign keys, a 30 s busy timeout and ``BEGIN IMMEDIATE`` for writes (so two
writers queue on the lock instead of failing when a reader upgrades to a writer). PostgreSQL
gets psycopg 3 and pre-pinged pooled connections.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import platformdirs
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError

from describer.errors import HeadmapsError

BUSY_TIMEOUT_S = 30.0
WRITE = {"headmaps_write": True}
"""Execution options of a write connection: on SQLite it begins with ``BEGIN IMMEDIATE``."""


def default_url() -> str:
    """``HEADMAPS_DATABASE_URL``, else ``headmaps.db`` in the user's data directory."""
    env = os.environ.get("HEADMAPS_DATABASE_URL")
    if env:
        return env
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
