"""Ratings through the web: the posted rating's checks (its description is the URL's head, the
label is known, fields within bounds), who it is stored as (``auth.Guard.writer``), and blind
review: other raters' ratings of a description stay hidden from a viewer until they rate it."""

from __future__ import annotations

from fastapi import Request
from pydantic import BaseModel, Field

from evaluation.web import queries
from evaluation.web.auth import guard_of
from evaluation.web.common import WebError, head_name, store_of
from store.labels import RATING_LABELS
from store.records import DescriptionOut, HeadView, RatingIn, RatingOut

MAX_COMMENT = 10_000


class RatingPost(BaseModel):
    description_id: int
    rater: str | None = Field(default=None, max_length=200)
    """Who rates: once raters exist, the signed-in rater (a different name is refused with
    403; it may be left out). On a local server without raters, the local user's name."""
    label: str = Field(max_length=50)
    """One of the rating labels (``GET /api/labels``)."""
    comment: str | None = Field(default=None, max_length=MAX_COMMENT)


def rate(
    request: Request, rating: RatingPost, csrf: str | None, head: tuple[str, int, int] | None = None
) -> RatingOut:
    """Store ``rating`` as the rater this request may write as; with ``head`` (model, layer,
    head from the URL), only a description of that head."""
    guard = guard_of(request)
    rater = guard.writer(request, rating.rater, csrf)
    if rating.label not in RATING_LABELS:
        raise WebError(422, f"unknown rating label {rating.label!r}; use one of {', '.join(RATING_LABELS)}")
    store = store_of(request)
    if head is not None:
        at = queries.description_location(store, rating.description_id)
        if (at["model"], at["layer"], at["head"]) != head:
            model, layer, index = head
            raise WebError(
                422,
                f"description #{rating.description_id} describes {at['model']} "
                f"{head_name(at['layer'], at['head'])}, not {model} {head_name(layer, index)}",
            )
    comment = (rating.comment or "").strip() or None
    new_id = store.add_rating(
        RatingIn(description_id=rating.description_id, rater=rater, label=rating.label, comment=comment)
    )
    current = store.ratings_for(rating.description_id)
    return next(r for r in current if r.id == new_id)


def has_rated(description: DescriptionOut, viewer: str | None) -> bool:
    return viewer is not None and any(r.rater == viewer for r in description.history or description.ratings)


def blind(description: DescriptionOut, viewer: str | None) -> DescriptionOut:
    """The description as ``viewer`` may see it: with every rating once they have rated it,
    else without other raters' ratings (their number kept in ``hidden_ratings``)."""
    if has_rated(description, viewer) or not description.ratings:
        return description
    return description.model_copy(
        update={"ratings": [], "history": [], "hidden_ratings": len(description.ratings)}
    )


def blind_head(view: HeadView, viewer: str | None) -> HeadView:
    return view.model_copy(update={"descriptions": [blind(d, viewer) for d in view.descriptions]})


def viewer_name(request: Request) -> str | None:
    return guard_of(request).viewer(request).name
