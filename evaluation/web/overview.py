"""A model's overview: where each operation (and attention pattern) lives. One row per
operation, one column per layer, each cell the layer's best head on it, shaded on the row's
own scale (or a shared 0–1), so one page shows which layers implement what."""

from __future__ import annotations

import math

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel
from sqlalchemy import select

from describer.heads import head_name
from evaluation.web import queries
from evaluation.web.common import WebError, model_url, render, store_of
from evaluation.web.exports import table_response
from evaluation.web.heatmap_svg import SCALES, gradient, sequential
from store import Store
from store import tables as S

router = APIRouter(include_in_schema=False)


class Best(BaseModel):
    head: int
    score: float


class Row(BaseModel):
    name: str
    kind: str
    """``operation`` or ``pattern``."""
    high: float
    """The row's highest score (the fitted scale's top)."""
    best: list[Best | None]
    """Per layer: its best head and score (None: no score in that layer)."""


def overview_rows(store: Store, model: str, metric: str = "relation") -> tuple[int, list[Row]]:
    """Layers of ``model`` and a row per scored operation (its latest analysis at the default
    k) and per stored attention pattern: a few queries per operation, none per head."""
    queries.check_metric(metric)
    rows: list[Row] = []
    with store.read() as session:
        m = queries.model_row(session, model)
        conn = session.connection()
        names = queries.operations(session, m.id)
        column = getattr(S.OperationScore, metric)
        sources = []
        for name in names:
            source = queries.score_source(session, m.id, name)
            if source is not None:
                statement = (
                    select(S.Head.layer, S.Head.index, column)
                    .join(S.Head, S.Head.id == S.OperationScore.head_id)
                    .where(
                        S.OperationScore.analysis_id == source[0],
                        S.OperationScore.operation_id == source[1],
                        S.OperationScore.default_k,
                    )
                )
                sources.append((name, "operation", statement))
        analysis, patterns = queries.latest_patterns(session, m.id)
        for name in patterns:
            statement = (
                select(S.Head.layer, S.Head.index, S.HeadPattern.score)
                .join(S.Head, S.Head.id == S.HeadPattern.head_id)
                .where(S.HeadPattern.pattern_analysis_id == analysis, S.HeadPattern.pattern == name)
            )
            sources.append((name, "pattern", statement))
        for name, kind, statement in sources:
            best: list[Best | None] = [None] * m.n_layers
            for layer, head, value in queries.fetch_rows(conn, statement):
                if value is None or math.isnan(value) or not 0 <= layer < m.n_layers:
                    continue
                now = best[layer]
                if now is None or value > now.score or (value == now.score and head < now.head):
                    best[layer] = Best(head=head, score=value)
            scores = [b.score for b in best if b is not None]
            if scores:
                rows.append(Row(name=name, kind=kind, high=max(scores), best=best))
        return m.n_layers, rows


@router.get("/models/{model:path}/overview", response_class=HTMLResponse)
def overview_page(
    request: Request,
    model: str,
    metric: str = "relation",
    scale: str = "fitted",
    format: str = "",  # noqa: A002 - the shared download parameter's name
) -> Response:
    if metric not in queries.METRICS:
        raise WebError(422, f"metric must be relation or suppression, not {metric!r}")
    if scale not in SCALES:
        raise WebError(422, f"scale must be fitted or shared, not {scale!r}")
    n_layers, rows = overview_rows(store_of(request), model, metric)
    if format:
        flat = [
            {
                "kind": r.kind,
                "name": r.name,
                "layer": layer,
                "head": head_name(layer, b.head),
                "score": b.score,
            }
            for r in rows
            for layer, b in enumerate(r.best)
            if b is not None
        ]
        return table_response(flat, ["kind", "name", "layer", "head", "score"], format, f"{model}-overview")
    shaded = []
    for r in rows:
        top = 1.0 if scale == "shared" and r.kind == "operation" else (r.high if r.high > 0 else 1.0)
        shaded.append(
            (
                r,
                top,
                [None if b is None else (b, sequential(min(max(b.score / top, 0.0), 1.0))) for b in r.best],
            )
        )
    return render(
        request,
        "overview.html",
        model=model,
        base=model_url(model),
        n_layers=n_layers,
        rows=shaded,
        metric=metric,
        scale=scale,
        gradient=gradient(),
    )
