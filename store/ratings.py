"""Human ratings of descriptions: one current rating per rater, earlier ones kept as history."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from describer.errors import InvalidValue, NotFound
from store import tables as S
from store.base import StoreBase, as_utc, utcnow
from store.labels import RATING_LABELS
from store.records import RatingIn, RatingOut


class Ratings(StoreBase):
    """``Store``'s ratings."""

    def add_rating(self, rating: RatingIn) -> int:
        """Store a rating as the rater's current one for the description (the previous current
        one stays as history); returns its id. Safe under concurrent writers."""
        if rating.label not in RATING_LABELS:
            raise InvalidValue(
                f"unknown rating label {rating.label!r}; use one of {', '.join(RATING_LABELS)}"
            )

        def replace(session: Session) -> S.Rating:
            session.execute(
                update(S.Rating)
                .where(
                    S.Rating.description_id == rating.description_id,
                    S.Rating.rater == rating.rater,
                    S.Rating.is_current,
                )
                .values(is_current=False)
            )
            return S.Rating(
                description_id=rating.description_id,
                rater=rating.rater,
                label=rating.label,
                comment=rating.comment,
                created_at=as_utc(rating.created_at),
                is_current=True,
            )

        return self._replace_on_description(rating.description_id, replace)

    def undo_rating(self, description_id: int, rater: str) -> str | None:
        """Withdraw ``rater``'s current rating of the description (an undo): it is deleted and
        their previous rating of it, if any, is current again. Returns the withdrawn label, or
        None when they had none. Under the description's row lock, like ``add_rating``."""
        r = S.Rating
        with self.write() as session:
            session.scalar(
                select(S.Description.id).where(S.Description.id == description_id).with_for_update()
            )
            mine = (r.description_id == description_id, r.rater == rater)
            current = session.scalar(select(r).where(*mine, r.is_current))
            if current is None:
                return None
            label = current.label
            session.delete(current)
            session.flush()
            previous = session.scalar(
                select(r).where(*mine).order_by(r.created_at.desc(), r.id.desc()).limit(1)
            )
            if previous is not None:
                previous.is_current = True
            return label

    def skip_description(self, description_id: int, rater: str) -> bool:
        """Remember that ``rater`` skipped the description in the review queue; True when it is
        newly skipped (skipping it again changes nothing)."""
        try:
            with self.write() as session:
                if session.get(S.Description, description_id) is None:
                    raise NotFound(f"no description with id {description_id}")
                exists = select(S.ReviewSkip.id).where(
                    S.ReviewSkip.description_id == description_id, S.ReviewSkip.rater == rater
                )
                if session.scalar(exists) is not None:
                    return False
                session.add(S.ReviewSkip(description_id=description_id, rater=rater, created_at=utcnow()))
        except IntegrityError:  # the same skip from a concurrent request won the unique index
            return False
        return True

    def skipped_by(self, rater: str) -> set[int]:
        """The descriptions ``rater`` has skipped."""
        with self.read() as session:
            return set(
                session.scalars(select(S.ReviewSkip.description_id).where(S.ReviewSkip.rater == rater))
            )

    def ratings_for(self, description_id: int, *, history: bool = False) -> list[RatingOut]:
        """Current ratings of a description (one per rater), or every rating with ``history``."""
        with self.read() as session:
            query = select(S.Rating).where(S.Rating.description_id == description_id)
            if not history:
                query = query.where(S.Rating.is_current)
            return [
                RatingOut.model_validate(r, from_attributes=True)
                for r in session.scalars(query.order_by(S.Rating.created_at, S.Rating.id))
            ]
