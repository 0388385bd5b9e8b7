"""Runs: a record of each analyze, describe or evaluate job, its settings, counts and outcome."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from describer.errors import HeadmapsError
from store import tables as S
from store.base import StoreBase, utcnow
from store.labels import RUN_KINDS, RUN_STATUSES
from store.records import RunOut


class Runs(StoreBase):
    """``Store``'s runs."""

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
