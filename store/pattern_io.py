"""Attention-pattern scores in export files (``store.export_format``): the ``pattern_analysis``
and ``head_pattern`` tables, written by ``store.export`` and merged back by ``store.importer``.

Both tables are optional in the format: files written before them import as if they were empty."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from describer.errors import HeadmapsError
from store import tables as S
from store.writes import bulk_insert


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def dump_patterns(
    session: Session, names: dict[int, str], heads: dict[int, tuple[str, int, int]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``pattern_analysis`` and ``head_pattern`` rows of the models ``names`` (model id →
    name), with ``heads`` (head id → model, layer, head) for the natural keys."""
    analyses: dict[int, int] = {}
    analysis_rows: list[dict[str, Any]] = []
    for a in session.scalars(
        select(S.PatternAnalysis)
        .where(S.PatternAnalysis.model_id.in_(list(names)))
        .order_by(S.PatternAnalysis.id)
    ):
        analyses[a.id] = len(analyses) + 1
        analysis_rows.append(
            {
                "ref": analyses[a.id],
                "model": names[a.model_id],
                "settings_key": a.settings_key,
                "settings": a.settings,
                "created_at": _time(a.created_at),
            }
        )
    scores = session.scalars(
        select(S.HeadPattern).where(S.HeadPattern.pattern_analysis_id.in_(list(analyses)))
    ).all()
    score_rows = [
        {
            "pattern_analysis": analyses[p.pattern_analysis_id],
            "layer": heads[p.head_id][1],
            "head": heads[p.head_id][2],
            "pattern": p.pattern,
            "score": p.score,
        }
        for p in sorted(
            scores, key=lambda p: (analyses[p.pattern_analysis_id], heads[p.head_id][1:], p.pattern)
        )
    ]
    return analysis_rows, score_rows


def load_patterns(
    session: Session,
    tables: dict[str, list[dict[str, Any]]],
    added: dict[str, int],
    head_id: Callable[[str, int, int], int],
) -> None:
    """Merge the file's pattern analyses and scores: an analysis already stored (same model and
    settings key) is reused, and a head's score already stored for it is kept as it is."""
    analyses: dict[int, tuple[int, str]] = {}
    for row in tables["pattern_analysis"]:
        model_id = session.scalar(select(S.Model.id).where(S.Model.name == row["model"]))
        if model_id is None:
            raise HeadmapsError(f"export refers to model {row['model']!r} it does not hold")
        analysis = session.scalar(
            select(S.PatternAnalysis).where(
                S.PatternAnalysis.model_id == model_id, S.PatternAnalysis.settings_key == row["settings_key"]
            )
        )
        if analysis is None:
            analysis = S.PatternAnalysis(
                model_id=model_id,
                settings_key=row["settings_key"],
                settings=row["settings"],
                created_at=datetime.fromisoformat(row["created_at"]),
            )
            session.add(analysis)
            session.flush()
            added["pattern_analysis"] += 1
        analyses[row["ref"]] = (analysis.id, row["model"])
    stored: dict[int, set[tuple[int, str]]] = {}
    rows: list[tuple] = []
    for row in tables["head_pattern"]:
        aid, model = analyses[row["pattern_analysis"]]
        if aid not in stored:
            stored[aid] = set(
                session.execute(
                    select(S.HeadPattern.head_id, S.HeadPattern.pattern).where(
                        S.HeadPattern.pattern_analysis_id == aid
                    )
                ).tuples()
            )
        name, score = row["pattern"], float(row["score"])
        if not (isinstance(name, str) and 1 <= len(name) <= 50) or not math.isfinite(score):
            raise HeadmapsError(f"export holds a bad attention-pattern score: {name!r} = {row['score']!r}")
        key = (head_id(model, row["layer"], row["head"]), name)
        if key not in stored[aid]:
            stored[aid].add(key)
            rows.append((aid, *key, score))
    bulk_insert(
        session.connection(),
        S.HeadPattern.__table__,
        ("pattern_analysis_id", "head_id", "pattern", "score"),
        rows,
    )
    added["head_pattern"] = len(rows)
