"""Importing an export's operation pairs and their per-head outcomes (``store.importer``)."""

from __future__ import annotations

import base64
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from store import tables as S
from store.writes import OUTCOME_COLUMNS, PAIR_COLUMNS, bulk_insert


def import_pairs(
    session: Session,
    tables: dict,
    added: dict[str, int],
    analyses: dict[int, tuple[int, str, set[int]]],
    operations: dict[int, int],
    target: Callable[[dict], tuple[int, int, set[int]]],
    existing_scores: set[tuple[int, int, int]],
) -> None:
    """Pairs and their outcomes of each (analysis, operation) the database lacks, when their
    scores came with this file (so the stored scores stay the mean of the stored hits)."""
    held = set(
        session.execute(select(S.PairOutcome.analysis_id, S.PairOutcome.operation_id).distinct()).tuples()
    )
    outcomes = []
    taken: set[tuple[int, int]] = set()
    for row in tables["pair_outcome"]:
        aid, hid, _ = target(row)
        key = (aid, operations[row["operation"]])
        if key in held or (*key, row["k"]) in existing_scores:
            continue
        taken.add(key)
        outcomes.append(
            (*key, hid, row["k"], row["default_k"], base64.b64decode(row["ranks"]),
             base64.b64decode(row["suppressed_ranks"]))
        )  # fmt: skip
    pairs = [
        (*key, row["idx"], row["source"], row["source_id"], row["target"], row["target_id"])
        for row in tables["operation_pair"]
        for key in [(analyses[row["analysis"]][0], operations[row["operation"]])]
        if key in taken
    ]
    conn = session.connection()
    bulk_insert(conn, S.OperationPair.__table__, PAIR_COLUMNS, pairs)
    bulk_insert(conn, S.PairOutcome.__table__, OUTCOME_COLUMNS, outcomes)
    added["operation_pair"], added["pair_outcome"] = len(pairs), len(outcomes)
