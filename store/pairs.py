"""Each head's outcome on every pair of an operation: where the pair's target ranked in the
head's mapping of its source (``operation_pair`` and ``pair_outcome``, written with the
operation's scores by ``store.writes.save_pair_outcomes``)."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from describer.errors import NotFound
from store import tables as S
from store.base import StoreBase
from store.records import HeadPairs, PairOut

RERUN = (
    "pair outcomes are kept by analyses made since they were added: re-run headmaps analyze "
    "(with --json FILE it recomputes what is stored)"
)


class Pairs(StoreBase):
    """``Store``'s per-pair operation outcomes."""

    def head_pairs(self, model: str, layer: int, head: int, operation: str) -> HeadPairs:
        """One head's outcome on each pair of ``operation``, from the latest analysis of ``model``
        storing them, at the k they were counted for (the operation's default k unless only an
        overridden k was scored); ``NotFound`` for an unknown model, head or operation, or when no
        pair outcomes of it are stored."""
        with self.read() as session:
            model_row, head_id = self._head_id(session, model, layer, head)
            found = session.execute(
                select(S.PairOutcome, S.Operation)
                .join(S.Operation, S.Operation.id == S.PairOutcome.operation_id)
                .join(S.Analysis, S.Analysis.id == S.PairOutcome.analysis_id)
                .where(
                    S.Analysis.model_id == model_row.id,
                    S.PairOutcome.head_id == head_id,
                    S.Operation.name == operation,
                )
                .order_by(S.PairOutcome.analysis_id.desc(), S.PairOutcome.operation_id.desc())
                .limit(1)
            ).first()
            if found is None:
                scored = session.scalar(
                    select(S.OperationScore.operation_id)
                    .join(S.Operation, S.Operation.id == S.OperationScore.operation_id)
                    .join(S.Analysis, S.Analysis.id == S.OperationScore.analysis_id)
                    .where(S.Analysis.model_id == model_row.id, S.Operation.name == operation)
                    .limit(1)
                )
                if scored is None:
                    raise NotFound(
                        f"no operation {operation!r} is scored for {model} in the store"
                        + _known(self.pair_operations_in(session, model_row.id), "with pair outcomes")
                    )
                raise NotFound(f"no pair outcomes of {operation} for {model} are stored; {RERUN}")
            outcome, op = found
            score = session.scalar(
                select(S.OperationScore).where(
                    S.OperationScore.analysis_id == outcome.analysis_id,
                    S.OperationScore.operation_id == outcome.operation_id,
                    S.OperationScore.k == outcome.k,
                    S.OperationScore.head_id == head_id,
                )
            )
            assert score is not None, "pair outcomes are written with their scores"
            pairs = session.execute(
                select(S.OperationPair.source, S.OperationPair.source_id, S.OperationPair.target,
                       S.OperationPair.target_id)
                .where(S.OperationPair.analysis_id == outcome.analysis_id,
                       S.OperationPair.operation_id == outcome.operation_id)
                .order_by(S.OperationPair.idx)
            ).all()  # fmt: skip
        ranks = np.frombuffer(outcome.ranks, dtype="<i4")
        suppressed = np.frombuffer(outcome.suppressed_ranks, dtype="<i4")
        k = outcome.k
        return HeadPairs(
            model=model,
            layer=layer,
            head=head,
            operation=op.name,
            category=op.category,
            k=k,
            n_pairs=score.n_pairs,
            relation=score.relation,
            suppression=score.suppression,
            pairs=[
                PairOut(source=s, source_id=sid, target=t, target_id=tid, rank=r, hit=r < k,
                        suppressed_rank=q, suppressed_hit=q < k)
                for (s, sid, t, tid), r, q in zip(pairs, ranks.tolist(), suppressed.tolist(), strict=True)
            ],
        )  # fmt: skip

    def pair_operations(self, model: str) -> list[str]:
        """Names of the operations with stored pair outcomes for ``model`` (those ``head_pairs``
        finds, in whichever analysis holds the latest), sorted."""
        with self.read() as session:
            return self.pair_operations_in(session, self._model(session, model).id)

    @staticmethod
    def pair_operations_in(session: Session, model_id: int) -> list[str]:
        query = (
            select(S.Operation.name)
            .join(S.OperationPair, S.OperationPair.operation_id == S.Operation.id)
            .join(S.Analysis, S.Analysis.id == S.OperationPair.analysis_id)
            .where(S.Analysis.model_id == model_id)
            .distinct()
        )
        return sorted(session.scalars(query))


def _known(names: list[str], what: str) -> str:
    return f"; operations {what}: {', '.join(names)}" if names else f"; it has no operations {what}"
