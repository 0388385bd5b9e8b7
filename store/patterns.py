"""Attention-pattern scores of heads (``describer.maps.patterns``): written once per model and
pattern settings, read back as ``[layer][head]`` grids, per head, as the heads above a score, and
as a filter for the description searches. The latest pattern analysis of a model is the one
every view shows."""

from __future__ import annotations

import math

from sqlalchemy import ColumnElement, Exists, Select, func, select
from sqlalchemy.orm import Session, aliased

from describer.errors import HeadmapsError, NotFound
from store import tables as S
from store.base import StoreBase, utcnow
from store.records import ModelInfo, PatternsIn
from store.writes import ensure_model

EPSILON = 1e-9


def latest_pattern_analyses() -> Select:
    """The id of every model's latest pattern analysis."""
    return select(func.max(S.PatternAnalysis.id)).group_by(S.PatternAnalysis.model_id)


def has_pattern(head_id: ColumnElement[int], pattern: str, minimum: float) -> Exists:
    """EXISTS: the head ``head_id`` scores at least ``minimum`` on ``pattern`` in its model's
    latest pattern analysis (a filter for the description searches)."""
    p = aliased(S.HeadPattern)
    return (
        select(p.head_id)
        .where(
            p.head_id == head_id,
            p.pattern == pattern,
            p.score >= minimum - EPSILON,
            p.pattern_analysis_id.in_(latest_pattern_analyses()),
        )
        .exists()
    )


def head_patterns(session: Session, model: S.Model, head_id: int) -> dict[str, float]:
    """One head's scores in its model's latest pattern analysis (for ``Store.get_head``)."""
    analysis_id = session.scalar(
        select(func.max(S.PatternAnalysis.id)).where(S.PatternAnalysis.model_id == model.id)
    )
    if analysis_id is None:
        return {}
    rows = session.execute(
        select(S.HeadPattern.pattern, S.HeadPattern.score).where(
            S.HeadPattern.pattern_analysis_id == analysis_id, S.HeadPattern.head_id == head_id
        )
    ).all()
    return {name: score for name, score in sorted(rows)}


class Patterns(StoreBase):
    """``Store``'s attention-pattern scores."""

    def _pattern_analysis(
        self, session: Session, model: S.Model, settings_key: str | None
    ) -> S.PatternAnalysis | None:
        query = select(S.PatternAnalysis).where(S.PatternAnalysis.model_id == model.id)
        if settings_key is not None:
            query = query.where(S.PatternAnalysis.settings_key == settings_key)
        return session.scalar(query.order_by(S.PatternAnalysis.id.desc()).limit(1))

    def has_patterns(self, model: str, settings_key: str) -> bool:
        """True when ``model``'s pattern scores under ``settings_key`` are stored."""
        with self.read() as session:
            row = session.scalar(select(S.Model).where(S.Model.name == model))
            return row is not None and self._pattern_analysis(session, row, settings_key) is not None

    def save_patterns(self, info: ModelInfo, data: PatternsIn, *, settings_key: str) -> int:
        """Store every head's pattern scores in one transaction (the model is created when
        missing); returns the pattern analysis' id. Idempotent: scores already stored under
        ``settings_key`` are kept as they are."""
        for name, grid in data.scores.items():
            if len(grid) != info.n_layers or any(len(row) != info.n_heads for row in grid):
                raise HeadmapsError(
                    f"pattern scores of {name} are not {info.n_layers}×{info.n_heads} (layers × heads of {info.name})"
                )
            if any(not math.isfinite(v) for row in grid for v in row):
                raise HeadmapsError(f"pattern scores of {name} hold a value that is not a finite number")
        with self.write() as session:
            self._lock(session)
            model = ensure_model(session, info)
            existing = self._pattern_analysis(session, model, settings_key)
            if existing is not None:
                return existing.id
            analysis = S.PatternAnalysis(
                model_id=model.id, settings_key=settings_key, settings=data.settings, created_at=utcnow()
            )
            session.add(analysis)
            session.flush()
            heads = {
                (layer, index): hid
                for hid, layer, index in session.execute(
                    select(S.Head.id, S.Head.layer, S.Head.index).where(S.Head.model_id == model.id)
                )
            }
            rows = [
                {
                    "pattern_analysis_id": analysis.id,
                    "head_id": heads[(layer, head)],
                    "pattern": name,
                    "score": v,
                }
                for name, grid in data.scores.items()
                for layer, row in enumerate(grid)
                for head, v in enumerate(row)
            ]
            if rows:
                session.execute(S.HeadPattern.__table__.insert(), rows)
            return analysis.id

    def pattern_names(self, model: str | None = None) -> list[str]:
        """The patterns stored (for ``model``'s latest pattern analysis, or any model's latest)."""
        with self.read() as session:
            query = select(S.HeadPattern.pattern).distinct()
            if model is not None:
                analysis = self._pattern_analysis(session, self._model(session, model), None)
                if analysis is None:
                    return []
                query = query.where(S.HeadPattern.pattern_analysis_id == analysis.id)
            else:
                query = query.where(S.HeadPattern.pattern_analysis_id.in_(latest_pattern_analyses()))
            return sorted(session.scalars(query))

    def pattern_settings(self, model: str) -> dict | None:
        """The settings of ``model``'s latest pattern analysis (None: not measured)."""
        with self.read() as session:
            analysis = self._pattern_analysis(session, self._model(session, model), None)
            return dict(analysis.settings) if analysis else None

    def pattern_grid(self, model: str, pattern: str, *, settings_key: str | None = None) -> list[list[float]]:
        """``[layer][head]`` scores of ``pattern`` from ``model``'s latest pattern analysis (or
        ``settings_key``'s); NaN where a head has none."""
        with self.read() as session:
            model_row = self._model(session, model)
            analysis = self._pattern_analysis(session, model_row, settings_key)
            if analysis is None:
                raise NotFound(
                    f"no attention-pattern scores of {model} in the store; run: headmaps analyze {model}"
                )
            grid = [[math.nan] * model_row.n_heads for _ in range(model_row.n_layers)]
            rows = session.execute(
                select(S.Head.layer, S.Head.index, S.HeadPattern.score)
                .join(S.Head, S.Head.id == S.HeadPattern.head_id)
                .where(S.HeadPattern.pattern_analysis_id == analysis.id, S.HeadPattern.pattern == pattern)
            ).all()
            if not rows:
                raise NotFound(f"no scores for pattern {pattern!r} of {model} in the store")
            for layer, head, score in rows:
                grid[layer][head] = score
            return grid

    def heads_with_pattern(
        self, pattern: str, minimum: float, model: str | None = None
    ) -> list[tuple[str, int, int, float]]:
        """(model, layer, head, score) of the heads scoring at least ``minimum`` on ``pattern`` in
        their model's latest pattern analysis, highest first."""
        with self.read() as session:
            query = (
                select(S.Model.name, S.Head.layer, S.Head.index, S.HeadPattern.score)
                .join(S.Head, S.Head.id == S.HeadPattern.head_id)
                .join(S.Model, S.Model.id == S.Head.model_id)
                .where(
                    S.HeadPattern.pattern == pattern,
                    S.HeadPattern.score >= minimum - EPSILON,
                    S.HeadPattern.pattern_analysis_id.in_(latest_pattern_analyses()),
                )
            )
            if model is not None:
                query = query.where(S.Model.id == self._model(session, model).id)
            rows = session.execute(
                query.order_by(S.HeadPattern.score.desc(), S.Model.name, S.Head.layer, S.Head.index)
            )
            return [(name, layer, head, score) for name, layer, head, score in rows]
