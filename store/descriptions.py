"""Descriptions of heads, their automatic scores and embeddings, and full-text search over them."""

from __future__ import annotations

import array
import math
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from describer.errors import HeadmapsError, InvalidValue, NotFound
from store import fulltext
from store import tables as S
from store.base import StoreBase, as_utc
from store.head_search import HeadFilters, TokenQuery
from store.labels import CATEGORIES, RATING_LABELS
from store.records import (
    DescriptionIn,
    DescriptionOut,
    DescriptionScoreIn,
    DescriptionScoreOut,
    RatingOut,
    SearchHit,
)


def score_out(row: S.DescriptionScore, model: str, layer: int, head: int) -> DescriptionScoreOut:
    fields = {f: getattr(row, f) for f in DescriptionScoreOut.model_fields if hasattr(row, f)}
    return DescriptionScoreOut(**fields, model=model, layer=layer, head=head)


def descriptions_out(
    session: Session, rows: Sequence[S.Description], model: str, layer: int, head: int
) -> list[DescriptionOut]:
    """``rows`` (descriptions of one head) with their ratings, rating history and scores."""
    ratings: dict[int, list[RatingOut]] = {}
    if rows:
        for r in session.scalars(
            select(S.Rating)
            .where(S.Rating.description_id.in_([d.id for d in rows]))
            .order_by(S.Rating.created_at, S.Rating.id)
        ):
            ratings.setdefault(r.description_id, []).append(RatingOut.model_validate(r, from_attributes=True))
    scores: dict[int, list[DescriptionScoreOut]] = {}
    if rows:
        for sc in session.scalars(
            select(S.DescriptionScore)
            .where(S.DescriptionScore.description_id.in_([d.id for d in rows]))
            .order_by(S.DescriptionScore.scorer, S.DescriptionScore.llm_model)
        ):
            scores.setdefault(sc.description_id, []).append(score_out(sc, model, layer, head))
    out = []
    for d in rows:
        history = ratings.get(d.id, [])
        fields = {f: getattr(d, f) for f in DescriptionOut.model_fields if hasattr(d, f) and f != "scores"}
        fields.update(model=model, layer=layer, head=head)
        out.append(
            DescriptionOut(
                **fields,
                ratings=sorted((r for r in history if r.is_current), key=lambda r: r.rater),
                history=history,
                scores=scores.get(d.id, []),
            )
        )
    return out


class Descriptions(StoreBase):
    """``Store``'s descriptions, description scores, embeddings and search."""

    # --- descriptions ------------------------------------------------------------------------------

    def add_description(self, description: DescriptionIn) -> int:
        """Store one description; returns its id."""
        d = description
        if d.category is not None and d.category not in CATEGORIES:
            raise InvalidValue(f"unknown category {d.category!r}; use one of {', '.join(CATEGORIES)}")
        with self.write() as session:
            _, head_id = self._head_id(session, d.model, d.layer, d.head)
            if d.run_id is not None and session.get(S.Run, d.run_id) is None:
                raise HeadmapsError(f"no run with id {d.run_id}")
            if d.analysis_id is not None and session.get(S.Analysis, d.analysis_id) is None:
                raise NotFound(f"no analysis with id {d.analysis_id}")
            row = S.Description(
                **d.model_dump(exclude={"model", "layer", "head", "created_at"}),
                head_id=head_id,
                created_at=as_utc(d.created_at),
            )
            session.add(row)
            session.flush()
            return row.id

    def get_description(self, description_id: int) -> DescriptionOut:
        with self.read() as session:
            row = session.get(S.Description, description_id)
            if row is None:
                raise NotFound(f"no description with id {description_id}")
            head = session.get(S.Head, row.head_id)
            model = session.get(S.Model, head.model_id)
            return descriptions_out(session, [row], model.name, head.layer, head.index)[0]

    def _description_query(self, session: Session, model: str, prompt_sha: str | None, llm_model: str | None):  # noqa: ANN202
        model_row = self._model(session, model)
        query = (
            select(S.Head.layer, S.Head.index, S.Description.status, S.Description.id)
            .join(S.Head, S.Head.id == S.Description.head_id)
            .where(S.Head.model_id == model_row.id)
        )
        if prompt_sha is not None:
            query = query.where(S.Description.prompt_sha == prompt_sha)
        if llm_model is not None:
            query = query.where(S.Description.llm_model == llm_model)
        return model_row, query

    def described_heads(
        self,
        model: str,
        prompt_sha: str | None = None,
        llm_model: str | None = None,
        *,
        include_failed: bool = False,
    ) -> set[tuple[int, int]]:
        """(layer, head) of heads with a description by this prompt and LLM (failed ones only
        with ``include_failed``, so a resumed run retries them)."""
        with self.read() as session:
            _, query = self._description_query(session, model, prompt_sha, llm_model)
            return {
                (layer, head)
                for layer, head, status, _ in session.execute(query)
                if include_failed or status != "failed"
            }

    def description_counts(
        self, model: str, prompt_sha: str | None = None, llm_model: str | None = None
    ) -> dict[str, int]:
        """``heads`` (all heads of the model) and, by this prompt and LLM, heads ``described``
        (ok or unclear), ``unclear`` and ``failed`` (judged by each head's latest description)."""
        with self.read() as session:
            model_row, query = self._description_query(session, model, prompt_sha, llm_model)
            latest: dict[tuple[int, int], tuple[int, str]] = {}
            for layer, head, status, did in session.execute(query):
                if (layer, head) not in latest or did > latest[(layer, head)][0]:
                    latest[(layer, head)] = (did, status)
            statuses = [s for _, s in latest.values()]
            return {
                "heads": model_row.n_layers * model_row.n_heads,
                "described": sum(s != "failed" for s in statuses),
                "unclear": statuses.count("unclear"),
                "failed": statuses.count("failed"),
            }

    # --- automatic description scores ----------------------------------------------------------------

    def add_description_score(self, score: DescriptionScoreIn) -> int:
        """Store a description's score by ``scorer`` and ``llm_model``, replacing an earlier one
        with the same three; returns its id."""
        if score.score is not None and not math.isfinite(score.score):
            raise HeadmapsError(f"a description score must be a finite number or None, not {score.score}")

        def replace(session: Session) -> S.DescriptionScore:
            session.execute(
                delete(S.DescriptionScore).where(
                    S.DescriptionScore.description_id == score.description_id,
                    S.DescriptionScore.scorer == score.scorer,
                    S.DescriptionScore.llm_model == score.llm_model,
                )
            )
            return S.DescriptionScore(
                **score.model_dump(exclude={"created_at"}), created_at=as_utc(score.created_at)
            )

        return self._replace_on_description(score.description_id, replace)

    def description_scores(
        self, model: str | None = None, scorer: str | None = None, llm_model: str | None = None
    ) -> list[DescriptionScoreOut]:
        """Stored description scores (of one model, scorer or judging LLM), in model, layer, head,
        description and scorer order."""
        with self.read() as session:
            query = (
                select(S.DescriptionScore, S.Model.name, S.Head.layer, S.Head.index)
                .join(S.Description, S.Description.id == S.DescriptionScore.description_id)
                .join(S.Head, S.Head.id == S.Description.head_id)
                .join(S.Model, S.Model.id == S.Head.model_id)
            )
            if model is not None:
                query = query.where(S.Model.id == self._model(session, model).id)
            if scorer is not None:
                query = query.where(S.DescriptionScore.scorer == scorer)
            if llm_model is not None:
                query = query.where(S.DescriptionScore.llm_model == llm_model)
            query = query.order_by(
                S.Model.name,
                S.Head.layer,
                S.Head.index,
                S.DescriptionScore.description_id,
                S.DescriptionScore.scorer,
                S.DescriptionScore.llm_model,
            )
            return [score_out(row, name, layer, head) for row, name, layer, head in session.execute(query)]

    # --- embeddings ----------------------------------------------------------------------------------

    def add_embedding(self, description_id: int, encoder: str, vector: bytes | Sequence[float]) -> int:
        """Store (or replace) a description's embedding by ``encoder``; float32 little-endian."""
        if not isinstance(vector, bytes | bytearray):
            vector = array.array("f", vector).tobytes()
        if len(vector) % 4:
            raise HeadmapsError("an embedding must be float32 values (a multiple of 4 bytes)")
        with self.write() as session:
            if session.get(S.Description, description_id) is None:
                raise NotFound(f"no description with id {description_id}")
            session.execute(
                delete(S.DescriptionEmbedding).where(
                    S.DescriptionEmbedding.description_id == description_id,
                    S.DescriptionEmbedding.encoder == encoder,
                )
            )
            row = S.DescriptionEmbedding(
                description_id=description_id, encoder=encoder, dim=len(vector) // 4, vector=bytes(vector)
            )
            session.add(row)
            session.flush()
            return row.id

    def embeddings(self, encoder: str, model: str | None = None) -> list[tuple[int, bytes]]:
        """(description id, float32 vector bytes) of every description embedded by ``encoder``."""
        with self.read() as session:
            query = select(S.DescriptionEmbedding.description_id, S.DescriptionEmbedding.vector).where(
                S.DescriptionEmbedding.encoder == encoder
            )
            if model is not None:
                model_row = self._model(session, model)
                query = (
                    query.join(S.Description, S.Description.id == S.DescriptionEmbedding.description_id)
                    .join(S.Head, S.Head.id == S.Description.head_id)
                    .where(S.Head.model_id == model_row.id)
                )
            return [
                (i, bytes(v))
                for i, v in session.execute(query.order_by(S.DescriptionEmbedding.description_id))
            ]

    # --- search ------------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        model: str | None = None,
        category: str | None = None,
        layer_min: int | None = None,
        layer_max: int | None = None,
        min_scores: dict[str, float] | None = None,
        label: str | None = None,
        unclear: bool | None = None,
        limit: int = 20,
        relation: str | None = None,
        min_fraction: float = 0.0,
        min_patterns: dict[str, float] | None = None,
        tokens: TokenQuery | None = None,
    ) -> list[SearchHit]:
        """Full-text search over description text (reasoning, inputs, pattern), best first.

        Every word of ``query`` must match (stemmed); ``min_scores`` keeps heads whose relation
        score of each named operation is at least the value; ``min_patterns`` keeps heads whose
        score of each named attention pattern (``previous_token``, ``induction``, …) in their
        model's latest pattern analysis is at least the value; ``label`` keeps descriptions with
        a current rating of that label; ``relation`` (a key, or a prefix ending in ``:``) keeps
        heads with that relation evidence in at least ``min_fraction`` of their salient rows;
        ``tokens`` keeps heads with a salient row mapping those tokens."""
        filters = HeadFilters(
            model=model,
            category=category,
            layer_min=layer_min,
            layer_max=layer_max,
            min_scores=min_scores or {},
            min_patterns=min_patterns or {},
            label=label,
            unclear=unclear,
            relation=relation,
            min_fraction=min_fraction,
            tokens=tokens or TokenQuery(),
        )
        return self.search_filtered(query, filters, limit=limit)

    def search_filtered(self, query: str, filters: HeadFilters, *, limit: int = 20) -> list[SearchHit]:
        """``search`` with its filters as one ``HeadFilters``."""
        if filters.label is not None and filters.label not in RATING_LABELS:
            raise InvalidValue(
                f"unknown rating label {filters.label!r}; use one of {', '.join(RATING_LABELS)}"
            )
        if filters.category is not None and filters.category not in CATEGORIES:
            raise InvalidValue(f"unknown category {filters.category!r}; use one of {', '.join(CATEGORIES)}")
        with self.read() as session:
            if filters.model is not None:
                self._model(session, filters.model)  # an unknown model is an error, not an empty result
            return fulltext.search(session, query, filters, limit)
