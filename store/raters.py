"""Raters of the web app: who may rate, their secret tokens (stored as hashes), one-time login
codes, revocation, and the site's signing keys.

A token is 32 random bytes (``secrets.token_urlsafe``), so one SHA-256 of it is as hard to
reverse as the token is to guess: no salt or slow hash is needed, and a lookup is one indexed
SELECT. Names are unique for good, revoked or not, so a rating's rater name always means one
person."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from describer.errors import HeadmapsError, InvalidValue, NotFound
from store import tables as S
from store.base import StoreBase, utcnow

TOKEN_PREFIX = "hm_"
LOGIN_VALID = timedelta(days=7)
"""How long the one-time login link printed by ``raters add`` (or ``raters link``) works."""
MAX_NAME = 200


class RaterOut(BaseModel):
    id: int
    name: str
    created_at: datetime
    revoked_at: datetime | None
    ratings: int = 0
    """Ratings stored under the rater's name (current and history)."""

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class NewRater(BaseModel):
    rater: RaterOut
    token: str
    """The secret: shown once, stored only as its hash."""
    login_code: str
    """A one-time code for ``/login?code=…`` (valid ``LOGIN_VALID``)."""


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_rater_name(name: str) -> str:
    clean = name.strip()
    if not clean:
        raise InvalidValue("a rater name must not be empty")
    if len(clean) > MAX_NAME:
        raise InvalidValue(f"a rater name has at most {MAX_NAME} characters, not {len(clean)}")
    if any(not c.isprintable() for c in clean):
        raise InvalidValue(f"a rater name must be printable text, not {clean!r}")
    return clean


def _out(row: S.Rater, ratings: int = 0) -> RaterOut:
    return RaterOut(
        id=row.id, name=row.name, created_at=row.created_at, revoked_at=row.revoked_at, ratings=ratings
    )


class Raters(StoreBase):
    """``Store``'s raters and site secrets."""

    def add_rater(self, name: str) -> NewRater:
        """A new rater with a fresh token and login code; a taken name is an error."""
        name = check_rater_name(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        code = secrets.token_urlsafe(24)
        now = utcnow()
        try:
            with self.write() as session:
                if session.scalar(select(S.Rater.id).where(S.Rater.name == name)) is not None:
                    raise HeadmapsError(f"a rater named {name!r} exists already (raters list)")
                row = S.Rater(
                    name=name,
                    token_hash=secret_hash(token),
                    login_hash=secret_hash(code),
                    login_expires=now + LOGIN_VALID,
                    created_at=now,
                    revoked_at=None,
                )
                session.add(row)
                session.flush()
                out = _out(row)
        except IntegrityError:  # a concurrent add of the same name
            raise HeadmapsError(f"a rater named {name!r} exists already (raters list)") from None
        return NewRater(rater=out, token=token, login_code=code)

    def new_login_code(self, name: str) -> str:
        """A fresh one-time login code for an active rater (the previous one stops working)."""
        code = secrets.token_urlsafe(24)
        with self.write() as session:
            row = self._rater_row(session, name)
            if row.revoked_at is not None:
                raise HeadmapsError(f"rater {row.name!r} is revoked")
            row.login_hash = secret_hash(code)
            row.login_expires = utcnow() + LOGIN_VALID
        return code

    def list_raters(self) -> list[RaterOut]:
        with self.read() as session:
            counts = dict(
                session.execute(
                    select(S.Rating.rater, func.count())
                    .where(S.Rating.rater.in_(select(S.Rater.name)))
                    .group_by(S.Rating.rater)
                ).all()
            )
            rows = session.scalars(select(S.Rater).order_by(S.Rater.name)).all()
            return [_out(r, counts.get(r.name, 0)) for r in rows]

    def revoke_rater(self, name: str) -> RaterOut:
        """Revoke a rater's token, login code and sessions at once; their ratings stay."""
        with self.write() as session:
            row = self._rater_row(session, name)
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            row.login_hash = None
            row.login_expires = None
            count = session.scalar(select(func.count()).where(S.Rating.rater == row.name)) or 0
            return _out(row, count)

    def has_raters(self) -> bool:
        """Whether any rater was ever added (revoked ones count: the site stays closed)."""
        with self.read() as session:
            return session.scalar(select(S.Rater.id).limit(1)) is not None

    def rater_by_token(self, token: str) -> RaterOut | None:
        """The active rater holding ``token``, or None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        with self.read() as session:
            row = session.scalar(select(S.Rater).where(S.Rater.token_hash == secret_hash(token)))
            return _out(row) if row is not None and row.revoked_at is None else None

    def rater_by_id(self, rater_id: int) -> RaterOut | None:
        """The rater with this id if still active, else None."""
        with self.read() as session:
            row = session.get(S.Rater, rater_id)
            return _out(row) if row is not None and row.revoked_at is None else None

    def redeem_login_code(self, code: str) -> RaterOut | None:
        """The active rater whose unexpired login code this is, spending the code; else None."""
        if not code or len(code) > 200:
            return None
        with self.write() as session:
            row = session.scalar(
                select(S.Rater).where(S.Rater.login_hash == secret_hash(code)).with_for_update()
            )
            if row is None or row.revoked_at is not None:
                return None
            expired = row.login_expires is None or row.login_expires < utcnow()
            row.login_hash = None
            row.login_expires = None
            return None if expired else _out(row)

    def site_secret(self, name: str = "session") -> str:
        """The named signing key, created at random on first use and shared from then on."""
        with self.read() as session:
            found = session.get(S.SiteSecret, name)
            if found is not None:
                return found.value
        try:
            with self.write() as session:
                session.add(S.SiteSecret(name=name, value=secrets.token_hex(32), created_at=utcnow()))
        except IntegrityError:
            pass  # another process created it first: use theirs
        with self.read() as session:
            found = session.get(S.SiteSecret, name)
            assert found is not None
            return found.value

    def _rater_row(self, session: Session, name: str) -> S.Rater:
        row = session.scalar(select(S.Rater).where(S.Rater.name == name.strip()))
        if row is None:
            known = session.scalars(select(S.Rater.name).order_by(S.Rater.name).limit(10)).all()
            hint = f"; raters: {', '.join(known)}" if known else "; no rater exists yet (raters add NAME)"
            raise NotFound(f"unknown rater {name!r}{hint}")
        return row
