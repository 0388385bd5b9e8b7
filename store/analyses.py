"""Models, their heads and their analyses: salient mappings and operation scores, read back as
per-operation grids and per-head views."""

from __future__ import annotations

import math
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from describer.errors import NotFound
from store import tables as S
from store import writes
from store.base import StoreBase
from store.descriptions import descriptions_out
from store.patterns import head_patterns
from store.records import (
    AnalysisIn,
    HeadView,
    MappingOut,
    ModelInfo,
    ModelSummary,
    OperationIn,
    OperationScoreOut,
    RelationOut,
    SalientOut,
)
from store.relations import relation_out
from store.writes import SKIPPED


class Analyses(StoreBase):
    """``Store``'s models, heads and analyses."""

    # --- models and heads ------------------------------------------------------------------------

    def register_model(self, info: ModelInfo) -> None:
        """Store a model and its heads (a no-op when the same model is stored already)."""
        with self.write() as session:
            self._lock(session)
            writes.ensure_model(session, info)

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
        data = (
            result
            if isinstance(result, AnalysisIn)
            else AnalysisIn.model_validate(result, from_attributes=True)
        )
        return writes.save_analysis(self, info, data, settings_key, operations, default_k)

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
        when ``k`` is None, else with that k; and those recorded as having no usable pair for
        the model's tokenizer (whatever k)."""
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
            scored = {(name, digest) for name, digest in session.execute(query)}
            return scored | set(analysis.settings.get(SKIPPED, {}).items())

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
                raise NotFound(f"no scores for operation {operation!r} of {model} in the store")
            grid = [[math.nan] * model_row.n_heads for _ in range(model_row.n_layers)]
            first = (rows[0][0].analysis_id, rows[0][0].operation_id)
            for score, layer, head in rows:
                if (score.analysis_id, score.operation_id) == first:
                    grid[layer][head] = score.suppression if suppression else score.relation
            return grid

    def get_head(self, model: str, layer: int, head: int, settings_key: str | None = None) -> HeadView:
        """A head's salient mappings, operation scores and relations (latest analysis unless
        ``settings_key``), its attention-pattern scores, and its descriptions with current ratings and rating history."""
        with self.read() as session:
            model_row, head_id = self._head_id(session, model, layer, head)
            analysis = self._analysis(session, model_row, settings_key)
            if settings_key is not None and analysis is None:
                raise NotFound(f"no analysis of {model} with settings key {settings_key}")
            salient: list[SalientOut] = []
            scores: list[OperationScoreOut] = []
            relations: list[RelationOut] = []
            if analysis is not None:
                mappings = _tokens(session, S.MappedToken, analysis.id, head_id)
                suppressed = _tokens(session, S.SuppressedToken, analysis.id, head_id)
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
                            suppressed=suppressed.get(s.rank, []),
                        )
                    )
                with_pairs = set(
                    session.execute(
                        select(S.PairOutcome.operation_id, S.PairOutcome.k).where(
                            S.PairOutcome.analysis_id == analysis.id, S.PairOutcome.head_id == head_id
                        )
                    ).tuples()
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
                            has_pairs=(score.operation_id, score.k) in with_pairs,
                        )
                    )
                scores.sort(key=lambda s: (-s.relation, -s.suppression, s.name, s.k))
                relations = [
                    relation_out(r)
                    for r in session.scalars(
                        select(S.HeadRelation)
                        .where(S.HeadRelation.analysis_id == analysis.id, S.HeadRelation.head_id == head_id)
                        .order_by(S.HeadRelation.rank)
                    )
                ]
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
                relations=relations,
                patterns=head_patterns(session, model_row, head_id),
                descriptions=descriptions_out(session, rows, model, layer, head),
            )


def _tokens(
    session: Session, table: type[S.MappedToken] | type[S.SuppressedToken], analysis_id: int, head_id: int
) -> dict[int, list[MappingOut]]:
    """A head's ``mapped_token`` or ``suppressed_token`` rows by salient rank, in rank order (one
    query)."""
    out: dict[int, list[MappingOut]] = {}
    for m in session.scalars(
        select(table)
        .where(table.analysis_id == analysis_id, table.head_id == head_id)
        .order_by(table.salient_rank, table.rank)
    ):
        out.setdefault(m.salient_rank, []).append(
            MappingOut(token=m.token, token_id=m.token_id, logit=m.logit)
        )
    return out
