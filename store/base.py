"""What every part of the store builds on: sessions over one engine, the get-or-create lock,
model and head lookups, the row-locked replace of a description's ratings and scores, and the
shared helpers (naive-UTC times, operation hashes)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from describer.errors import NotFound
from store import tables as S
from store.engine import WRITE

_PG_LOCK = 7460918
"""Advisory lock that serialises get-or-create of models, analyses and operations on PostgreSQL."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def as_utc(value: datetime | None) -> datetime:
    if value is None:
        return utcnow()
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value


def operation_hash(pairs: Iterable[Sequence[str]]) -> str:
    """sha256 of an operation's pairs, as canonical JSON."""
    return hashlib.sha256(json.dumps([list(p) for p in pairs], ensure_ascii=False).encode()).hexdigest()


class StoreBase:
    """The engine and sessions of one database; ``store.api.Store`` adds the concepts on top."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._write_engine = engine.execution_options(**WRITE)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # --- sessions ------------------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on exit."""
        with Session(self._write_engine) as session, session.begin():
            yield session

    def _lock(self, session: Session) -> None:
        if self.dialect == "postgresql":
            session.execute(select(func.pg_advisory_xact_lock(_PG_LOCK)))

    def _replace_on_description(
        self, description_id: int, replace: Callable[[Session], S.Rating | S.DescriptionScore]
    ) -> int:
        """In one transaction holding the description's row lock, let ``replace`` retire the
        rows the new one supersedes and build it; store it and return its id. Concurrent writers
        on the same description queue on the lock (PostgreSQL; SQLite's BEGIN IMMEDIATE already
        serialises writers); a writer that still loses a race (a unique index, a busy database)
        retries with a short backoff."""
        for attempt in range(20):
            try:
                with self.write() as session:
                    found = session.scalar(
                        select(S.Description.id).where(S.Description.id == description_id).with_for_update()
                    )
                    if found is None:
                        raise NotFound(f"no description with id {description_id}")
                    row = replace(session)
                    session.add(row)
                    session.flush()
                    return row.id
            except (IntegrityError, OperationalError):
                if attempt == 19:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    # --- models and heads ------------------------------------------------------------------------

    def _model(self, session: Session, name: str) -> S.Model:
        model = session.scalar(select(S.Model).where(S.Model.name == name))
        if model is None:
            known = session.scalars(select(S.Model.name).order_by(S.Model.name).limit(10)).all()
            hint = f"; stored: {', '.join(known)}" if known else "; the store holds no model yet"
            raise NotFound(f"unknown model {name!r} in the store{hint}")
        return model

    @staticmethod
    def _check_head(model: S.Model, layer: int, head: int) -> None:
        if not 0 <= layer < model.n_layers:
            raise NotFound(f"layer {layer} out of range: {model.name} has layers 0..{model.n_layers - 1}")
        if not 0 <= head < model.n_heads:
            raise NotFound(f"head {head} out of range: {model.name} has heads 0..{model.n_heads - 1}")

    def _head_id(self, session: Session, model_name: str, layer: int, head: int) -> tuple[S.Model, int]:
        model = self._model(session, model_name)
        self._check_head(model, layer, head)
        head_id = session.scalar(
            select(S.Head.id).where(S.Head.model_id == model.id, S.Head.layer == layer, S.Head.index == head)
        )
        assert head_id is not None, "heads are created with their model"
        return model, head_id
