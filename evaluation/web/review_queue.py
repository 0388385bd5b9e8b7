"""The review queue: which description a rater sees next, and how far they are.

Set-based queries over the store's ORM session, like ``queries``; the queue spans every
model, or one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel
from sqlalchemy import and_, exists, func, select

from evaluation.web.queries import model_row
from store import tables as S

if TYPE_CHECKING:
    from store import Store


class Progress(BaseModel):
    done: int
    """Descriptions this rater has rated (in the queue's scope)."""
    total: int
    """Descriptions to rate (status ok or unclear; failed ones have nothing to judge)."""


def _queue(model_id: int | None):  # noqa: ANN202
    d = S.Description
    query = select(d.id).where(d.status != "failed")
    if model_id is not None:
        query = query.join(S.Head, S.Head.id == d.head_id).where(S.Head.model_id == model_id)
    return query


def review_next(store: Store, rater: str, model: str | None = None, after: int = 0) -> int | None:
    """The next description (by id, after ``after``, wrapping around) that ``rater`` has not
    rated; None when every one is rated."""
    d = S.Description
    with store.read() as session:
        model_id = model_row(session, model).id if model is not None else None
        rated = exists().where(and_(S.Rating.description_id == d.id, S.Rating.rater == rater))
        query = _queue(model_id).where(~rated).order_by(d.id).limit(1)
        found = session.scalar(query.where(d.id > after))
        if found is None and after > 0:
            found = session.scalar(query)
        return found


def review_progress(store: Store, rater: str, model: str | None = None) -> Progress:
    with store.read() as session:
        model_id = model_row(session, model).id if model is not None else None
        queue = _queue(model_id).subquery()
        total = session.scalar(select(func.count()).select_from(queue)) or 0
        done = session.scalar(
            select(func.count(func.distinct(S.Rating.description_id))).where(
                S.Rating.rater == rater, S.Rating.description_id.in_(select(queue.c.id))
            )
        )
        return Progress(done=done or 0, total=total)
