"""Relation evidence of heads (``describer.maps.relations``): the salient tables it is computed
from, its rows written and replaced, and the heads satisfying a relation, strongest first.

An analysis written by ``save_analysis`` stores its heads' relations with it; these methods
serve the backfill of analyses stored before relations existed, and the searches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import ColumnElement, Exists, Select, delete, func, select
from sqlalchemy.orm import Session, aliased

from describer.errors import NotFound
from store import tables as S
from store import writes
from store.base import StoreBase
from store.records import OperationIn, RelationHit, RelationIn, RelationOut

SalientTable = list[tuple[str, list[str]]]
"""A head's salient rows: (source token, its mapped tokens strongest first)."""
EPSILON = 1e-9
"""Slack on ``min_fraction``: 0.2 keeps a stored 3/15."""


def key_matches(column: ColumnElement[str], relation: str) -> ColumnElement[bool]:
    """``column`` is the key ``relation``, or starts with it when it ends in ``:`` (a prefix such
    as ``operation:``)."""
    return column.startswith(relation, autoescape=True) if relation.endswith(":") else column == relation


def latest_analyses() -> Select:
    """The id of every model's latest analysis (the one a head page shows)."""
    return select(func.max(S.Analysis.id)).group_by(S.Analysis.model_id)


def has_relation(head_id: ColumnElement[int], relation: str, min_fraction: float = 0.0) -> Exists:
    """EXISTS: the head ``head_id`` has ``relation`` in at least ``min_fraction`` of its salient
    rows, in its model's latest analysis (a filter for the description searches)."""
    r = aliased(S.HeadRelation)
    return (
        select(r.head_id)
        .where(
            r.head_id == head_id, r.analysis_id.in_(latest_analyses()), r.fraction >= min_fraction - EPSILON
        )
        .where(key_matches(r.relation, relation))
        .exists()
    )


class Relations(StoreBase):
    """``Store``'s relation evidence."""

    def _relation_analysis(self, session: Session, model: str, settings_key: str | None) -> S.Analysis | None:
        """The model's latest analysis (the one ``get_head`` shows), or ``settings_key``'s."""
        query = select(S.Analysis).where(S.Analysis.model_id == self._model(session, model).id)
        if settings_key is not None:
            query = query.where(S.Analysis.settings_key == settings_key)
        return session.scalar(query.order_by(S.Analysis.id.desc()).limit(1))

    def needs_relations(self, model: str, settings_key: str | None = None) -> bool:
        """True when the analysis has salient rows but no relation rows (stored before
        relations were computed)."""
        with self.read() as session:
            analysis = self._relation_analysis(session, model, settings_key)
            if analysis is None:
                return False
            salient = session.scalar(
                select(S.SalientToken.head_id).where(S.SalientToken.analysis_id == analysis.id).limit(1)
            )
            related = session.scalar(
                select(S.HeadRelation.head_id).where(S.HeadRelation.analysis_id == analysis.id).limit(1)
            )
            return salient is not None and related is None

    def salient_tables(
        self, model: str, settings_key: str | None = None
    ) -> tuple[str | None, dict[tuple[int, int], SalientTable]]:
        """(the analysis' settings key, every head's salient rows by (layer, head)); (None, {})
        when the model has no analysis."""
        with self.read() as session:
            analysis = self._relation_analysis(session, model, settings_key)
            if analysis is None:
                return None, {}
            heads = {
                hid: (layer, index)
                for hid, layer, index in session.execute(
                    select(S.Head.id, S.Head.layer, S.Head.index).where(S.Head.model_id == analysis.model_id)
                )
            }
            mapped: dict[tuple[int, int], list[str]] = {}
            for hid, rank, token in session.execute(
                select(S.MappedToken.head_id, S.MappedToken.salient_rank, S.MappedToken.token)
                .where(S.MappedToken.analysis_id == analysis.id)
                .order_by(S.MappedToken.head_id, S.MappedToken.salient_rank, S.MappedToken.rank)
            ):
                mapped.setdefault((hid, rank), []).append(token)
            tables: dict[tuple[int, int], SalientTable] = {}
            for hid, rank, token in session.execute(
                select(S.SalientToken.head_id, S.SalientToken.rank, S.SalientToken.token)
                .where(S.SalientToken.analysis_id == analysis.id)
                .order_by(S.SalientToken.head_id, S.SalientToken.rank)
            ):
                tables.setdefault(heads[hid], []).append((token, mapped.get((hid, rank), [])))
            return analysis.settings_key, dict(sorted(tables.items()))

    def analysis_operations(self, model: str, settings_key: str | None = None) -> list[OperationIn]:
        """The definitions (name, pairs, origin) of the operations scored in the analysis."""
        with self.read() as session:
            analysis = self._relation_analysis(session, model, settings_key)
            if analysis is None:
                return []
            scored = select(S.OperationScore.operation_id).where(S.OperationScore.analysis_id == analysis.id)
            rows = session.scalars(
                select(S.Operation).where(S.Operation.id.in_(scored)).order_by(S.Operation.id)
            )
            return [
                OperationIn(
                    name=op.name,
                    category=op.category,
                    pairs=[tuple(p) for p in op.pairs],
                    origin="builtin" if op.origin == "builtin" else "user",
                    source_file=op.source_file,
                )
                for op in rows
            ]

    def save_relations(
        self,
        model: str,
        relations: Mapping[tuple[int, int], Sequence[RelationIn]],
        *,
        settings_key: str | None = None,
        replace: bool = False,
    ) -> int:
        """Store heads' relations (by (layer, head), strongest first) with the model's latest
        analysis, or ``settings_key``'s, in one transaction; heads that have relations stored
        keep them unless ``replace``. Returns the number of heads written."""
        with self.write() as session:
            analysis = self._relation_analysis(session, model, settings_key)
            if analysis is None:
                raise NotFound(f"no analysis of {model} to store relations with")
            model_row = self._model(session, model)
            for layer, head in relations:
                self._check_head(model_row, layer, head)
            ids = {
                (layer, index): hid
                for hid, layer, index in session.execute(
                    select(S.Head.id, S.Head.layer, S.Head.index).where(S.Head.model_id == model_row.id)
                )
            }
            chosen = {ids[key]: facts for key, facts in relations.items()}
            if replace and chosen:
                session.execute(
                    delete(S.HeadRelation).where(
                        S.HeadRelation.analysis_id == analysis.id, S.HeadRelation.head_id.in_(list(chosen))
                    )
                )
            else:
                stored = writes.relation_heads(session, analysis.id)
                chosen = {hid: facts for hid, facts in chosen.items() if hid not in stored}
            rows = [
                row for hid, facts in chosen.items() for row in writes.relation_rows(analysis.id, hid, facts)
            ]
            writes.insert_relations(session, rows)
            return len(chosen)

    def heads_with_relation(
        self,
        relation: str,
        *,
        model: str | None = None,
        min_fraction: float = 0.0,
        limit: int | None = 100,
    ) -> list[RelationHit]:
        """Heads whose latest analysis has ``relation`` (a key, or a key prefix ending in ``:``
        such as ``operation:``) in at least ``min_fraction`` of their salient rows, strongest
        first (one hit per head and matching key)."""
        r = S.HeadRelation
        latest = select(func.max(S.Analysis.id)).group_by(S.Analysis.model_id)
        query = (
            select(r, S.Model.name, S.Head.layer, S.Head.index)
            .join(S.Head, S.Head.id == r.head_id)
            .join(S.Model, S.Model.id == S.Head.model_id)
            .where(r.analysis_id.in_(latest), r.fraction >= min_fraction - EPSILON)
            .where(
                r.relation.startswith(relation, autoescape=True)
                if relation.endswith(":")
                else r.relation == relation
            )
            .order_by(r.fraction.desc(), r.rows.desc(), S.Model.name, S.Head.layer, S.Head.index, r.relation)
        )
        with self.read() as session:
            if model is not None:
                query = query.where(S.Model.id == self._model(session, model).id)
            if limit is not None:
                query = query.limit(limit)
            return [
                RelationHit(model=name, layer=layer, head=index, **relation_out(row).model_dump())
                for row, name, layer, index in session.execute(query)
            ]

    def relation_keys(self, model: str | None = None) -> list[str]:
        """The relation keys stored (for ``model``'s heads), sorted."""
        query = select(S.HeadRelation.relation).distinct()
        with self.read() as session:
            if model is not None:
                heads = select(S.Head.id).where(S.Head.model_id == self._model(session, model).id)
                query = query.where(S.HeadRelation.head_id.in_(heads))
            return sorted(session.scalars(query))


def relation_out(row: S.HeadRelation) -> RelationOut:
    return RelationOut(
        relation=row.relation,
        label=row.label,
        rows=row.rows,
        n_rows=row.n_rows,
        fraction=row.fraction,
        examples=[(str(s), str(o)) for s, o in row.examples],
    )
