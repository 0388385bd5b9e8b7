"""The review queue: which description a rater sees next, and how far they are.

Set-based queries over the store's ORM session, like ``queries``; the queue spans every
model, or one."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from pydantic import BaseModel
from sqlalchemy import func, select

from evaluation.web.queries import model_row
from store import tables as S

if TYPE_CHECKING:
    from store import Store


class Progress(BaseModel):
    done: int
    """Descriptions this rater has rated (in the queue's scope)."""
    total: int
    """Descriptions to rate (status ok or unclear; failed ones have nothing to judge)."""
    skipped: int = 0
    """Descriptions this rater skipped and has not rated since (in the queue's scope)."""


def _queue(model_id: int | None):  # noqa: ANN202
    """Each head's current description per (prompt, LLM): the newest one. An older description
    of the same head by the same prompt and LLM is history, not something to rate again; one by
    another prompt or LLM is its own item. Failed answers have nothing to judge (a failed retry
    leaves the last good answer current)."""
    d = S.Description
    current = (
        select(func.max(d.id)).where(d.status != "failed").group_by(d.head_id, d.prompt_name, d.llm_model)
    )
    query = select(d.id).where(d.id.in_(current))
    if model_id is not None:
        query = query.join(S.Head, S.Head.id == d.head_id).where(S.Head.model_id == model_id)
    return query


def order_key(rater: str, description_id: int) -> bytes:
    """A rater's own order of the queue: a hash of (rater, description), so every rater sees a
    fair random order (not layer 0 first), the same on every visit, and two raters differ."""
    return hashlib.sha256(f"{rater}\x00{description_id}".encode()).digest()[:8]


def review_order(store: Store, rater: str, model: str | None = None) -> list[int]:
    """The queue's description ids in ``rater``'s order (rated ones included)."""
    with store.read() as session:
        model_id = model_row(session, model).id if model is not None else None
        ids = session.scalars(_queue(model_id)).all()
    return sorted(ids, key=lambda i: order_key(rater, i))


def review_step(
    store: Store, rater: str, model: str | None = None, after: int = 0, *, skipped: bool = False
) -> tuple[int | None, Progress]:
    """The next description in ``rater``'s order after ``after`` (from the start when ``after``
    is not in the queue), wrapping around, that they have not rated, nor skipped (unless
    ``skipped``: the rater asked for their skipped ones again), None when there is none; and
    their progress through the queue. One read of the queue, the rater's ratings and skips."""
    order = review_order(store, rater, model)
    with store.read() as session:
        rated = set(
            session.scalars(select(S.Rating.description_id).where(S.Rating.rater == rater).distinct())
        )
    skips = store.skipped_by(rater)
    queued = set(order)
    progress = Progress(done=len(rated & queued), total=len(order), skipped=len((skips - rated) & queued))
    passed = rated if skipped else rated | skips
    start = order.index(after) + 1 if after in queued else 0
    found = next((i for i in order[start:] + order[:start] if i not in passed), None)
    return found, progress


def review_next(
    store: Store, rater: str, model: str | None = None, after: int = 0, *, skipped: bool = False
) -> int | None:
    """``review_step``'s next description alone."""
    return review_step(store, rater, model, after, skipped=skipped)[0]


def review_progress(store: Store, rater: str, model: str | None = None) -> Progress:
    """``review_step``'s progress alone: rated, to rate and skipped (not rated since)."""
    return review_step(store, rater, model)[1]
