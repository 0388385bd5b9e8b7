"""``Store``: the public API over one database. Pydantic models in and out; every write is
validated first and runs in one transaction."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from describer.errors import HeadmapsError
from store import tables as S
from store.db import WRITE
from store.labels import CATEGORIES, RATING_LABELS, RUN_KINDS, RUN_STATUSES
from store.records import (
    AnalysisIn,
    DescriptionIn,
    DescriptionOut,
    DescriptionScoreIn,
    DescriptionScoreOut,
    HeadView,
    MappingOut,
    ModelInfo,
    ModelSummary,
    OperationIn,
    OperationScoreOut,
    RatingIn,
    RatingOut,
    RunOut,
    SalientOut,
    SearchHit,
)

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


class Store:
    """One headmaps database. Create with ``store.open_store(url)``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._write_engine = engine.execution_options(**WRITE)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    # --- models and heads ------------------------------------------------------------------------

    def _model(self, session: Session, name: str) -> S.Model:
        model = session.scalar(select(S.Model).where(S.Model.name == name))
        if model is None:
            known = session.scalars(select(S.Model.name).order_by(S.Model.name).limit(10)).all()
            hint = f"; stored: {', '.join(known)}" if known else "; the store holds no model yet"
            raise HeadmapsError(f"unknown model {name!r} in the store{hint}")
        return model

    @staticmethod
    def _check_head(model: S.Model, layer: int, head: int) -> None:
        if not 0 <= layer < model.n_layers:
            raise HeadmapsError(
                f"layer {layer} out of range: {model.name} has layers 0..{model.n_layers - 1}"
            )
        if not 0 <= head < model.n_heads:
            raise HeadmapsError(f"head {head} out of range: {model.name} has heads 0..{model.n_heads - 1}")

    def _head_id(self, session: Session, model_name: str, layer: int, head: int) -> tuple[S.Model, int]:
        model = self._model(session, model_name)
        self._check_head(model, layer, head)
        head_id = session.scalar(
            select(S.Head.id).where(S.Head.model_id == model.id, S.Head.layer == layer, S.Head.index == head)
        )
        assert head_id is not None, "heads are created with their model"
        return model, head_id

    def _ensure_model(self, session: Session, info: ModelInfo) -> S.Model:
        model = session.scalar(select(S.Model).where(S.Model.name == info.name))
        if model is not None:
            shape = ("n_layers", "n_heads", "n_kv_heads", "d_model", "vocab_size")
            if any(getattr(model, f) != getattr(info, f) for f in shape) or (
                model.content_hash and info.content_hash and model.content_hash != info.content_hash
            ):
                raise HeadmapsError(
                    f"a different model named {info.name!r} is already stored (other weights or shape); "
                    "give this one another name or use another database"
                )
            return model
        model = S.Model(**info.model_dump(), created_at=utcnow())
        session.add(model)
        session.flush()
        session.execute(
            insert(S.Head),
            [
                {"model_id": model.id, "layer": layer, "index": head}
                for layer in range(info.n_layers)
                for head in range(info.n_heads)
            ],
        )
        return model

    def register_model(self, info: ModelInfo) -> None:
        """Store a model and its heads (a no-op when the same model is stored already)."""
        with self.write() as session:
            self._lock(session)
            self._ensure_model(session, info)

    def list_models(self) -> list[ModelSummary]:
        with self.read() as session:
            names = session.scalars(select(S.Model.name).order_by(S.Model.name)).all()
            return [self._summary(session, self._model(session, n)) for n in names]

    def get_model(self, name: str) -> ModelSummary:
        with self.read() as session:
            return self._summary(session, self._model(session, name))

    def _summary(self, session: Session, model: S.Model) -> ModelSummary:
        heads = select(S.Head.id).where(S.Head.model_id == model.id).scalar_subquery()
        analysed = session.scalar(
            select(func.count(func.distinct(S.SalientToken.head_id))).where(S.SalientToken.head_id.in_(heads))
        )
        analyses = session.scalar(select(func.count()).where(S.Analysis.model_id == model.id))
        described = session.scalar(
            select(func.count(func.distinct(S.Description.head_id))).where(S.Description.head_id.in_(heads))
        )
        rated = session.scalar(
            select(func.count(func.distinct(S.Rating.description_id)))
            .join(S.Description, S.Description.id == S.Rating.description_id)
            .where(S.Description.head_id.in_(heads), S.Rating.is_current)
        )
        latest = (
            select(func.max(S.Description.id))
            .where(S.Description.head_id.in_(heads))
            .group_by(S.Description.head_id)
            .scalar_subquery()
        )
        unclear = session.scalar(
            select(func.count()).where(S.Description.id.in_(latest), S.Description.unclear)
        )
        fields = {f: getattr(model, f) for f in ModelInfo.model_fields}
        return ModelSummary(
            **fields,
            heads=analysed or 0,
            analyses=analyses or 0,
            described=described or 0,
            rated=rated or 0,
            unclear=unclear or 0,
        )

    # --- analyses --------------------------------------------------------------------------------

    def save_analysis(
        self,
        info: ModelInfo,
        result: AnalysisIn | object,
        *,
        settings_key: str,
        operations: Sequence[OperationIn] = (),
        default_k: bool = True,
    ) -> int:
        """Store one model's analysis in one transaction; returns the analysis id.

        Idempotent: the same model and ``settings_key`` keep one analysis; salient mappings of
        heads already stored and scores of operations already stored (same pairs and k) are
        kept, anything missing is added. ``result`` is an ``AnalysisIn`` or anything with the
        same fields (``describer.maps.jobs.AnalysisResult``). ``operations`` gives the definitions
        (pairs, origin) of the scored operations; one without a definition is stored by name.
        """
        from store.writes import save_analysis

        data = (
            result
            if isinstance(result, AnalysisIn)
            else AnalysisIn.model_validate(result, from_attributes=True)
        )
        return save_analysis(self, info, data, settings_key, operations, default_k)

    def _analysis(self, session: Session, model: S.Model, settings_key: str | None) -> S.Analysis | None:
        query = select(S.Analysis).where(S.Analysis.model_id == model.id)
        if settings_key is not None:
            query = query.where(S.Analysis.settings_key == settings_key)
        return session.scalar(query.order_by(S.Analysis.id.desc()).limit(1))

    def has_analysis(self, model: str, settings_key: str) -> bool:
        """True when the salient mappings of ``model`` under ``settings_key`` are stored."""
        with self.read() as session:
            model_row = session.scalar(select(S.Model).where(S.Model.name == model))
            analysis = model_row and self._analysis(session, model_row, settings_key)
            if not analysis:
                return False
            return (
                session.scalar(select(func.count()).where(S.SalientToken.analysis_id == analysis.id).limit(1))
                > 0
            )

    def stored_operation_keys(
        self, model: str, settings_key: str, k: int | None = None
    ) -> set[tuple[str, str]]:
        """(name, pairs hash) of operations scored under ``settings_key``: with their default k
        when ``k`` is None, else with that k."""
        with self.read() as session:
            model_row = session.scalar(select(S.Model).where(S.Model.name == model))
            analysis = model_row and self._analysis(session, model_row, settings_key)
            if not analysis:
                return set()
            query = (
                select(S.Operation.name, S.Operation.content_hash)
                .join(S.OperationScore, S.OperationScore.operation_id == S.Operation.id)
                .where(S.OperationScore.analysis_id == analysis.id)
                .where(S.OperationScore.default_k if k is None else S.OperationScore.k == k)
                .distinct()
            )
            return {(name, digest) for name, digest in session.execute(query)}

    def stored_operations(self, model: str, settings_key: str, k: int | None = None) -> set[str]:
        """Names of the operations scored under ``settings_key`` (see ``stored_operation_keys``)."""
        return {name for name, _ in self.stored_operation_keys(model, settings_key, k)}

    def operation_grid(
        self,
        model: str,
        operation: str,
        *,
        settings_key: str | None = None,
        suppression: bool = False,
        k: int | None = None,
    ) -> list[list[float]]:
        """``[layer][head]`` scores of ``operation`` (NaN where a head has none), from the latest
        analysis (or ``settings_key``'s) that scored it; default k unless ``k`` is given."""
        with self.read() as session:
            model_row = self._model(session, model)
            query = (
                select(S.OperationScore, S.Head.layer, S.Head.index)
                .join(S.Operation, S.Operation.id == S.OperationScore.operation_id)
                .join(S.Analysis, S.Analysis.id == S.OperationScore.analysis_id)
                .join(S.Head, S.Head.id == S.OperationScore.head_id)
                .where(S.Analysis.model_id == model_row.id, S.Operation.name == operation)
                .where(S.OperationScore.default_k if k is None else S.OperationScore.k == k)
            )
            if settings_key is not None:
                query = query.where(S.Analysis.settings_key == settings_key)
            rows = session.execute(query.order_by(S.Analysis.id.desc(), S.Operation.id.desc())).all()
            if not rows:
                raise HeadmapsError(f"no scores for operation {operation!r} of {model} in the store")
            grid = [[math.nan] * model_row.n_heads for _ in range(model_row.n_layers)]
            first = (rows[0][0].analysis_id, rows[0][0].operation_id)
            for score, layer, head in rows:
                if (score.analysis_id, score.operation_id) == first:
                    grid[layer][head] = score.suppression if suppression else score.relation
            return grid

    def get_head(self, model: str, layer: int, head: int, settings_key: str | None = None) -> HeadView:
        """A head's salient mappings and operation scores (latest analysis unless
        ``settings_key``), and its descriptions with current ratings and rating history."""
        with self.read() as session:
            model_row, head_id = self._head_id(session, model, layer, head)
            analysis = self._analysis(session, model_row, settings_key)
            if settings_key is not None and analysis is None:
                raise HeadmapsError(f"no analysis of {model} with settings key {settings_key}")
            salient: list[SalientOut] = []
            scores: list[OperationScoreOut] = []
            if analysis is not None:
                mappings: dict[int, list[MappingOut]] = {}
                for m in session.scalars(
                    select(S.MappedToken)
                    .where(S.MappedToken.analysis_id == analysis.id, S.MappedToken.head_id == head_id)
                    .order_by(S.MappedToken.salient_rank, S.MappedToken.rank)
                ):
                    mappings.setdefault(m.salient_rank, []).append(
                        MappingOut(token=m.token, token_id=m.token_id, logit=m.logit)
                    )
                for s in session.scalars(
                    select(S.SalientToken)
                    .where(S.SalientToken.analysis_id == analysis.id, S.SalientToken.head_id == head_id)
                    .order_by(S.SalientToken.rank)
                ):
                    salient.append(
                        SalientOut(
                            rank=s.rank,
                            token=s.token,
                            token_id=s.token_id,
                            amplification=s.amplification,
                            mappings=mappings.get(s.rank, []),
                        )
                    )
                for score, op in session.execute(
                    select(S.OperationScore, S.Operation)
                    .join(S.Operation, S.Operation.id == S.OperationScore.operation_id)
                    .where(S.OperationScore.analysis_id == analysis.id, S.OperationScore.head_id == head_id)
                ):
                    scores.append(
                        OperationScoreOut(
                            name=op.name,
                            category=op.category,
                            k=score.k,
                            n_pairs=score.n_pairs,
                            relation=score.relation,
                            suppression=score.suppression,
                        )
                    )
                scores.sort(key=lambda s: (-s.relation, -s.suppression, s.name, s.k))
            rows = session.scalars(
                select(S.Description).where(S.Description.head_id == head_id).order_by(S.Description.id)
            ).all()
            return HeadView(
                model=model,
                layer=layer,
                head=head,
                analysis_id=analysis.id if analysis else None,
                settings_key=analysis.settings_key if analysis else None,
                settings=analysis.settings if analysis else None,
                salient=salient,
                operations=scores,
                descriptions=self._descriptions_out(session, rows, model, layer, head),
            )

    # --- descriptions ------------------------------------------------------------------------------

    def add_description(self, description: DescriptionIn) -> int:
        """Store one description; returns its id."""
        d = description
        if d.category is not None and d.category not in CATEGORIES:
            raise HeadmapsError(f"unknown category {d.category!r}; use one of {', '.join(CATEGORIES)}")
        with self.write() as session:
            _, head_id = self._head_id(session, d.model, d.layer, d.head)
            if d.run_id is not None and session.get(S.Run, d.run_id) is None:
                raise HeadmapsError(f"no run with id {d.run_id}")
            if d.analysis_id is not None and session.get(S.Analysis, d.analysis_id) is None:
                raise HeadmapsError(f"no analysis with id {d.analysis_id}")
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
                raise HeadmapsError(f"no description with id {description_id}")
            head = session.get(S.Head, row.head_id)
            model = session.get(S.Model, head.model_id)
            return self._descriptions_out(session, [row], model.name, head.layer, head.index)[0]

    def _descriptions_out(
        self, session: Session, rows: Sequence[S.Description], model: str, layer: int, head: int
    ) -> list[DescriptionOut]:
        ratings: dict[int, list[RatingOut]] = {}
        if rows:
            for r in session.scalars(
                select(S.Rating)
                .where(S.Rating.description_id.in_([d.id for d in rows]))
                .order_by(S.Rating.created_at, S.Rating.id)
            ):
                ratings.setdefault(r.description_id, []).append(
                    RatingOut.model_validate(r, from_attributes=True)
                )
        scores: dict[int, list[DescriptionScoreOut]] = {}
        if rows:
            for sc in session.scalars(
                select(S.DescriptionScore)
                .where(S.DescriptionScore.description_id.in_([d.id for d in rows]))
                .order_by(S.DescriptionScore.scorer, S.DescriptionScore.llm_model)
            ):
                scores.setdefault(sc.description_id, []).append(self._score_out(sc, model, layer, head))
        out = []
        for d in rows:
            history = ratings.get(d.id, [])
            fields = {
                f: getattr(d, f) for f in DescriptionOut.model_fields if hasattr(d, f) and f != "scores"
            }
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

    @staticmethod
    def _score_out(row: S.DescriptionScore, model: str, layer: int, head: int) -> DescriptionScoreOut:
        fields = {f: getattr(row, f) for f in DescriptionScoreOut.model_fields if hasattr(row, f)}
        return DescriptionScoreOut(**fields, model=model, layer=layer, head=head)

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
            return [
                self._score_out(row, name, layer, head) for row, name, layer, head in session.execute(query)
            ]

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

    def add_embedding(self, description_id: int, encoder: str, vector: bytes | Sequence[float]) -> int:
        """Store (or replace) a description's embedding by ``encoder``; float32 little-endian."""
        import array

        if not isinstance(vector, bytes | bytearray):
            vector = array.array("f", vector).tobytes()
        if len(vector) % 4:
            raise HeadmapsError("an embedding must be float32 values (a multiple of 4 bytes)")
        with self.write() as session:
            if session.get(S.Description, description_id) is None:
                raise HeadmapsError(f"no description with id {description_id}")
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

    # --- ratings -----------------------------------------------------------------------------------

    def add_rating(self, rating: RatingIn) -> int:
        """Store a rating as the rater's current one for the description (the previous current
        one stays as history); returns its id. Safe under concurrent writers."""
        if rating.label not in RATING_LABELS:
            raise HeadmapsError(
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
                        raise HeadmapsError(f"no description with id {description_id}")
                    row = replace(session)
                    session.add(row)
                    session.flush()
                    return row.id
            except (IntegrityError, OperationalError):
                if attempt == 19:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

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
    ) -> list[SearchHit]:
        """Full-text search over description text (reasoning, inputs, pattern), best first.

        Every word of ``query`` must match (stemmed); ``min_scores`` keeps heads whose relation
        score of each named operation is at least the value; ``label`` keeps descriptions with
        a current rating of that label."""
        from store.fulltext import search

        if label is not None and label not in RATING_LABELS:
            raise HeadmapsError(f"unknown rating label {label!r}; use one of {', '.join(RATING_LABELS)}")
        if category is not None and category not in CATEGORIES:
            raise HeadmapsError(f"unknown category {category!r}; use one of {', '.join(CATEGORIES)}")
        with self.read() as session:
            model_id = self._model(session, model).id if model is not None else None
            return search(
                session,
                query,
                model_id=model_id,
                category=category,
                layer_min=layer_min,
                layer_max=layer_max,
                min_scores=min_scores or {},
                label=label,
                unclear=unclear,
                limit=limit,
            )

    # --- runs --------------------------------------------------------------------------------------

    def start_run(self, kind: str, model: str | None = None, settings: dict | None = None) -> int:
        """Record a job as running; returns the run id."""
        if kind not in RUN_KINDS:
            raise HeadmapsError(f"unknown run kind {kind!r}; use one of {', '.join(RUN_KINDS)}")
        with self.write() as session:
            model_id = self._model(session, model).id if model is not None else None
            row = S.Run(
                kind=kind,
                model_id=model_id,
                settings=settings or {},
                started_at=utcnow(),
                counts={},
                status="running",
            )
            session.add(row)
            session.flush()
            return row.id

    def finish_run(
        self, run_id: int, status: str = "done", counts: dict | None = None, error: str | None = None
    ) -> None:
        if status not in RUN_STATUSES or status == "running":
            raise HeadmapsError(f"a run finishes as done, failed or interrupted, not {status!r}")
        with self.write() as session:
            row = session.get(S.Run, run_id)
            if row is None:
                raise HeadmapsError(f"no run with id {run_id}")
            row.status, row.finished_at, row.error = status, utcnow(), error
            if counts is not None:
                row.counts = counts

    def get_run(self, run_id: int) -> RunOut:
        with self.read() as session:
            row = session.get(S.Run, run_id)
            if row is None:
                raise HeadmapsError(f"no run with id {run_id}")
            return self._run_out(session, row)

    def list_runs(self, kind: str | None = None, model: str | None = None) -> list[RunOut]:
        with self.read() as session:
            query = select(S.Run)
            if kind is not None:
                query = query.where(S.Run.kind == kind)
            if model is not None:
                query = query.where(S.Run.model_id == self._model(session, model).id)
            return [self._run_out(session, r) for r in session.scalars(query.order_by(S.Run.id))]

    @staticmethod
    def _run_out(session: Session, row: S.Run) -> RunOut:
        model = session.get(S.Model, row.model_id) if row.model_id is not None else None
        fields = {f: getattr(row, f) for f in RunOut.model_fields if f != "model"}
        return RunOut(**fields, model=model.name if model else None)
